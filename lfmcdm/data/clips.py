"""Turning one source video into one normalised clip (runs inside ingest's worker processes).

Kept free of heavy imports (no pandas, GX, MLflow) so spawned workers start fast.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfmcdm.atomic import save_npy
from lfmcdm.data.video_io import VideoDecodeError, read_gray, resample_indices
from lfmcdm.pseudo.phase import estimate_phase
from lfmcdm.settings.pseudo import PhaseConfig

TRUNCATED_SHARE = 0.9  # fewer decoded frames than this share of NumberOfFrames = truncated file


@dataclass(frozen=True)
class ClipJob:
    """Everything a worker needs to ingest one video (picklable)."""

    file_name: str
    video_path: str
    clip_path: str
    source_fps: float
    expected_frames: int
    target_fps: float
    frame_size: int
    min_frames: int
    phase: PhaseConfig = PhaseConfig()  # label-free ED/ES knobs (params pseudo.phase)


@dataclass(frozen=True)
class ClipResult:
    file_name: str
    reason: str | None = None  # None = kept
    n_frames: int = 0
    sha256: str = ""
    ed_frame: int | None = None  # label-free phase, clip indices (None when flagged)
    es_frame: int | None = None
    phase_status: str = "ok"  # 'ok' or why no phase could be estimated (the clip is still kept)
    ed_frames: tuple[int, ...] = ()  # every beat's ED and ES (clip indices), empty when flagged
    es_frames: tuple[int, ...] = ()
    phase_confidence: float | None = None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_clip(job: ClipJob) -> tuple[np.ndarray | None, str | None]:
    """Decode, check and resample one video; returns the clip or the reason it is rejected."""
    path = Path(job.video_path)
    if not path.exists():
        return None, f"video file missing: {path.name}"
    try:
        frames, _ = read_gray(path)
    except VideoDecodeError as err:
        return None, f"corrupt video: {err}"
    if len(frames) < TRUNCATED_SHARE * job.expected_frames:
        return None, f"truncated video: decoded {len(frames)} of {job.expected_frames} frames"
    height, width = frames.shape[1:]
    if (height, width) != (job.frame_size, job.frame_size):
        return None, f"resolution {height}x{width}, expected {job.frame_size}x{job.frame_size}"
    clip = frames[resample_indices(len(frames), job.source_fps, job.target_fps)]
    if len(clip) < job.min_frames:
        return None, f"too few frames: {len(clip)} at {job.target_fps:g} fps (minimum {job.min_frames})"
    return clip, None


def ingest_one(job: ClipJob) -> ClipResult:
    """Worker entry point: write the clip atomically; report frame count, checksum and label-free phase.

    The phase is estimated here, where the clip is already in memory, instead of re-reading every
    clip in a later stage.
    """
    clip, reason = load_clip(job)
    if clip is None:
        return ClipResult(job.file_name, reason=reason)
    save_npy(job.clip_path, clip)
    phase = estimate_phase(clip, job.target_fps, job.phase)
    return ClipResult(job.file_name, n_frames=len(clip), sha256=sha256_file(job.video_path),
                      ed_frame=phase.ed, es_frame=phase.es, phase_status=phase.status,
                      ed_frames=tuple(phase.eds) if phase.ok else (), es_frames=tuple(phase.ess) if phase.ok else (),
                      phase_confidence=phase.confidence)
