"""Training MAFE: interpolate the middle frame of each video's label-free (ED, ES) pair.

Loss = ``l1_weight * L1 + ssim_weight * (1 - SSIM)`` on the middle frame
``+ reid_weight * (1 - cos(appearance embedding, pseudo ReID embedding of the middle frame))``
``+ flow_weight * L1(predicted flows MID->ED/ES, pseudo flows)``; either auxiliary weight may be 0
(ablations). AdamW with linear warmup + cosine decay; validation PSNR/SSIM on VAL every epoch;
the best epoch (by validation PSNR) is kept.

Mixed precision and devices come from the same Accelerator as VAE and MCDM training
(:func:`lfmcdm.train.accel.make_accelerator`: ``train.mixed_precision``, CPU always full precision), so
``accelerate launch`` runs it too; validation and the returned model stay in full precision.

Resumable: a checkpoint (weights, optimiser, scheduler, position in the epoch, history) is written
every ``checkpoint_every`` steps and at every epoch end under ``checkpoints/train_mafe/last``; a
restarted run continues from it and ends bit-identical (on CPU) to an uninterrupted one, because
batch order and augmentations are functions of (seed, epoch, index). A checkpoint written with
other settings or data (different fingerprint) is discarded rather than resumed.

Under ``accelerate launch`` each optimiser step consumes one batch of the epoch per process (process
*r* trains on batch ``k + r``), so N processes see N different batches per step and an epoch takes
1/N of the steps; only the main process checkpoints, keeps the best weights and logs curves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from lfmcdm.checkpoint import STATE_FILE, load_checkpoint, resume, save_checkpoint
from lfmcdm.config import TrainConfig
from lfmcdm.data.pairs import PairRef, missing_inputs, pair_refs
from lfmcdm.data.tables import load_array, read_videos
from lfmcdm.eval.ef_probe import cross_validated_r2
from lfmcdm.eval.recon_quality import psnr, ssim
from lfmcdm.layout import Layout
from lfmcdm.models.mafe import MAFE, MafeOutput
from lfmcdm.models.motion_vectors import encode_pairs
from lfmcdm.runtime import seed_everything
from lfmcdm.settings.mafe import MafeConfig
from lfmcdm.train.accel import make_accelerator
from lfmcdm.train.mafe_data import PairDataset, epoch_batches

log = logging.getLogger(__name__)

CHECKPOINT_STAGE = "train_mafe"
#: knobs that do not change what is trained (a checkpoint written under other values stays valid)
NON_TRAINING_KEYS = {"checkpoint_every", "eval_batch_size", "probe_folds", "probe_alphas"}
MetricsLogger = Callable[..., None]


@dataclass
class MafeData:
    train: list[PairRef]
    val: list[PairRef]
    all: list[PairRef]
    reid_dim: int


@dataclass
class TrainResult:
    model: MAFE  # with the best epoch's weights
    best: dict[str, Any]  # history entry of the best epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    resumed_from: int | None = None  # optimizer step of the checkpoint a run continued from


def prepare_data(layout: Layout, cfg: MafeConfig) -> MafeData:
    """Pairs of every usable video; checks that the pseudo labels the enabled losses need exist."""
    refs, skipped = pair_refs(read_videos(layout), cfg.min_pair_gap)
    if skipped:
        log.warning("train_mafe: %d videos have no usable label-free ED/ES pair (e.g. %s)", len(skipped), skipped[0])
    train = [r for r in refs if r.split == "TRAIN"]
    if not train:
        raise FileNotFoundError(f"{layout.videos}: no TRAIN video with label-free ed_frame/es_frame; "
                                "run `lfmcdm stage pseudo_labels` first")
    need_flow, need_reid = cfg.flow_weight > 0, cfg.reid_weight > 0
    missing = missing_inputs(layout, train, need_flow, need_reid)
    if missing:
        raise FileNotFoundError(f"{len(missing)} TRAIN videos lack pseudo flow/ReID files (e.g. {missing[0]} under "
                                f"{layout.flow} / {layout.reid}); run `lfmcdm stage pseudo_labels` first")
    reid_dim = int(load_array(layout.reid, train[0].file_name).shape[1]) if need_reid else 0
    return MafeData(train, [r for r in refs if r.split == "VAL"], refs, reid_dim)


def warmup_cosine(warmup: int, total: int, floor: float) -> Callable[[int], float]:
    """LR multiplier: linear warmup to 1, then cosine decay to ``floor`` at ``total`` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def loss_terms(cfg: MafeConfig, out: MafeOutput, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weighted objective (``loss``) and its parts (unweighted), for logging."""
    terms = {"l1": (out.mid - batch["mid"]).abs().mean(),
             "ssim": 1.0 - ssim(out.mid, batch["mid"]).mean()}
    total = cfg.l1_weight * terms["l1"] + cfg.ssim_weight * terms["ssim"]
    if cfg.flow_weight > 0:
        terms["flow"] = 0.5 * ((out.flow_a - batch["flow_a"]).abs().mean() + (out.flow_b - batch["flow_b"]).abs().mean())
        total = total + cfg.flow_weight * terms["flow"]
    if cfg.reid_weight > 0 and out.reid is not None:
        target = torch.nn.functional.normalize(batch["reid"], dim=-1)
        terms["reid"] = (1.0 - (out.reid * target).sum(dim=-1)).mean()
        total = total + cfg.reid_weight * terms["reid"]
    terms["loss"] = total
    return terms


@torch.no_grad()
def validate(model: MAFE, dataset: PairDataset, batch_size: int, device: torch.device) -> dict[str, float]:
    """Mean PSNR/SSIM of the predicted middle frames, and the PSNR of the naive average of the inputs."""
    if len(dataset) == 0:
        return {}
    model.eval()
    scores: dict[str, list[torch.Tensor]] = {"val_psnr": [], "val_ssim": [], "val_psnr_average_baseline": []}
    for indices in epoch_batches(len(dataset), batch_size, seed=0, epoch=0, shuffle=False):
        batch = _to(default_collate([dataset[i] for i in indices]), device)
        pred = model(batch["a"], batch["b"]).mid.float()
        scores["val_psnr"].append(psnr(pred, batch["mid"]))
        scores["val_ssim"].append(ssim(pred, batch["mid"]))
        scores["val_psnr_average_baseline"].append(psnr(0.5 * (batch["a"] + batch["b"]), batch["mid"]))
    return {k: float(torch.cat(v).mean()) for k, v in scores.items()}


def fingerprint(cfg: MafeConfig, seed: int, data: MafeData) -> str:
    """Identity of a training run: settings that change the result + the exact training/validation pairs."""
    payload = {"mafe": cfg.model_dump(mode="json", exclude=NON_TRAINING_KEYS), "seed": seed, "reid_dim": data.reid_dim,
               "train": [(r.file_name, r.ed, r.es) for r in data.train], "val": [(r.file_name, r.ed, r.es) for r in data.val]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def process_batches(batches: list[list[int]], start: int, rank: int, n: int) -> list[list[int]]:
    """The batches process ``rank`` of ``n`` trains on from global batch ``start`` on: one per optimiser
    step, a different one per process; a last group smaller than ``n`` is left out (DDP needs every
    process to take the same number of steps)."""
    return [batches[k + rank] for k in range(start, len(batches) - n + 1, n)]


def _fresh_state(fp: str) -> dict[str, Any]:
    return {"fingerprint": fp, "step": 0, "epoch": 0, "batch": 0, "loss_sums": {}, "loss_count": 0,
            "history": [], "best_score": None, "best_epoch": None}


def _resume(directory, fp: str, modules: dict, optimizer, scheduler, accelerator: Accelerator
            ) -> dict[str, Any] | None:
    """The saved state when ``directory`` holds a checkpoint of this very run; else None (and it is cleared,
    by the main process once every process has read it: a stale 'best' must not survive)."""
    state = None
    if (directory / "last" / STATE_FILE).exists():
        state = resume(directory / "last", fp, "train_mafe", modules, optimizer, scheduler,
                       map_location=accelerator.device)
    accelerator.wait_for_everyone()
    if state is None and accelerator.is_main_process:
        shutil.rmtree(directory, ignore_errors=True)
    return state


class _TrainForward(torch.nn.Module):
    """MAFE's training forward as its own module: the Accelerator wraps this one (autocast, DDP), so
    validation and the saved model call the bare MAFE in full precision (as VAE's ``ReconWithKL``)."""

    def __init__(self, mafe: MAFE) -> None:
        super().__init__()
        self.mafe = mafe

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> MafeOutput:
        return self.mafe(a, b)


def _train_step(model: torch.nn.Module, batch: dict, cfg: MafeConfig, optimizer, scheduler,
                accelerator: Accelerator) -> dict[str, float]:
    model.train()
    out = model(batch["a"], batch["b"])
    terms = loss_terms(cfg, _float_output(out), batch)
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(terms["loss"])
    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return {k: float(v.detach()) for k, v in terms.items()}


def _float_output(out: MafeOutput) -> MafeOutput:
    """Losses in float32 whatever the autocast precision of the forward pass."""
    return MafeOutput(out.mid.float(), out.flow_a.float(), out.flow_b.float(), out.mask.float(),
                      None if out.reid is None else out.reid.float(), out.features)


class _Run:
    """One training run's objects and resumable state (model, optimiser, scheduler, checkpoints)."""

    def __init__(self, cfg: MafeConfig, train_cfg: TrainConfig, layout: Layout, seed: int, data: MafeData,
                 accelerator: Accelerator) -> None:
        self.cfg, self.train_cfg, self.seed, self.accelerator = cfg, train_cfg, seed, accelerator
        self.device = accelerator.device
        self.model = MAFE(cfg.model, data.reid_dim).to(self.device)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = accelerator.num_processes  # a prepared scheduler steps once per process
        per_epoch = len(epoch_batches(len(data.train), cfg.batch_size, seed, 0)) // n
        if per_epoch == 0:
            raise ValueError(f"train_mafe: {len(data.train)} TRAIN pairs make fewer batches of {cfg.batch_size} "
                             f"than there are processes ({n})")
        total = cfg.epochs * per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(cfg.warmup_steps * n, total * n, cfg.min_lr_ratio))
        self.total_steps = total
        self.ckpt_dir = layout.checkpoints / CHECKPOINT_STAGE
        self.train_set = PairDataset(layout, data.train, flows=cfg.flow_weight > 0, reid=cfg.reid_weight > 0, seed=seed,
                                     flip=cfg.flip, rotate=cfg.rotate, swap=cfg.swap)
        self.val_set = PairDataset(layout, data.val, flows=False, reid=False, seed=seed)
        fp = fingerprint(cfg, seed, data)
        state = _resume(self.ckpt_dir, fp, self.modules, optimizer, scheduler, accelerator)
        self.resumed_from = None if state is None else state["step"]
        self.state = state or _fresh_state(fp)
        self.step_model, self.optimizer, self.scheduler = accelerator.prepare(_TrainForward(self.model), optimizer,
                                                                              scheduler)

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def checkpoint(self) -> None:
        if self.accelerator.is_main_process:
            save_checkpoint(self.ckpt_dir / "last", self.modules, self.optimizer, self.scheduler, self.state)

    def run_epoch(self, bar: tqdm, on_step: Callable[[int], None] | None) -> None:
        """The rest of the current epoch (all of it, unless resumed mid-epoch)."""
        state, epoch = self.state, self.state["epoch"]
        self.train_set.set_epoch(epoch)
        acc = self.accelerator
        remaining = process_batches(epoch_batches(len(self.train_set), self.cfg.batch_size, self.seed, epoch),
                                    state["batch"], acc.process_index, acc.num_processes)
        loader = DataLoader(self.train_set, batch_sampler=remaining, num_workers=self.train_cfg.num_workers,
                            pin_memory=self.device.type == "cuda")
        for batch in loader:
            terms = _train_step(self.step_model, _to(batch, self.device), self.cfg, self.optimizer, self.scheduler,
                                self.accelerator)
            state["step"] += 1
            state["batch"] += acc.num_processes
            state["loss_count"] += 1
            for key, value in terms.items():
                state["loss_sums"][key] = state["loss_sums"].get(key, 0.0) + value
            bar.update()
            bar.set_postfix(loss=f"{terms['loss']:.4f}")
            if state["step"] % self.cfg.checkpoint_every == 0:
                self.checkpoint()
            if on_step is not None:
                on_step(state["step"])

    def end_epoch(self, log_metrics: MetricsLogger | None) -> None:
        """Validate, log the curves, keep the best weights, checkpoint the epoch boundary."""
        state, epoch = self.state, self.state["epoch"]
        count = max(1, state["loss_count"])
        entry = {"epoch": epoch, **{f"train_{k}": v / count for k, v in state["loss_sums"].items()},
                 "lr": self.scheduler.get_last_lr()[0],
                 **validate(self.model, self.val_set, self.cfg.eval_batch_size, self.device)}
        state["history"].append(entry)
        main = self.accelerator.is_main_process
        if log_metrics is not None and main:
            log_metrics(entry, step=epoch)
        score = entry.get("val_psnr", -entry.get("train_loss", 0.0))  # no VAL videos: lowest training loss
        if state["best_score"] is None or score > state["best_score"]:
            state["best_score"], state["best_epoch"] = score, epoch
            if main:
                save_checkpoint(self.ckpt_dir / "best", self.modules, state={"epoch": epoch, "score": score})
        state.update(epoch=epoch + 1, batch=0, loss_sums={}, loss_count=0)
        self.checkpoint()

    def result(self) -> TrainResult:
        """The best epoch's weights (the last ones when no epoch was validated) and the history."""
        self.accelerator.wait_for_everyone()  # the main process has written 'best' and 'last'
        best_dir = self.ckpt_dir / ("best" if (self.ckpt_dir / "best" / STATE_FILE).exists() else "last")
        load_checkpoint(best_dir, self.modules, map_location=self.device)
        history = self.state["history"]
        best = next((h for h in history if h["epoch"] == self.state["best_epoch"]), history[-1])
        return TrainResult(self.model.eval(), best, history, self.state["step"], self.resumed_from)


def train_mafe(cfg: MafeConfig, train_cfg: TrainConfig, layout: Layout, seed: int, *, progress: bool = True,
               log_metrics: MetricsLogger | None = None, on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train (or resume, or just reload when already finished) MAFE; returns the best epoch's model.

    ``log_metrics(dict, step=epoch)`` receives the per-epoch curves (e.g. ``tracking.log_metrics``);
    ``on_step(step)`` runs after every optimizer step (tests use it to simulate a kill).
    """
    data = prepare_data(layout, cfg)
    accelerator = make_accelerator(train_cfg)  # also sets train.torch_threads
    seed_everything(seed)
    run = _Run(cfg, train_cfg, layout, seed, data, accelerator)
    if run.resumed_from is not None:
        log.info("train_mafe: resuming from step %d (epoch %d)", run.resumed_from, run.state["epoch"])
        if log_metrics is not None:  # the resumed run's MLflow curves start at epoch 0 too
            for entry in run.state["history"]:
                log_metrics(entry, step=entry["epoch"])
    with tqdm(total=run.total_steps, initial=run.state["step"], desc="train_mafe", unit="step",
              disable=not (progress and accelerator.is_main_process)) as bar:
        while run.state["epoch"] < cfg.epochs:
            run.run_epoch(bar, on_step)
            run.end_epoch(log_metrics)
    return run.result()


def ef_probe_metrics(model: MAFE, layout: Layout, cfg: MafeConfig, refs: list[PairRef], seed: int,
                     device: torch.device | str = "cpu", progress: bool = False) -> dict[str, float | None]:
    """Out-of-fold R^2 of EF from motion vectors vs from pooled appearance (videos with a known EF)."""
    labelled = [r for r in refs if r.ef is not None and math.isfinite(r.ef)]
    if not labelled:
        return {"ef_probe_r2_motion": None, "ef_probe_r2_appearance": None}
    motion, appearance = encode_pairs(model, layout, labelled, cfg.eval_batch_size, device, progress, "ef probe")
    ef = np.array([r.ef for r in labelled])
    return {"ef_probe_r2_motion": cross_validated_r2(motion, ef, cfg.probe_folds, cfg.probe_alphas, seed),
            "ef_probe_r2_appearance": cross_validated_r2(appearance, ef, cfg.probe_folds, cfg.probe_alphas, seed)}
