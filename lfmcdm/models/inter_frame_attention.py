"""Inter-frame attention (EMA-VFI, Zhang et al., CVPR 2023): one attention map, two features.

Each token of one frame attends to a window of the *other* frame. The same attention map

* aggregates the other frame's values -> an **appearance** feature (what the token looks like
  given its correspondence), and
* takes the attention-weighted sum of the neighbours' coordinate offsets (embedded linearly, per
  head) -> a **motion** feature: a soft, learned displacement estimate, i.e. motion read straight
  off the attention map rather than from a separate flow network.

As in EMA-VFI the map is partitioned into ``window x window`` windows, shifted by half a window
in every other block (Swin), so a correspondence cut by one block's window border is seen by the
next. Maps are channel-first ``(N, C, H, W)``; a batch holds frame A of every pair, then frame B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channel-first map (per token, as in a transformer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def swap_frames(x: torch.Tensor) -> torch.Tensor:
    """``[A; B] -> [B; A]`` along the batch: every token's partner frame."""
    half = x.shape[0] // 2
    return torch.cat([x[half:], x[:half]])


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N * nW, window**2, C)`` non-overlapping windows (H, W multiples of window)."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // window, window, w // window, window)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, n: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    c = windows.shape[-1]
    x = windows.view(n, h // window, w // window, window, window, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)


def window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor | None:
    """Which keys each query may see, ``(nW, T, T)`` bool, for a padded (and cyclically shifted) map.

    Tokens of the zero padding, and tokens that the cyclic shift wrapped to the far border, form
    their own regions: attending across regions would relate pixels that are not neighbours.
    """
    hp, wp = height + (-height) % window, width + (-width) % window
    if hp == height and wp == width and not shift:
        return None
    region = torch.zeros(1, 1, hp, wp, device=device)
    region[..., height:, :] += 1
    region[..., :, width:] += 2
    if shift:
        region = torch.roll(region, shifts=(-shift, -shift), dims=(2, 3))
        for i, rows in enumerate((slice(0, -window), slice(-window, -shift), slice(-shift, None))):
            for j, cols in enumerate((slice(0, -window), slice(-window, -shift), slice(-shift, None))):
                region[..., rows, cols] += 4 * (3 * i + j)
    ids = window_partition(region, window).squeeze(-1)  # (nW, T)
    return ids.unsqueeze(1) == ids.unsqueeze(2)


class InterFrameAttention(nn.Module):
    """Cross attention from each window of a frame to the same window of its partner frame.

    Returns (appearance, motion) token features. The motion feature is EMA-VFI's
    ``attn @ embed(coords) - embed(own coords)``: with a linear coordinate embedding this is the
    embedded *expected displacement* under the attention map, one per head. It is computed in the
    same fused attention call by appending the coordinate embedding to the values.
    """

    def __init__(self, dim: int, motion_dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window, self.motion_dim = heads, window, motion_dim
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.cor_embed = nn.Linear(2, motion_dim, bias=False)  # window-local (x, y) in tokens -> per-head embedding
        self.motion_proj = nn.Linear(motion_dim, motion_dim)
        ys, xs = torch.meshgrid(torch.arange(window * 1.0), torch.arange(window * 1.0), indexing="ij")
        self.register_buffer("coords", torch.stack([xs.flatten(), ys.flatten()], dim=-1), persistent=False)
        self._init_as_correlation(dim)

    def _init_as_correlation(self, dim: int) -> None:
        """Queries and keys start as the tokens themselves: the first attention maps are feature correlations
        (a cost volume), so motion features carry displacement from step one instead of waiting for random
        projections to discover matching, which can stall a short training run at the average-frame plateau."""
        with torch.no_grad():
            self.q.weight.copy_(torch.eye(dim))
            self.q.bias.zero_()
            self.kv.weight[:dim].copy_(torch.eye(dim))
            self.kv.bias[:dim].zero_()

    def forward(self, x: torch.Tensor, other: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``, ``other``: (Nw, T, C) windows; ``mask``: (Nw, 1, T, T) bool or None."""
        nw, t, c = x.shape
        heads = self.heads
        q = self.q(x).view(nw, t, heads, -1).transpose(1, 2)
        k, v = self.kv(other).view(nw, t, 2, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        cor = self.cor_embed(self.coords).view(t, heads, -1).transpose(0, 1)  # (H, T, dm)
        values = torch.cat([v, cor.unsqueeze(0).expand(nw, -1, -1, -1)], dim=-1)
        out = F.scaled_dot_product_attention(q, k, values, attn_mask=mask)  # (Nw, H, T, d + dm)
        d = c // heads
        appearance = out[..., :d].transpose(1, 2).reshape(nw, t, c)
        motion = (out[..., d:] - cor).transpose(1, 2).reshape(nw, t, self.motion_dim)
        return self.proj(appearance), self.motion_proj(motion)


class ConvMlp(nn.Module):
    """Transformer MLP with a depthwise 3x3 conv (EMA-VFI's Mlp): adds locality cheaply."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(dim * ratio))
        self.net = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
                                 nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MotionFormerBlock(nn.Module):
    """Pre-norm block: windowed inter-frame attention (appearance residual + motion output), then the MLP.

    Odd blocks shift the windows by half a window (Swin / EMA-VFI) so motion is not cut at window borders.
    """

    def __init__(self, dim: int, motion_dim: int, heads: int, window: int, mlp_ratio: float, shift: bool) -> None:
        super().__init__()
        self.window, self.shift = window, window // 2 if shift else 0
        self.norm1 = LayerNorm2d(dim)
        self.attn = InterFrameAttention(dim, motion_dim, heads, window)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = ConvMlp(dim, mlp_ratio)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, (-x.shape[-1]) % self.window, 0, (-x.shape[-2]) % self.window))
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(2, 3))
        return window_partition(x, self.window)

    def _unwindow(self, windows: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
        hp, wp = h + (-h) % self.window, w + (-w) % self.window
        x = window_reverse(windows, self.window, n, hp, wp)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(2, 3))
        return x[..., :h, :w]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        windows = self._windows(self.norm1(x))
        mask = window_mask(h, w, self.window, self.shift, x.device)
        if mask is not None:
            mask = mask.unsqueeze(0).expand(n, -1, -1, -1).reshape(-1, 1, *mask.shape[-2:])
        appearance, motion = self.attn(windows, swap_frames(windows), mask)
        x = x + self._unwindow(appearance, n, h, w)
        return x + self.mlp(self.norm2(x)), self._unwindow(motion, n, h, w)


class AttentionLevel(nn.Module):
    """Stride-2 patch embedding then ``depth`` blocks; motion = the blocks' motion features concatenated."""

    def __init__(self, in_dim: int, dim: int, motion_dim: int, depth: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(in_dim, dim, 3, stride=2, padding=1), LayerNorm2d(dim))
        self.blocks = nn.ModuleList(MotionFormerBlock(dim, motion_dim, heads, window, mlp_ratio, shift=j % 2 == 1)
                                    for j in range(depth))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(x)
        motions = []
        for block in self.blocks:
            x, motion = block(x)
            motions.append(motion)
        return x, torch.cat(motions, dim=1)
