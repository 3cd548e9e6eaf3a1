"""Privacy filter: a synthetic video must not be closer to a training patient than real patients are to each other.

Identity is measured with the self-supervised ReID encoder (cosine similarity of mean frame
embeddings). The threshold is a percentile of the real-vs-real nearest-neighbour similarity between
*held-out* real patients (VAL/TEST) and the training patients: a synthetic video closer to its
nearest training video than that is treated as a copy of a training patient and kept out of the
cohort's FileList (still listed in the manifest).

Why held-out and not training-vs-training: the ReID encoder was trained to push the training
identities apart, so training-vs-training similarities are artificially low; a new, unseen real
patient scores higher against the training set, and that is the honest reference for "a different
person". (Measured on the phantom: train-vs-train 95th percentile 0.59, held-out mean 0.76.)
"""

from __future__ import annotations

import numpy as np


def video_embedding(frame_embeddings: np.ndarray) -> np.ndarray:
    """Mean of per-frame embeddings, L2-normalised: one identity vector per video."""
    mean = np.asarray(frame_embeddings, dtype=np.float32).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-8)


def nearest_similarity(queries: np.ndarray, gallery: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Cosine similarity of each query to its nearest gallery vector (both L2-normalised)."""
    sims = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    return sims.max(axis=1)


def real_threshold(train_embeddings: np.ndarray, heldout_embeddings: np.ndarray, percentile: float) -> float:
    """The ``percentile`` of held-out-real-to-nearest-training similarity.

    Without held-out videos, falls back to training-vs-training (leave-one-out), which is stricter.
    """
    if len(heldout_embeddings):
        return float(np.percentile(nearest_similarity(heldout_embeddings, train_embeddings), percentile))
    if len(train_embeddings) < 2:
        raise ValueError("the privacy threshold needs held-out videos or at least two training videos")
    return float(np.percentile(nearest_similarity(train_embeddings, train_embeddings, exclude_self=True), percentile))
