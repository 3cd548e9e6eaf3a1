"""Device, threads and seeding: the few lines every training stage needs, written once."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from lfmcdm.config import TrainConfig


def resolve_device(cfg: TrainConfig) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if cfg.device != "auto":
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch; on CPU the same seed gives bit-identical results."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


def configure_threads(cfg: TrainConfig) -> None:
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
