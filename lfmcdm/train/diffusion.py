"""Training the MCDM: v-prediction DDPM loss masked on padded frames, conditioning dropout, EMA.

Runs under ``accelerate`` (one CPU process for the demo; ``accelerate launch`` for one or many GPUs
with mixed precision). Every random draw of a step (windows, noise, timesteps, dropout) comes from
the step-seeded RNG, so a resumed run continues exactly where the killed one left off.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from lfmcdm.config import TrainConfig
from lfmcdm.models.conditioning import dropout_mask
from lfmcdm.models.unet import MCDM, build_conditioner, build_unet, time_ids
from lfmcdm.settings.diffusion import DiffusionConfig
from lfmcdm.train.accel import (SEED_SPACE, StepLoop, fingerprint, log_curve, make_accelerator,
                                step_rng)
from lfmcdm.checkpoint import resume, save_checkpoint
from lfmcdm.data.video_windows import LatentWindows


def make_noise_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The training noise schedule (samplers are built from its config, so they always agree)."""
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False)


def build_mcdm(cfg: DiffusionConfig, latent_channels: int, latent_size: int, motions: np.ndarray) -> MCDM:
    """A fresh model whose conditioner standardises motion with the statistics of ``motions`` (N, D)."""
    model = MCDM(build_unet(cfg, latent_channels, latent_size), build_conditioner(cfg, motions.shape[1]))
    model.conditioner.set_motion_stats(torch.from_numpy(np.asarray(motions, np.float32)))
    return model


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real frames only: ``(B, F, ...)`` tensors, ``mask`` ``(B, F)`` bool.

    Every real frame weighs the same; padded frames contribute exactly zero (numerator and count).
    """
    per_frame = ((pred - target) ** 2).flatten(2).mean(2)
    weights = mask.to(per_frame.dtype)
    return (per_frame * weights).sum() / weights.sum().clamp_min(1.0)


def sample_timesteps(n: int, num_train_timesteps: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` training timesteps: uniform for ``shift`` 1, else ``u ~ U(0, 1)`` mapped through
    ``s u / (1 + (s - 1) u)`` (the timestep shift of SD3, Esser et al. 2024), which moves mass to high noise.

    Why: the reference frame gives the appearance away, so the low-noise steps are easy; what the motion
    vector must decide (when the walls move, how far) is settled at high noise. On the demo phantom, 300
    steps with shift 3 raised motion_area_r from 0.58 to 0.75 (12 videos; docs/benchmarks.md).
    """
    if shift == 1.0:
        return torch.randint(0, num_train_timesteps, (n,), generator=generator)
    u = torch.rand(n, generator=generator)
    u = shift * u / (1 + (shift - 1) * u)
    return (u * num_train_timesteps).long().clamp(0, num_train_timesteps - 1)


def diffusion_loss(model: torch.nn.Module, noise_sched: DDPMScheduler, batch: dict[str, torch.Tensor],
                   cfg: DiffusionConfig, generator: torch.Generator, device: torch.device | str = "cpu",
                   drop_p: float | None = None) -> torch.Tensor:
    """The v-prediction loss of one batch; ``drop_p`` overrides ``cfg.cond_dropout`` (validation uses 0)."""
    x0 = batch["latents"]
    b = len(x0)
    noise = torch.randn(x0.shape, generator=generator)
    t = sample_timesteps(b, noise_sched.config.num_train_timesteps, cfg.timestep_shift, generator)
    drop = dropout_mask(b, cfg.cond_dropout if drop_p is None else drop_p, generator)
    reference = batch["reference"] + cfg.added_time_ids.noise_aug_strength * torch.randn(
        batch["reference"].shape, generator=generator)
    return _v_loss(model, noise_sched, x0, noise, t, reference, batch, drop, cfg, device)


def _v_loss(model, noise_sched, x0, noise, t, reference, batch, drop, cfg, device) -> torch.Tensor:
    x0, noise, t = x0.to(device), noise.to(device), t.to(device)
    noisy = noise_sched.add_noise(x0, noise, t)
    target = noise_sched.get_velocity(x0, noise, t)
    ids = torch.tensor([time_ids(cfg)], device=device).expand(len(x0), -1)
    pred = model(noisy, t, reference.to(device), batch["motion"].to(device), drop.to(device), ids)
    return masked_mse(pred.float(), target.float(), batch["mask"].to(device))


@torch.no_grad()
def validation_loss(model: MCDM, noise_sched: DDPMScheduler, data: LatentWindows, cfg: DiffusionConfig, seed: int,
                    device: torch.device | str = "cpu") -> float | None:
    """Conditional loss on fixed VAL windows at ``val_timesteps`` evenly spaced timesteps, fixed noise."""
    if not len(data):
        return None
    model.eval()
    batch = data.fixed(cfg.val_videos)
    b, n_t = len(batch["latents"]), noise_sched.config.num_train_timesteps
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for k in range(cfg.val_timesteps):
        t = torch.full((b,), int((k + 0.5) * n_t / cfg.val_timesteps), dtype=torch.long)
        noise = torch.randn(batch["latents"].shape, generator=gen)
        losses.append(_v_loss(model, noise_sched, batch["latents"], noise, t, batch["reference"], batch,
                              torch.zeros(b, dtype=torch.bool), cfg, device).item())
    return float(np.mean(losses))


RESUME_FREE = {"steps", "checkpoint_every", "log_every", "val_videos", "val_timesteps", "motion_eval"}


def run_settings(cfg: DiffusionConfig, latent_channels: int, latent_size: int, motion_dim: int, seed: int,
                 data_key: str) -> dict:
    """What a checkpoint must match to be resumed: everything that shapes training except its length
    (raising ``steps`` continues a finished run; lowering it trains afresh) and logging/evaluation knobs;
    plus the data."""
    return {"cfg": cfg.model_dump(exclude=RESUME_FREE), "latent": [latent_channels, latent_size],
            "motion_dim": motion_dim, "seed": seed, "data": data_key}


def make_ema(model: torch.nn.Module, cfg: DiffusionConfig, step: int = 0) -> EMAModel:
    """EMA of ``model``'s parameters with warmup (decay ``1 - (1 + step) ** -power``, capped at ``ema_decay``),
    so short CPU runs still average over their own steps rather than sticking to the initial weights."""
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=cfg.ema_power)
    ema.optimization_step = step
    return ema


@dataclass
class DiffusionTrainResult:
    model: MCDM  # EMA weights, eval mode, on CPU
    start_step: int
    end_step: int
    loss: float | None  # EMA-smoothed training loss


def train_mcdm(cfg: DiffusionConfig, train_cfg: TrainConfig, data: LatentWindows, checkpoint_dir: Path, seed: int,
               latent_channels: int, latent_size: int, progress: bool = True, stop_after: int | None = None,
               data_key: str = "") -> DiffusionTrainResult:
    """Train (or resume) up to ``cfg.steps``.

    ``stop_after`` simulates a kill (tests): training stops after that step *without* a final
    checkpoint, so a later call resumes from the last periodic one. ``data_key`` identifies the
    training data (latents, motion bank); a checkpoint made on other data is not resumed.
    """
    if not len(data):
        raise ValueError("no TRAIN videos with both cached latents and a motion vector")
    accelerator = make_accelerator(train_cfg, cfg.grad_accum)
    torch.manual_seed(seed)
    model = build_mcdm(cfg, latent_channels, latent_size, data.motions)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = get_scheduler("constant_with_warmup", optimizer,
                             num_warmup_steps=cfg.warmup_steps * accelerator.num_processes)
    ema_model = copy.deepcopy(model)
    key = fingerprint(run_settings(cfg, latent_channels, latent_size, data.motions.shape[1], seed, data_key))
    state = resume(checkpoint_dir, key, "train_diffusion", {"model": model, "ema": ema_model}, optimizer, lr_sched,
                   max_step=cfg.steps)
    ema = make_ema(ema_model, cfg, int(state["ema_step"]) if state else 0)
    noise_sched = make_noise_scheduler(cfg)
    model, optimizer, lr_sched = accelerator.prepare(model, optimizer, lr_sched)
    ema.to(accelerator.device)
    model.train()
    loop = StepLoop("train_diffusion", accelerator, cfg.steps, state, stop_after, progress)
    for step in loop:
        rng = step_rng(seed, step, accelerator.process_index)
        for _ in range(cfg.grad_accum):
            batch = data.sample(rng, cfg.batch_size)
            gen = torch.Generator().manual_seed(int(rng.integers(SEED_SPACE)))
            with accelerator.accumulate(model):
                loss = diffusion_loss(model, noise_sched, batch, cfg, gen, accelerator.device)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                lr_sched.step()
                optimizer.zero_grad(set_to_none=True)
        ema.step(accelerator.unwrap_model(model).parameters())
        value = loop.record(loss)
        done = step + 1
        if accelerator.is_main_process:
            if done % cfg.log_every == 0:
                log_curve({"diffusion_loss": value, "diffusion_loss_ema": loop.loss_ema,
                           "ema_decay": ema.cur_decay_value or 0.0}, step=done)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                ema.copy_to(ema_model.parameters())
                save_checkpoint(checkpoint_dir, {"model": accelerator.unwrap_model(model), "ema": ema_model},
                                optimizer, lr_sched, {"step": done, "fingerprint": key, "loss_ema": loop.loss_ema,
                                                      "ema_step": ema.optimization_step,
                                                      "processes": accelerator.num_processes})
    ema.copy_to(ema_model.parameters())
    return DiffusionTrainResult(ema_model.cpu().eval(), loop.start, loop.last_step, loop.loss_ema)
