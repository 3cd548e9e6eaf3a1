"""Privacy filter: a synthetic video must not be closer to a training patient than real patients are to each other.

Identity is measured with the self-supervised ReID encoder (cosine similarity of mean frame
embeddings). The threshold is a percentile of the real-vs-real nearest-neighbour similarity between
*held-out* real patients (``synthesis.privacy_heldout_splits``, VAL/TEST by default) and the training patients: a synthetic video closer to its
nearest training video than that is treated as a copy of a training patient and kept out of the
cohort's FileList (still listed in the manifest).

Why held-out and not training-vs-training: the ReID encoder was trained to push the training
identities apart, so training-vs-training similarities are artificially low; a new, unseen real
patient scores higher against the training set, and that is the honest reference for "a different
person". (Measured on the phantom: train-vs-train 95th percentile 0.59, held-out mean 0.76.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lfmcdm.data.tables import load_array, read_videos

if TYPE_CHECKING:
    from lfmcdm.layout import Layout
    from lfmcdm.settings.synthesis import SynthesisConfig

PROTECTED_SPLITS = ("TRAIN",)  # the people the filter protects: the generator's training patients


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


def identities(layout: Layout, splits: tuple[str, ...]) -> np.ndarray:
    """One ReID identity vector per real video of ``splits`` (``(N, D)``, possibly empty)."""
    vectors = [video_embedding(load_array(layout.reid, v["file_name"])) for v in read_videos(layout, splits=splits)]
    return np.stack(vectors) if vectors else np.zeros((0, 1), np.float32)


@dataclass(frozen=True)
class PrivacyFilter:
    """The one privacy rule, used by synthesis (ship or not), the registered generator and evaluation.

    Built from the protected (TRAIN) identities, the held-out splits and the percentile in one place,
    so the threshold a cohort was filtered with and the one its evaluation reports cannot disagree.
    """

    train_embeddings: np.ndarray  # (N, D) identity vectors of the protected patients
    threshold: float

    @classmethod
    def from_identities(cls, train: np.ndarray, heldout: np.ndarray, percentile: float) -> PrivacyFilter:
        """Threshold = ``percentile`` of held-out-real -> nearest-training similarity (see module doc)."""
        return cls(train, real_threshold(train, heldout, percentile))

    @classmethod
    def from_layout(cls, layout: Layout, cfg: SynthesisConfig) -> PrivacyFilter:
        """The filter of the real data under ``layout`` with the ``synthesis`` section's settings."""
        train = identities(layout, PROTECTED_SPLITS)
        return cls.from_identities(train, identities(layout, tuple(cfg.privacy_heldout_splits)), cfg.privacy_percentile)

    def scores(self, identity_vectors: np.ndarray) -> np.ndarray:
        """Nearest-protected-patient similarity of each identity vector ``(N, D)``."""
        return nearest_similarity(identity_vectors, self.train_embeddings)

    def score(self, frame_embeddings: np.ndarray) -> float:
        """The privacy score of one video from its per-frame ReID embeddings ``(T, D)``."""
        return float(self.scores(video_embedding(frame_embeddings)[None])[0])

    def passes(self, score: float) -> bool:
        """The verdict: no closer to a protected patient than the held-out percentile of real patients."""
        return score <= self.threshold

    def save(self, path: str | Path) -> None:
        """The generator bundle's ``privacy.npz`` (what :meth:`load` reads back)."""
        np.savez(path, train_embeddings=np.asarray(self.train_embeddings, np.float32), threshold=np.float64(self.threshold))

    @classmethod
    def load(cls, path: str | Path) -> PrivacyFilter:
        with np.load(path) as data:
            return cls(data["train_embeddings"], float(data["threshold"]))
