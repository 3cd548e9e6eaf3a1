"""The project's own encoders, applied to videos held in memory (synthetic ones have no clip file).

Each adapter reuses the code that produced the real-data features, so real and synthetic
features are computed the same way:

* ReID frame embeddings: :func:`lfmcdm.models.reid.embed_frames` with ``models/reid/``
  (the same encoder wrote ``data/interim/reid/``);
* label-free ED/ES: :func:`lfmcdm.data.phase.estimate_phase` (what pseudo_labels stores in phase.parquet);
* MAFE motion vectors: the motion bank's encoding (``lfmcdm.models.motion_vectors``: the
  trajectory pairs from the label-free ED at ``mafe.bank_times_s``, encoded and concatenated);
* cavity area: :func:`lfmcdm.eval.cavity.cavity_areas` (the diffusion stage's motion_area_r measurement).

A missing model folder yields ``None`` so the stage can report the dependent metrics as null.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lfmcdm.layout import Layout

CONFIG_FILE = "config.json"


def load_reid_model(layout: Layout, device: torch.device | str = "cpu"):
    """The ReID encoder in ``models/reid/``, or None when it has not been trained."""
    from lfmcdm.models.reid import load_reid

    directory = layout.model_dir("reid")
    return load_reid(directory, device) if (directory / CONFIG_FILE).exists() else None


def load_mafe_model(layout: Layout, device: torch.device | str = "cpu"):
    """The MAFE in ``models/mafe/``, or None when it has not been trained."""
    from lfmcdm.models.mafe import load_mafe

    directory = layout.model_dir("mafe")
    return load_mafe(directory, device) if (directory / CONFIG_FILE).exists() else None


def reid_frame_embeddings(model, video: np.ndarray, batch_size: int) -> np.ndarray:
    """L2-normalised ReID embedding of every frame ``(T, D)`` float32."""
    from lfmcdm.models.reid import embed_frames

    return embed_frames(model, np.asarray(video, np.uint8), batch_size=batch_size)


def label_free_phase(video: np.ndarray, fps: float, cfg) -> tuple[int, int] | None:
    """(ED, ES) frame indices of ``video`` from the same estimator pseudo_labels uses, or None when flagged."""
    from lfmcdm.data.phase import estimate_phase

    estimate = estimate_phase(np.asarray(video), fps, cfg)
    return (int(estimate.ed), int(estimate.es)) if estimate.ok else None


def motion_pairs(video: np.ndarray, phase: tuple[int, int], fps: float, times_s) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (ED, partner) frame pairs of a video, as the motion bank takes them from a real clip."""
    from lfmcdm.models.motion_vectors import trajectory_pairs

    return trajectory_pairs(video, phase[0], phase[1], fps, times_s)


def motion_vectors(model, videos: list[list[tuple[np.ndarray, np.ndarray]]], batch_size: int) -> np.ndarray:
    """Motion-bank vector ``(N, bank_dim)`` of each video's :func:`motion_pairs`, encoded as the bank is."""
    from lfmcdm.models.motion_vectors import motion_trajectories

    return motion_trajectories(model, videos, len(videos), batch_size, next(model.parameters()).device)


def cavity_measure(cfg) -> Callable[[np.ndarray], np.ndarray]:
    """A function clip ``(T, H, W)`` uint8 -> cavity area per frame, with the given CavityConfig.

    The cavity measurement belongs to the diffusion stage (metric motion_area_r); evaluation uses
    the very same function and settings (``diffusion.motion_eval.cavity``).
    """
    from lfmcdm.eval.cavity import cavity_areas

    return lambda clip: np.asarray(cavity_areas(np.asarray(clip), cfg), dtype=np.float64)
