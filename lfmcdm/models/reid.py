"""A small CNN that maps an echo frame to an L2-normalised identity embedding (pseudo appearance).

Kept tiny on purpose: it must embed every frame of every video on a CPU, and it is trained
self-supervised in seconds on the demo. The input is raw uint8 gray frames of any size; scaling
and resizing happen inside :meth:`ReidEncoder.forward`, so callers never pre-process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from lfmcdm.atomic import atomic_dir
from lfmcdm.settings.pseudo import ReidConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
GROUPS = 4  # GroupNorm groups: batch-size independent, so embeddings do not depend on the batch


@dataclass(frozen=True)
class ReidModelConfig:
    """What is needed to rebuild the network (saved as config.json beside the weights)."""

    input_size: int = 64
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    embed_dim: int = 64
    pooled: int = 2  # the last feature map is average-pooled to pooled x pooled (keeps coarse layout)
    architecture: str = "lfmcdm-reid-cnn"


class ReidEncoder(nn.Module):
    """Strided conv blocks -> small spatial pooling -> linear -> L2 normalisation."""

    def __init__(self, config: ReidModelConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in config.channels:
            groups = min(GROUPS, c_out)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU(),
                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(config.pooled)
        self.head = nn.Linear(c_in * config.pooled**2, config.embed_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` uint8 or float in [0, 255], shape ``(N, H, W)`` -> unit vectors ``(N, D)``."""
        x = frames.float().unsqueeze(1) / 127.5 - 1.0
        size = self.config.input_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="area")
        z = self.head(self.pool(self.features(x)).flatten(1))
        return F.normalize(z, dim=1)


def save_encoder(model: ReidEncoder, directory: str | Path, extra: dict | None = None) -> None:
    """Write ``model.safetensors`` + ``config.json`` (plus ``extra`` metadata) atomically."""
    with atomic_dir(directory) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps({**asdict(model.config), **(extra or {})}, indent=2))


def load_encoder(directory: str | Path, device: str | torch.device = "cpu") -> ReidEncoder:
    """Rebuild the encoder from a folder written by :func:`save_encoder` (eval mode)."""
    directory = Path(directory)
    raw = json.loads((directory / CONFIG_FILE).read_text())
    config = ReidModelConfig(**{k: raw[k] for k in ReidModelConfig.__dataclass_fields__ if k in raw})
    model = ReidEncoder(config)
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    return model.to(device).eval()


def build_encoder(cfg: ReidConfig, seed: int) -> ReidEncoder:
    """A freshly initialised encoder (the same weights for the same seed)."""
    torch.manual_seed(seed)
    return ReidEncoder(ReidModelConfig(input_size=cfg.input_size, channels=list(cfg.channels),
                                       embed_dim=cfg.embed_dim, pooled=cfg.pooled))


def load_reid(directory: str | Path, device: str | torch.device = "cpu") -> ReidEncoder:
    """The encoder saved in ``directory`` (``models/reid/`` or an MLflow download), in eval mode."""
    return load_encoder(directory, device)


@torch.no_grad()
def embed_frames(model: ReidEncoder, frames_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """L2-normalised embeddings ``(N, D)`` float32 of uint8 frames ``(N, H, W)``."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(torch.from_numpy(np.array(frames_uint8[i : i + batch_size])).to(device)).cpu()
           for i in range(0, len(frames_uint8), batch_size)]
    if not out:
        return np.zeros((0, model.config.embed_dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32)
