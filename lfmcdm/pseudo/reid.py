"""Self-supervised re-identification training: which video (patient/acquisition) does a frame come from?

The network and inference (:func:`lfmcdm.models.reid.embed_frames`, used by synthesis and evaluation)
live in :mod:`lfmcdm.models.reid`; this module only trains it (stage ``pseudo_labels``).

Training signal without labels: two frames of one video, independently augmented (gain, gamma,
noise, shift: the acquisition nuisances), are the same identity; frames of the other videos in
the batch are different identities (NT-Xent / InfoNCE). Different cardiac phases of one video
are positives, so the embedding learns appearance, not motion - what MAFE's appearance branch
is supervised with, and what the privacy filter compares synthetic videos against.

Deterministic: the model is initialised from the seed and batch ``k`` is drawn from
``default_rng([seed, k])``, so a run resumed from a checkpoint repeats the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lfmcdm.checkpoint import resume, save_checkpoint
from lfmcdm.models.reid import ReidEncoder, build_encoder
from lfmcdm.settings.pseudo import ReidConfig


def augment(frames: np.ndarray, rng: np.random.Generator, cfg: ReidConfig) -> np.ndarray:
    """Acquisition nuisances an identity must survive: gain, gamma, noise, small probe shift."""
    x = frames.astype(np.float32) / 255.0
    n = len(x)
    gamma = np.exp(rng.uniform(-cfg.gamma_jitter, cfg.gamma_jitter, (n, 1, 1))).astype(np.float32)
    gain = np.exp(rng.uniform(-cfg.gain_jitter, cfg.gain_jitter, (n, 1, 1))).astype(np.float32)
    x = 255.0 * gain * np.power(x, gamma)
    x = x + rng.normal(0.0, cfg.noise_std, x.shape).astype(np.float32)
    if cfg.shift_px > 0:
        shifts = rng.integers(-cfg.shift_px, cfg.shift_px + 1, (n, 2))
        x = np.stack([_shift(img, int(dy), int(dx)) for img, (dy, dx) in zip(x, shifts)])
    return np.clip(x, 0, 255)


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate with zero fill (what a moved probe shows at the edge: nothing)."""
    out = np.zeros_like(img)
    h, w = img.shape
    src = img[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = src
    return out


def sample_views(
    clips: Sequence[np.ndarray], rng: np.random.Generator, cfg: ReidConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Two augmented views (different random frames) of each of a batch of distinct videos."""
    videos = rng.choice(len(clips), size=min(cfg.batch_videos, len(clips)), replace=False)
    a, b = [], []
    for v in videos:
        n = len(clips[v])
        i, j = rng.choice(n, size=2, replace=n < 2)
        a.append(clips[v][i])
        b.append(clips[v][j])
    return augment(np.stack(a), rng, cfg), augment(np.stack(b), rng, cfg)


def nt_xent(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner out of all other 2B-1 views."""
    z = torch.cat([za, zb])
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = len(za)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def train_reid(
    clips: Sequence[np.ndarray],
    cfg: ReidConfig,
    seed: int,
    device: torch.device | str = "cpu",
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[dict, int], None] | None = None,
    fingerprint: str = "",
) -> tuple[ReidEncoder, dict]:
    """Train the encoder on ``clips`` (uint8 ``(T, H, W)`` each, memmaps are fine); resumes from ``checkpoint_dir``.

    A checkpoint is resumed only when its ``fingerprint`` (settings, seed, data) matches, so a
    changed config retrains instead of silently continuing another run. A finished checkpoint
    makes a rerun cost nothing. Returns the model (eval mode) and a summary.
    """
    if len(clips) < 2:
        raise ValueError(f"ReID training needs at least 2 videos (negatives), got {len(clips)}")
    model = build_encoder(cfg, seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps))
    state = (resume(checkpoint_dir, fingerprint, "reid", {"encoder": model}, opt, sched, map_location=device)
             if checkpoint_dir else None)
    start = int(state["step"]) if state else 0
    loss_value = float(state.get("loss", float("nan"))) if state else float("nan")
    model.train()
    bar = tqdm(range(start, cfg.steps), desc="reid", unit="step", disable=not progress, initial=start, total=cfg.steps)
    for step in bar:
        view_a, view_b = sample_views(clips, np.random.default_rng([seed, step]), cfg)
        za = model(torch.from_numpy(view_a).to(device))
        zb = model(torch.from_numpy(view_b).to(device))
        loss = nt_xent(za, zb, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        bar.set_postfix(loss=f"{loss_value:.3f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            if checkpoint_dir:
                save_checkpoint(checkpoint_dir, {"encoder": model}, opt, sched,
                                {"step": done, "loss": loss_value, "fingerprint": fingerprint})
            if log:
                log({"reid_loss": loss_value}, done)
    model.eval()
    return model, {"steps": cfg.steps, "final_loss": loss_value, "resumed_from": start}


def reid_top1(embeddings: Sequence[np.ndarray], exclude: int, queries_per_video: int) -> float:
    """Top-1 re-identification over several videos' per-frame embeddings ``(T_i, D)``.

    Each query frame searches all frames of all videos, except the frames of its own video within
    ``exclude`` frames of it (near-duplicates would make the task trivial); it is a hit when the
    nearest remaining frame belongs to its own video. Queries are evenly spaced in each video;
    a query whose own video has no frame left to find (a clip shorter than the exclusion) is skipped.
    """
    if len(embeddings) < 2:
        return float("nan")
    gallery = np.concatenate([np.asarray(e, np.float32) for e in embeddings])
    owner = np.concatenate([np.full(len(e), v) for v, e in enumerate(embeddings)])
    frame = np.concatenate([np.arange(len(e)) for e in embeddings])
    hits, total = 0, 0
    for v, e in enumerate(embeddings):
        picks = np.unique(np.linspace(0, len(e) - 1, min(queries_per_video, len(e))).round().astype(int))
        sims = np.asarray(e, np.float32)[picks] @ gallery.T
        own = owner[None, :] == v
        near = own & (np.abs(frame[None, :] - picks[:, None]) <= exclude)
        sims[near] = -np.inf
        findable = (own & ~near).any(axis=1)
        best = np.argmax(sims, axis=1)
        hits += int((owner[best][findable] == v).sum())
        total += int(findable.sum())
    return hits / total if total else float("nan")
