"""Training the frame VAE: reconstruction (L1/MSE, optional SSIM) + a small KL term, resumable.

The KL weight is tiny on purpose (as in Stable Diffusion's autoencoder): the latent only needs to
be roughly Gaussian-shaped; its scale is fixed afterwards by ``scaling_factor = 1 / std``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler

from lfmcdm.config import TrainConfig
from lfmcdm.data.tables import load_clip
from lfmcdm.eval.recon_quality import psnr, ssim
from lfmcdm.layout import Layout
from lfmcdm.models.vae import build_vae, memory_format, to_unit
from lfmcdm.settings.diffusion import VaeConfig
from lfmcdm.train.accel import (SEED_SPACE, StepLoop, fingerprint, log_curve, make_accelerator,
                                step_rng)
from lfmcdm.checkpoint import resume, save_checkpoint


@dataclass
class FrameSource:
    """Frames of a set of clips, read from memory-mapped ``.npy`` files on demand."""

    layout: Layout
    names: list[str]
    lengths: list[int]

    @classmethod
    def from_rows(cls, layout: Layout, rows: list[dict]) -> "FrameSource":
        return cls(layout, [r["file_name"] for r in rows], [int(r["n_frames"]) for r in rows])

    def __len__(self) -> int:
        return len(self.names)

    def frames(self, picks: list[tuple[int, int]]) -> np.ndarray:
        """uint8 ``(N, H, W)`` for (video index, frame index) pairs."""
        return np.stack([load_clip(self.layout, self.names[v])[f] for v, f in picks])

    def sample(self, rng: np.random.Generator, n: int, crop: int | None = None) -> np.ndarray:
        """``n`` random frames: a uniform video, then a uniform frame of it; then a uniform ``crop`` square of each."""
        videos = rng.integers(0, len(self.names), n)
        frames = self.frames([(int(v), int(rng.integers(0, self.lengths[v]))) for v in videos])
        if crop is None or crop >= min(frames.shape[1:]):
            return frames
        ys = rng.integers(0, frames.shape[1] - crop + 1, n)
        xs = rng.integers(0, frames.shape[2] - crop + 1, n)
        return np.stack([f[y:y + crop, x:x + crop] for f, y, x in zip(frames, ys, xs)])

    def spread(self, n: int) -> np.ndarray:
        """``n`` frames spread evenly over videos and time (deterministic, for metrics)."""
        per_video = max(1, -(-n // len(self.names)))
        picks = [(v, int(f)) for v in range(len(self.names))
                 for f in np.linspace(0, self.lengths[v] - 1, per_video).round()]
        return self.frames(picks[:n])


@dataclass
class VaeTrainResult:
    vae: AutoencoderKL
    start_step: int  # step the run started (or resumed) from
    end_step: int
    loss: float | None  # EMA-smoothed training loss at the end (None if no step ran ever)


class ReconWithKL(torch.nn.Module):
    """encode -> sample -> decode as one ``forward`` (so DDP and autocast see the whole computation)."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return self.vae.decode(posterior.sample(generator)).sample, posterior.kl()


def vae_loss(recon: torch.Tensor, kl: torch.Tensor, x: torch.Tensor, cfg: VaeConfig
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction + ``kl_weight`` * KL (+ ``ssim_weight`` * (1 - SSIM)) for a batch in [-1, 1]."""
    recon = recon.float()
    rec = F.l1_loss(recon, x) if cfg.recon_loss == "l1" else F.mse_loss(recon, x)
    kl = kl.float().mean()
    loss = rec + cfg.kl_weight * kl
    parts = {"vae_recon": rec.item(), "vae_kl": kl.item()}
    if cfg.ssim_weight > 0:
        s = ssim((recon.clamp(-1, 1) + 1) / 2, (x + 1) / 2).mean()
        loss = loss + cfg.ssim_weight * (1 - s)
        parts["vae_ssim"] = s.item()
    return loss, parts


RESUME_FREE = {"steps", "checkpoint_every", "log_every", "val_frames", "scale_frames"}


def run_settings(cfg: VaeConfig, frame_size: int, seed: int, data_key: str) -> dict:
    """What a checkpoint must match to be resumed: everything that shapes training except its length
    (raising ``steps`` continues a finished run; lowering it trains afresh) and logging/evaluation knobs;
    plus the data."""
    return {"cfg": cfg.model_dump(exclude=RESUME_FREE), "frame_size": frame_size, "seed": seed, "data": data_key}


def train_vae(cfg: VaeConfig, train_cfg: TrainConfig, source: FrameSource, checkpoint_dir: Path, seed: int,
              frame_size: int, progress: bool = True, stop_after: int | None = None, data_key: str = ""
              ) -> VaeTrainResult:
    """Train (or resume training) up to ``cfg.steps``; ``stop_after`` simulates a kill (no final checkpoint).

    ``data_key`` identifies the training data (a checkpoint made on other data is not resumed).
    """
    accelerator = make_accelerator(train_cfg)
    torch.manual_seed(seed)
    vae = build_vae(cfg, frame_size)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr)
    n = accelerator.num_processes  # a prepared scheduler steps once per process
    lr_sched = get_scheduler("cosine", optimizer, num_warmup_steps=cfg.warmup_steps * n,
                             num_training_steps=cfg.steps * n)
    key = fingerprint(run_settings(cfg, frame_size, seed, data_key))
    state = resume(checkpoint_dir, key, "train_vae", {"vae": vae}, optimizer, lr_sched, max_step=cfg.steps)
    fmt = memory_format(train_cfg.channels_last)
    model, optimizer, lr_sched = accelerator.prepare(ReconWithKL(vae).to(memory_format=fmt), optimizer, lr_sched)
    model.train()
    loop = StepLoop("train_vae", accelerator, cfg.steps, state, stop_after, progress)
    for step in loop:
        rng = step_rng(seed, step, accelerator.process_index)
        x = to_unit(source.sample(rng, cfg.batch_size, cfg.crop_size), accelerator.device).contiguous(memory_format=fmt)
        gen = torch.Generator(accelerator.device).manual_seed(int(rng.integers(SEED_SPACE)))
        recon, kl = model(x, gen)
        loss, parts = vae_loss(recon, kl, x, cfg)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        lr_sched.step()
        optimizer.zero_grad(set_to_none=True)
        value = loop.record(loss)
        done = step + 1
        if accelerator.is_main_process:
            if done % cfg.log_every == 0:
                log_curve({"vae_loss": value, "vae_loss_ema": loop.loss_ema, **parts}, step=done)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save_checkpoint(checkpoint_dir, {"vae": accelerator.unwrap_model(model).vae}, optimizer, lr_sched,
                                {"step": done, "fingerprint": key, "loss_ema": loop.loss_ema})
    # safetensors (save_pretrained) stores contiguous tensors only
    vae = accelerator.unwrap_model(model).vae.to(memory_format=torch.contiguous_format).eval()
    return VaeTrainResult(vae, loop.start, loop.last_step, loop.loss_ema)


@torch.no_grad()
def compute_scaling_factor(vae: AutoencoderKL, frames: np.ndarray, batch_size: int) -> float:
    """``1 / std`` of the posterior means of ``frames`` (unit-variance latents for the diffusion model)."""
    device = next(vae.parameters()).device
    means = [vae.encode(to_unit(frames[i : i + batch_size], device)).latent_dist.mean.float()
             for i in range(0, len(frames), batch_size)]
    return float(1.0 / torch.cat(means).std().clamp_min(1e-6))


@torch.no_grad()
def evaluate_vae(vae: AutoencoderKL, frames: np.ndarray, batch_size: int) -> dict[str, float]:
    """PSNR / SSIM (on [0, 1] images) of mean-latent reconstructions of uint8 ``frames``."""
    device = next(vae.parameters()).device
    p, s = [], []
    for i in range(0, len(frames), batch_size):
        x = to_unit(frames[i : i + batch_size], device)
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        # quantise like the decoded uint8 videos are
        a, b = ((recon + 1) * 127.5).round() / 255.0, (x + 1) / 2
        p.append(psnr(a, b))
        s.append(ssim(a, b))
    return {"val_psnr": torch.cat(p).mean().item(), "val_ssim": torch.cat(s).mean().item()}
