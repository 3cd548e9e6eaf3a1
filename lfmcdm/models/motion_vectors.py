"""Encode videos with a trained MAFE into motion (and appearance) vectors.

Two views of a video: its (ED, ES) pair (MAFE's training unit; the EF probe reads it) and its motion
*trajectory* — the pairs (ED, ES), (ED, ED + t_1), ..., (ED, ED + t_K) for the times
``mafe.bank_times_s`` — whose concatenated motion vectors are the motion bank's one vector per video.
Synthetic videos are encoded by the same functions (evaluation), so both sides match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from lfmcdm.data.pairs import PairRef, pair_frames
from lfmcdm.layout import Layout
from lfmcdm.models.mafe import MAFE

PIXEL_MAX = 255.0


def to_tensor(frames: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (H, W) frames -> float (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(np.stack(frames)).to(device=device, dtype=torch.float32).unsqueeze(1) / PIXEL_MAX


def _encode(model: MAFE, firsts: list[np.ndarray], seconds: list[np.ndarray], device: torch.device | str):
    """MAFE features of uint8 frame pairs: frames to [0, 1], padded to the model's stride, encoded."""
    a = model.pad_to_stride(to_tensor(firsts, device))
    b = model.pad_to_stride(to_tensor(seconds, device))
    return model.encode(a, b)


@torch.no_grad()
def encode_pairs(model: MAFE, layout: Layout, refs: list[PairRef], batch_size: int, device: torch.device | str = "cpu",
                 progress: bool = False, desc: str = "encode") -> tuple[np.ndarray, np.ndarray]:
    """(motion (N, motion_dim), appearance (N, D_app)) float32 for each pair, in ``refs`` order."""
    model.eval()
    motion, appearance = [], []
    starts = range(0, len(refs), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        chunk = [pair_frames(layout, ref) for ref in refs[start : start + batch_size]]
        features = _encode(model, [c[0] for c in chunk], [c[1] for c in chunk], device)
        motion.append(model.motion_vector(features).float().cpu().numpy())
        appearance.append(model.appearance_vector(features).float().cpu().numpy())
    dim_m, dim_a = model.config.motion_dim, model.appearance_vector_dim
    if not refs:
        return np.zeros((0, dim_m), np.float32), np.zeros((0, dim_a), np.float32)
    return np.concatenate(motion), np.concatenate(appearance)


# ---- the motion bank's vector: a motion trajectory from end-diastole --------------------------
FramePair = tuple[np.ndarray, np.ndarray]


def partner_indices(ed: int, es: int, n_frames: int, fps: float, times_s: Sequence[float]) -> list[int]:
    """The frames paired with ED: ES first (the pair MAFE trains on, which carries the ejection),
    then the frames ``times_s`` seconds after ED, clamped to the clip (which carry the timing:
    heart rate and systole length, which one ED/ES pair cannot tell)."""
    return [int(es)] + [min(n_frames - 1, int(round(ed + t * fps))) for t in times_s]


def trajectory_pairs(clip: np.ndarray, ed: int, es: int, fps: float, times_s: Sequence[float]) -> list[FramePair]:
    """The (ED, partner) uint8 frame pairs of one clip ``(T, H, W)``, copied out of it."""
    first = np.array(clip[ed])
    return [(first, np.array(clip[p])) for p in partner_indices(ed, es, len(clip), fps, times_s)]


@torch.no_grad()
def encode_frame_pairs(model: MAFE, pairs: list[FramePair], device: torch.device | str) -> np.ndarray:
    """MAFE motion vectors ``(N, motion_dim)`` of uint8 frame pairs (one forward pass)."""
    features = _encode(model, [p[0] for p in pairs], [p[1] for p in pairs], device)
    return model.motion_vector(features).float().cpu().numpy()


@torch.no_grad()
def motion_trajectories(model: MAFE, videos: Iterable[list[FramePair]], n_videos: int, batch_size: int,
                        device: torch.device | str = "cpu", progress: bool = False, desc: str = "encode") -> np.ndarray:
    """One motion vector per video ``(N, pairs * motion_dim)``: its pairs' MAFE motion vectors, concatenated.

    ``videos`` yields each video's pairs (lazily, so a large dataset is never held whole); pairs are
    encoded ``batch_size`` at a time across videos.
    """
    model.eval()
    done: list[np.ndarray] = []
    pending: list[FramePair] = []
    per_video = None
    for pairs in tqdm(videos, total=n_videos, desc=desc, unit="video", disable=not progress):
        if per_video is not None and len(pairs) != per_video:
            raise ValueError(f"every video needs the same number of frame pairs ({per_video}), got {len(pairs)}")
        per_video = len(pairs)
        pending.extend(pairs)
        while len(pending) >= batch_size:
            done.append(encode_frame_pairs(model, pending[:batch_size], device))
            pending = pending[batch_size:]
    if pending:
        done.append(encode_frame_pairs(model, pending, device))
    if per_video is None:
        return np.zeros((0, model.config.motion_dim), np.float32)
    return np.concatenate(done).reshape(-1, per_video * model.config.motion_dim)
