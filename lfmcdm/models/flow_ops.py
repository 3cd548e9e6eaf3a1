"""Dense-flow helpers shared by MAFE and its training: backward warping and flow resizing.

Convention (the pipeline's flow contract): a flow ``A->B`` moves pixel ``p`` of frame A to
``p + flow(p)`` in frame B, channels ``(dx, dy)`` in pixels. Hence frame A is reconstructed from
frame B by *backward* warping: ``A(p) ~ B(p + flow_{A->B}(p))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(1, 2, H, W)`` pixel coordinates ``(x, y)``."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (N, C, H, W) at ``p + flow(p)``; flow (N, 2, H, W) in pixels of ``image``."""
    _, _, h, w = image.shape
    coords = pixel_grid(h, w, image.device, image.dtype) + flow
    gx = 2.0 * coords[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * coords[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a flow field to ``size`` (H, W), rescaling the vectors to the new pixel units."""
    h, w = flow.shape[-2:]
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return out * scale
