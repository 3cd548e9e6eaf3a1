"""What the training loops share: the Accelerator (VAE, MCDM and MAFE), step-seeded RNG, curve logging.

Resuming is :func:`lfmcdm.checkpoint.resume` (one rule for ReID, MAFE, VAE and MCDM).

Batches are drawn from ``numpy.random.default_rng([seed, step, process])`` rather than from a
DataLoader's iterator state, so a run resumed at step *s* sees exactly the batches an
uninterrupted run would, and every ``accelerate launch`` process draws different data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from lfmcdm.config import TrainConfig
from lfmcdm.runtime import configure_threads, resolve_device

SEED_SPACE = 2**62  # torch seeds drawn from a step's RNG
LOSS_SMOOTHING = 0.98  # EMA of the training loss, reported as the stage's train loss


def make_accelerator(cfg: TrainConfig, grad_accum: int = 1) -> Accelerator:
    """An Accelerator honouring ``train.device`` / ``train.mixed_precision`` (CPU: always full precision).

    Under ``accelerate launch`` the launcher's environment picks the devices and processes; on a
    plain ``python`` call this is a single process on the resolved device.
    """
    configure_threads(cfg)
    on_cpu = resolve_device(cfg).type == "cpu"
    return Accelerator(cpu=on_cpu, mixed_precision="no" if on_cpu else cfg.mixed_precision,
                       gradient_accumulation_steps=grad_accum)


def step_rng(seed: int, step: int, process: int = 0) -> np.random.Generator:
    """The RNG for one optimisation step of one process (resume-exact, distinct per process)."""
    return np.random.default_rng([seed, step, process])


def fingerprint(data: dict[str, Any]) -> str:
    """A short hash of the settings a checkpoint depends on (a mismatch means: start afresh)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def log_curve(metrics: dict[str, float | None], step: int | None = None) -> None:
    """Log training curves to the stage's MLflow run, if there is one (never start a stray run)."""
    import mlflow

    if mlflow.active_run() is not None:
        from lfmcdm import tracking

        tracking.log_metrics(metrics, step=step)


class StepLoop:
    """The steps a (possibly resumed) run still has to do, its progress bar and its smoothed loss.

    ``state`` is the resumed checkpoint's state (or None); ``stop_after`` simulates a kill in tests.
    Iterating yields the step indices; ``record`` gathers a step's loss over processes.
    """

    def __init__(self, name: str, accelerator: Accelerator, steps: int, state: dict[str, Any] | None,
                 stop_after: int | None, progress: bool):
        self.accelerator = accelerator
        self.start = int(state["step"]) if state else 0
        self.end = steps if stop_after is None else min(steps, stop_after)
        self.loss_ema: float | None = state.get("loss_ema") if state else None
        self.bar = tqdm(range(self.start, self.end), desc=name, unit="step", initial=self.start, total=steps,
                        disable=not (progress and accelerator.is_main_process))

    def __iter__(self):
        yield from self.bar
        self.bar.close()
        self.accelerator.wait_for_everyone()

    def record(self, loss: torch.Tensor) -> float:
        """The step's loss averaged over processes; updates the smoothed loss and the bar."""
        value = self.accelerator.gather(loss.detach()[None]).mean().item()
        ema = self.loss_ema
        self.loss_ema = value if ema is None else LOSS_SMOOTHING * ema + (1 - LOSS_SMOOTHING) * value
        self.bar.set_postfix(loss=f"{self.loss_ema:.4f}", refresh=False)  # a refresh here would reset tqdm's
        # print timer, so the loop's own refresh never came and the bar stood at 0/N with a moving loss
        return value

    @property
    def last_step(self) -> int:
        return max(self.start, self.end)
