"""Encode videos' (ED, ES) pairs with a trained MAFE into motion (and appearance) vectors."""

from __future__ import annotations

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


@torch.no_grad()
def encode_pairs(model: MAFE, layout: Layout, refs: list[PairRef], batch_size: int, device: torch.device | str = "cpu",
                 progress: bool = False, desc: str = "encode") -> tuple[np.ndarray, np.ndarray]:
    """(motion (N, motion_dim), appearance (N, D_app)) float32 for each pair, in ``refs`` order."""
    model.eval()
    motion, appearance = [], []
    starts = range(0, len(refs), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        chunk = [pair_frames(layout, ref) for ref in refs[start : start + batch_size]]
        a = model.pad_to_stride(to_tensor([c[0] for c in chunk], device))
        b = model.pad_to_stride(to_tensor([c[1] for c in chunk], device))
        features = model.encode(a, b)
        motion.append(model.motion_vector(features).float().cpu().numpy())
        appearance.append(model.appearance_vector(features).float().cpu().numpy())
    dim_m, dim_a = model.config.motion_dim, model.appearance_vector_dim
    if not refs:
        return np.zeros((0, dim_m), np.float32), np.zeros((0, dim_a), np.float32)
    return np.concatenate(motion), np.concatenate(appearance)
