"""MAFE's training data: (ED, ES) pairs, middle-frame targets, pseudo flows and ReID embeddings.

Reproducible to the bit and resumable mid-epoch: the batch order of an epoch and the augmentation
of every sample are pure functions of ``(seed, epoch, index)``, so a run restarted from a
checkpoint sees exactly the batches the killed run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from lfmcdm.data.pairs import PairRef, mid_embedding, mid_flows, pair_frames
from lfmcdm.layout import Layout
from lfmcdm.models.motion_vectors import PIXEL_MAX
from lfmcdm.train.mafe_augment import PairAugment

AUGMENT_STREAM = 1  # separate random streams for batch order and augmentation
ORDER_STREAM = 2


class PairDataset(Dataset):
    """Items: ``a``, ``b``, ``mid`` (1, H, W) in [0, 1]; ``flow_a``/``flow_b`` (2, H, W) MID->A/B; ``reid`` (D,)."""

    def __init__(self, layout: Layout, refs: list[PairRef], *, flows: bool, reid: bool, seed: int,
                 flip: bool = False, rotate: bool = False, swap: bool = False) -> None:
        self.layout, self.refs, self.flows, self.reid, self.seed = layout, refs, flows, reid, seed
        self.flip, self.rotate, self.swap = flip, rotate, swap
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.refs)

    def augmentation(self, index: int) -> PairAugment:
        rng = np.random.default_rng([self.seed, AUGMENT_STREAM, self.epoch, index])
        return PairAugment.sample(rng, self.flip, self.rotate, self.swap)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ref = self.refs[index]
        ed, es, mid = pair_frames(self.layout, ref)
        item = {k: torch.from_numpy(f.astype(np.float32) / PIXEL_MAX).unsqueeze(0) for k, f in (("a", ed), ("b", es), ("mid", mid))}
        if self.flows:
            to_ed, to_es = mid_flows(self.layout, ref)
            item["flow_a"] = torch.from_numpy(to_ed).permute(2, 0, 1).contiguous()
            item["flow_b"] = torch.from_numpy(to_es).permute(2, 0, 1).contiguous()
        if self.reid:
            item["reid"] = torch.from_numpy(mid_embedding(self.layout, ref))
        return self.augmentation(index)(item)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """The index batches of one epoch (seeded permutation; the last batch may be smaller, never a single item:
    batch statistics of the ReID head need two, so a lone last item joins the previous batch)."""
    order = np.random.default_rng([seed, ORDER_STREAM, epoch]).permutation(n) if shuffle else np.arange(n)
    batches = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] += batches.pop()
    return batches
