"""Geometric augmentations of a frame pair that keep frames, flows and targets consistent.

A flow is a field of *vectors*: flipping or rotating the image moves the vectors to new pixels
**and** turns the vectors themselves. Swapping the two input frames swaps which flow points to
which input (MID->A becomes MID->B). Getting either wrong silently teaches the model wrong motion,
so every transform here is tested numerically against a warp (tests/test_mafe.py).

Tensors: frames ``(C, H, W)``; flows ``(2, H, W)`` with channels ``(dx, dy)`` in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FRAME_KEYS = ("a", "b", "mid")
FLOW_KEYS = ("flow_a", "flow_b")


@dataclass(frozen=True)
class PairAugment:
    """One draw: horizontal flip, then ``rot`` quarter turns (counter-clockwise as displayed), then swap."""

    hflip: bool = False
    rot: int = 0
    swap: bool = False

    @classmethod
    def sample(cls, rng: np.random.Generator, flip: bool, rotate: bool, swap: bool) -> "PairAugment":
        """With flips and rotations on, all 8 symmetries of the square are equally likely."""
        return cls(hflip=bool(flip and rng.random() < 0.5), rot=int(rng.integers(0, 4)) if rotate else 0,
                   swap=bool(swap and rng.random() < 0.5))

    def __call__(self, sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(sample)
        for key in FRAME_KEYS:
            if key in out:
                out[key] = rot90_frame(hflip_frame(out[key]) if self.hflip else out[key], self.rot)
        for key in FLOW_KEYS:
            if key in out:
                out[key] = rot90_flow(hflip_flow(out[key]) if self.hflip else out[key], self.rot)
        if self.swap:
            out = swap_pair(out)
        return out


def hflip_frame(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(-1,))


def hflip_flow(flow: torch.Tensor) -> torch.Tensor:
    """Mirror x: vectors move to the mirrored pixel and their dx changes sign."""
    flipped = torch.flip(flow, dims=(-1,))
    return torch.stack([-flipped[0], flipped[1]])


def rot90_frame(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.rot90(x, k % 4, dims=(-2, -1))


def rot90_flow(flow: torch.Tensor, k: int) -> torch.Tensor:
    """Quarter turns: pixel (x, y) goes to (y, W-1-x), so a vector (dx, dy) becomes (dy, -dx)."""
    out = flow
    for _ in range(k % 4):
        turned = torch.rot90(out, 1, dims=(-2, -1))
        out = torch.stack([turned[1], -turned[0]])
    return out


def swap_pair(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Exchange the inputs; the middle frame stays, the flows MID->A and MID->B trade places."""
    out = dict(sample)
    out["a"], out["b"] = sample["b"], sample["a"]
    if "flow_a" in sample:
        out["flow_a"], out["flow_b"] = sample["flow_b"], sample["flow_a"]
    return out
