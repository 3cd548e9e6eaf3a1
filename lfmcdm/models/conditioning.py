"""The motion conditioner: motion vector -> cross-attention context, with a learned null token.

The UNet cross-attends to ``motion_tokens`` tokens projected from the video's motion vector
(standardised with TRAIN statistics kept as buffers, so the raw MAFE scale does not matter).
Replacing the context by the learned null token with probability ``cond_dropout`` during
training is what makes classifier-free guidance possible at sampling time.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

NULL_INIT_STD = 0.02  # small random init of the null token (like a fresh embedding row)
STD_FLOOR = 1e-6  # constant motion dimensions are centred, not blown up


class MotionConditioner(ModelMixin, ConfigMixin):
    """``(B, motion_dim)`` motion vectors -> ``(B, tokens, cross_attention_dim)`` context."""

    @register_to_config
    def __init__(self, motion_dim: int, cross_attention_dim: int, tokens: int = 1, hidden: int = 128):
        super().__init__()
        self.register_buffer("motion_mean", torch.zeros(motion_dim))
        self.register_buffer("motion_std", torch.ones(motion_dim))
        self.proj = nn.Sequential(nn.Linear(motion_dim, hidden), nn.SiLU(),
                                  nn.Linear(hidden, tokens * cross_attention_dim))
        self.norm = nn.LayerNorm(cross_attention_dim)
        self.null_tokens = nn.Parameter(torch.randn(tokens, cross_attention_dim) * NULL_INIT_STD)

    @torch.no_grad()
    def set_motion_stats(self, motions: torch.Tensor) -> None:
        """Standardise inputs with the mean/std of the TRAIN motion vectors ``(N, motion_dim)``."""
        self.motion_mean.copy_(motions.mean(0))
        self.motion_std.copy_(motions.std(0, unbiased=False).clamp_min(STD_FLOOR) if len(motions) > 1
                              else torch.ones_like(self.motion_std))

    def null(self, batch: int) -> torch.Tensor:
        """The unconditional context ``(batch, tokens, dim)``."""
        return self.null_tokens.unsqueeze(0).expand(batch, -1, -1)

    def forward(self, motion: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Context for ``motion``; rows where ``drop`` is True get the null token instead."""
        cfg = self.config
        z = (motion.to(self.motion_mean.dtype) - self.motion_mean) / self.motion_std
        ctx = self.norm(self.proj(z.to(self.null_tokens.dtype)).view(len(motion), cfg.tokens, cfg.cross_attention_dim))
        if drop is None:
            return ctx
        return torch.where(drop.view(-1, 1, 1).to(ctx.device), self.null(len(motion)).to(ctx.dtype), ctx)


def dropout_mask(batch: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Which rows lose their motion condition: Bernoulli(p) per row (p=1: all, p=0: none)."""
    return torch.rand(batch, generator=generator) < p
