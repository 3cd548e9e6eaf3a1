"""``mafe`` section: the motion and appearance feature extractor and the motion bank.

``model`` describes the network (it is also written to ``models/mafe/config.json`` so a saved model
rebuilds itself without params.yaml); the rest are training, evaluation and motion-bank knobs.
Defaults are the tiny CPU demo profile; the paper-scale network is :data:`PAPER_MODEL`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from lfmcdm.config_base import Section


class MafeModelConfig(Section):
    """EMA-VFI-style encoder/decoder sizes.

    Levels: ``conv_channels`` are the CNN stem (first at full resolution, each next one at half),
    ``attn_channels`` the inter-frame attention levels that follow (each at half the previous).
    The motion vector pools the motion features of the last ``bank_levels`` attention levels on a
    ``motion_pool`` x ``motion_pool`` grid (their mean and, with ``motion_magnitude``, their mean
    magnitude per cell), so its size is fixed by the architecture;
    ``motion_dim`` states it explicitly (downstream stages size their conditioning from it) and
    is checked against the architecture.
    """

    conv_channels: tuple[int, ...] = (8,)
    attn_channels: tuple[int, ...] = (16, 32, 48)
    attn_depths: tuple[int, ...] = (1, 2, 2)
    attn_heads: tuple[int, ...] = (2, 2, 4)
    motion_channels: tuple[int, ...] = (8, 8, 16)  # per attention block; a level's motion = all its blocks
    window_size: int = Field(7, ge=2, description="attention window (tokens) in the partner frame; odd blocks shift it by half")
    mlp_ratio: float = Field(2.0, gt=0)
    decoder_channels: int = Field(24, gt=0, description="width of the flow heads")
    refine_channels: int = Field(16, gt=0, description="width of the full-resolution residual refiner")
    reid_hidden: int = Field(64, gt=0, description="hidden width of the ReID projection head")
    motion_pool: int = Field(4, ge=1, description="grid the motion maps are average-pooled to")
    bank_levels: int = Field(2, ge=1, description="last attention levels pooled into the motion vector")
    motion_magnitude: bool = Field(True, description="also pool |motion| per cell: size of the motion, wherever it points")
    motion_dim: int = Field(1536, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> "MafeModelConfig":
        n = len(self.attn_channels)
        if not (len(self.attn_depths) == len(self.attn_heads) == len(self.motion_channels) == n) or n == 0:
            raise ValueError("attn_channels, attn_depths, attn_heads and motion_channels need one entry per attention level")
        if not self.conv_channels:
            raise ValueError("conv_channels needs at least one level")
        for c, m, h in zip(self.attn_channels, self.motion_channels, self.attn_heads):
            if c % h or m % h:
                raise ValueError(f"attention channels ({c}) and motion channels ({m}) must be divisible by heads ({h})")
        if self.bank_levels > n:
            raise ValueError(f"bank_levels ({self.bank_levels}) exceeds the {n} attention levels")
        if self.motion_dim != self.pooled_motion_dim:
            raise ValueError(f"motion_dim must equal sum(motion_channels*attn_depths over the last bank_levels)"
                             f" * motion_pool^2 (x2 with motion_magnitude) = {self.pooled_motion_dim}, got {self.motion_dim}")
        return self

    @property
    def level_motion_channels(self) -> tuple[int, ...]:
        """Motion channels of each attention level (its blocks' motion features, concatenated)."""
        return tuple(m * d for m, d in zip(self.motion_channels, self.attn_depths))

    @property
    def pooled_motion_dim(self) -> int:
        stats = 2 if self.motion_magnitude else 1
        return stats * sum(self.level_motion_channels[-self.bank_levels:]) * self.motion_pool**2

    @property
    def total_stride(self) -> int:
        """Downsampling of the coarsest level; inputs are padded to a multiple of it."""
        return 2 ** (len(self.conv_channels) + len(self.attn_channels) - 1)


#: EMA-VFI's base model (F=32, depths 4/4 at the attention levels, 7x7 windows); its last two levels
#: carry 8F + 16F = 768 motion channels, pooled 2x2 -> the paper's 3072-d motion vector; with the
#: per-cell magnitude (``motion_magnitude``, see MAFE.motion_vector) 6144-d.
PAPER_MODEL: dict[str, Any] = {
    "conv_channels": [32, 64, 128], "attn_channels": [256, 512], "attn_depths": [4, 4], "attn_heads": [8, 16],
    "motion_channels": [64, 128], "window_size": 7, "mlp_ratio": 4.0, "decoder_channels": 128,
    "refine_channels": 32, "reid_hidden": 256, "motion_pool": 2, "bank_levels": 2, "motion_dim": 6144,
}


class MafeConfig(Section):
    """Training of MAFE (frame interpolation + ReID + flow losses), its evaluation and the motion bank."""

    model: MafeModelConfig = MafeModelConfig()
    # optimisation
    epochs: int = Field(28, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="cosine floor as a fraction of lr")
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    min_pair_gap: int = Field(2, ge=2, description="ED/ES pairs closer than this (frames) have no distinct middle frame")
    # loss
    l1_weight: float = Field(1.0, ge=0)
    ssim_weight: float = Field(0.5, ge=0, description="weight of the structural term 1 - SSIM")
    reid_weight: float = Field(0.1, ge=0, description="0 disables the ReID loss (ablation)")
    flow_weight: float = Field(0.5, ge=0, description="0 disables the pseudo-flow loss (ablation); flow L1 in pixels")
    # augmentation (applied consistently to frames, flows and targets)
    flip: bool = True
    rotate: bool = True
    swap: bool = True
    # checkpoints and evaluation
    checkpoint_every: int = Field(25, ge=1, description="optimizer steps between resumable checkpoints")
    eval_batch_size: int = Field(16, ge=1)
    probe_folds: int = Field(5, ge=2)
    probe_alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    # motion bank: the trajectory (ED, ES), (ED, ED + t) for these t, one motion vector per pair, concatenated
    bank_times_s: tuple[float, ...] = Field(
        (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0),
        description="seconds after ED of the frames paired with ED besides ES; () = the (ED, ES) pair only")

    @model_validator(mode="after")
    def _increasing_times(self) -> "MafeConfig":
        t = self.bank_times_s
        if any(x <= 0 for x in t) or any(b <= a for a, b in zip(t, t[1:])):
            raise ValueError(f"bank_times_s must be positive and increasing, got {list(t)}")
        return self

    @property
    def bank_dim(self) -> int:
        """Size of a motion-bank vector: one motion vector per (ED, partner) pair."""
        return (1 + len(self.bank_times_s)) * self.model.motion_dim
