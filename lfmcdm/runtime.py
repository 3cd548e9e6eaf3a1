"""Device, threads and seeding: the few lines every training stage needs, written once."""

from __future__ import annotations

import ctypes
import os
import random
import sys

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


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MALLOPT_MAX = 2**31 - 1  # mallopt takes an int


def configure_allocator(cache_mb: int) -> bool:
    """Let glibc keep freed memory for reuse: allocations up to ``cache_mb`` come from the heap, not mmap.

    Why: a training step allocates and frees the same large activation tensors over and over. With glibc's
    defaults many are served by fresh mmap'd pages that the kernel must fault in and zero every step: a
    60-step MCDM run took 0.89-1.2 M page faults and ran at 1.50-1.63 steps/s; with freed memory kept
    (this), 0.34 M faults and 1.75-1.86 steps/s, the same losses to the last digit (docs/benchmarks.md,
    "Warm start"). The price: a process keeps its peak heap until it exits. ``0`` keeps glibc's defaults;
    no-op where the C library has no ``mallopt`` (musl, macOS). Returns whether it applied.
    """
    if cache_mb <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    size = min(cache_mb << 20, MALLOPT_MAX)
    settings = ((M_MMAP_THRESHOLD, size), (M_TRIM_THRESHOLD, min(4 * size, MALLOPT_MAX)), (M_TOP_PAD, size // 2))
    return all(mallopt(param, value) == 1 for param, value in settings)
