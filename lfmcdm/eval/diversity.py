"""Diversity of a set of videos: how far apart their embeddings are, on average.

A generator that collapses to a few looks (or copies one patient) has a small mean pairwise
distance; the same number on real videos says what "as diverse as real data" means.
"""

from __future__ import annotations

import numpy as np


def mean_pairwise_distance(embeddings: np.ndarray, metric: str = "cosine") -> float | None:
    """Mean distance over all unordered pairs of ``(N, D)`` vectors (None with fewer than 2).

    ``cosine``: 1 - cosine similarity (vectors are normalised here); ``euclidean``: L2 distance.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        return None
    if metric == "cosine":
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        dist = 1.0 - unit @ unit.T
    elif metric == "euclidean":
        sq = (x * x).sum(axis=1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    else:
        raise ValueError(f"unknown metric {metric!r} (cosine | euclidean)")
    upper = np.triu_indices(len(x), k=1)
    return float(dist[upper].mean())
