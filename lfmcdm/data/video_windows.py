"""Training windows of cached latents: n frames at the diffusion fps, zero-padded, with a frame mask.

Clips are stored at ``data.target_fps`` (50); the diffusion model sees ``diffusion.fps`` (16), so
a window takes the clip frames nearest in time to ``start + k / fps`` for k = 0..n-1. A clip too
short for a full window is zero-padded at the end and its ``mask`` is False exactly on the padded
frames (``mask.sum()`` = number of real frames; the loss ignores the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lfmcdm.data.tables import load_array


def window_indices(n_clip: int, clip_fps: float, fps: float, n_frames: int, start: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Clip frame indices of a window starting at clip frame ``start`` (may be fractional), and its mask.

    Index k is ``round(start + k * clip_fps / fps)``; it is real iff it lies inside the clip. Padded
    entries get index 0 (their content is replaced by zeros and masked out).
    """
    idx = np.round(start + np.arange(n_frames) * (clip_fps / fps)).astype(np.int64)
    mask = idx < n_clip
    return np.where(mask, idx, 0), mask


def max_start(n_clip: int, clip_fps: float, fps: float, n_frames: int) -> float:
    """Latest start that keeps a full window inside the clip (0 when the clip is too short)."""
    return max(0.0, (n_clip - 1) - (n_frames - 1) * clip_fps / fps)


@dataclass
class LatentWindows:
    """The videos one split trains or validates on: names, clip lengths, motion vectors."""

    latents_dir: Path
    names: list[str]
    lengths: list[int]
    motions: np.ndarray  # (N, D) float32
    clip_fps: float
    fps: float
    n_frames: int
    reference: str = "window_start"  # or "random"
    window_start: str = "random"  # or "ed"
    ed_frames: list[int | None] | None = None  # label-free ED per video (phase.parquet ed_frame)

    @classmethod
    def from_rows(cls, latents_dir: Path, rows: list[dict], motion: dict[str, np.ndarray], clip_fps: float,
                  fps: float, n_frames: int, reference: str = "window_start", window_start: str = "random"
                  ) -> "LatentWindows":
        """Videos of ``rows`` that have a cached latent file and a motion vector."""
        keep = [r for r in rows if r["file_name"] in motion and (Path(latents_dir) / f"{r['file_name']}.npy").exists()]
        d = len(next(iter(motion.values()))) if motion else 0
        motions = np.stack([motion[r["file_name"]] for r in keep]) if keep else np.zeros((0, d), np.float32)
        return cls(Path(latents_dir), [r["file_name"] for r in keep], [int(r["n_frames"]) for r in keep], motions,
                   clip_fps, fps, n_frames, reference, window_start, [r.get("ed_frame") for r in keep])

    def start(self, v: int, rng: np.random.Generator | None = None) -> float:
        """Window start of video ``v``: its end-diastole (``window_start="ed"``, when known), else random
        (``rng``) or 0 (no ``rng``: deterministic validation windows)."""
        ed = self.ed_frames[v] if self.ed_frames else None
        if self.window_start == "ed" and ed is not None:
            return float(min(ed, self.lengths[v] - 1))
        if rng is None:
            return 0.0
        return float(rng.uniform(0.0, max_start(self.lengths[v], self.clip_fps, self.fps, self.n_frames)))

    def __len__(self) -> int:
        return len(self.names)

    def window(self, v: int, start: float, ref_frame: int | None = None) -> dict[str, np.ndarray]:
        """Video ``v``'s window from ``start``: latents (F,C,h,w) zero-padded, reference (C,h,w), mask (F,)."""
        lat = load_array(self.latents_dir, self.names[v])
        idx, mask = window_indices(len(lat), self.clip_fps, self.fps, self.n_frames, start)
        frames = np.zeros((self.n_frames, *lat.shape[1:]), np.float32)
        frames[mask] = lat[idx[mask]]
        ref = lat[idx[0] if ref_frame is None else ref_frame].astype(np.float32)
        return {"latents": frames, "reference": ref, "mask": mask, "motion": self.motions[v]}

    def sample(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        """A random batch: uniform videos, starts per ``self.window_start``, reference per ``self.reference``."""
        items = []
        for v in rng.integers(0, len(self.names), batch):
            start = self.start(int(v), rng)
            ref = int(rng.integers(0, self.lengths[v])) if self.reference == "random" else None
            items.append(self.window(int(v), start, ref))
        return collate(items)

    def fixed(self, n_videos: int) -> dict[str, torch.Tensor]:
        """Deterministic windows (ED or frame 0) of the first ``n_videos`` videos, for validation."""
        return collate([self.window(v, self.start(v)) for v in range(min(n_videos, len(self.names)))])


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
