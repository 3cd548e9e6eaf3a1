"""Turning one source video into one normalised clip (runs inside ingest's worker processes).

Kept free of heavy imports (no pandas, GX, MLflow) so spawned workers start fast.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfmcdm.atomic import save_npy
from lfmcdm.data.video_io import VideoDecodeError, VideoHeader, VideoRefused, read_gray, resample_indices, sniff_image

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
    dataset_root: str  # symlinks may not lead outside it
    max_bytes: int  # data.max_video_mb, in bytes
    max_frames: int  # data.max_frames
    fps_tolerance: float | None  # data.fps_tolerance (relative); None = not compared


@dataclass(frozen=True)
class ClipResult:
    file_name: str
    reason: str | None = None  # None = kept
    n_frames: int = 0
    sha256: str = ""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket" if stat.S_ISSOCK(mode) else "a device or special file"


def file_problem(job: ClipJob) -> str | None:
    """Why the video file must not be opened, from ``lstat``/``stat`` alone (a FIFO is never opened)."""
    path = Path(job.video_path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return f"video file missing: {path.name}"
    except OSError as err:
        return f"video file unusable: {err.strerror or err}"
    if stat.S_ISLNK(info.st_mode):
        target, root = os.path.realpath(path), os.path.realpath(job.dataset_root)
        if os.path.commonpath([target, root]) != root:
            return f"symlink leaves the dataset folder: {path.name} -> {target}"
        try:
            info = os.stat(path)
        except OSError as err:
            return f"broken symlink: {path.name} ({err.strerror or err})"
    if not stat.S_ISREG(info.st_mode):
        return f"video file is {_kind(info.st_mode)}, not a regular file"
    if info.st_size == 0:
        return "video file is empty"
    if info.st_size > job.max_bytes:
        return f"video file is {info.st_size} bytes, more than data.max_video_mb allows ({job.max_bytes})"
    return None


def _head(path: str, size: int = 16) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat: still never block on it
            raise VideoDecodeError("not a regular file")
        return os.read(fd, size)
    finally:
        os.close(fd)


def header_problem(job: ClipJob, header: VideoHeader) -> str | None:
    """Checks on the container header, before decoding: resolution, frame count, frame rate."""
    if header.width and header.height and (header.height, header.width) != (job.frame_size, job.frame_size):
        return f"resolution {header.height}x{header.width}, expected {job.frame_size}x{job.frame_size}"
    if header.frames > job.max_frames:
        return f"container holds {header.frames} frames, more than data.max_frames ({job.max_frames})"
    tol = job.fps_tolerance
    if tol is not None and header.fps > 0 and abs(header.fps - job.source_fps) > tol * job.source_fps:
        return f"video frame rate {header.fps:g} fps differs from FileList FPS {job.source_fps:g}"
    return None


def load_clip(job: ClipJob) -> tuple[np.ndarray | None, str | None]:
    """Check, decode and resample one video; returns the clip or the reason it is rejected."""
    problem = file_problem(job)
    if problem:
        return None, problem
    if job.expected_frames > job.max_frames:
        return None, f"NumberOfFrames {job.expected_frames} is more than data.max_frames ({job.max_frames})"
    try:
        image = sniff_image(_head(job.video_path))
        if image:
            return None, f"not a video: a {image} image"
        frames, _ = read_gray(job.video_path, job.max_frames, lambda h: header_problem(job, h))
    except VideoRefused as err:
        return None, str(err)
    except VideoDecodeError as err:
        return None, f"corrupt video: {err}"
    except OSError as err:
        return None, f"video file unreadable: {err.strerror or err}"
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
    """Worker entry point: write the clip atomically; report its frame count and the source's checksum.

    The label-free phase is not estimated here but by stage pseudo_labels (lfmcdm/pseudo/phase_labels.py),
    so ingest does no more than EchoNet's own loader does and keeps pace with the decoder.
    """
    try:
        clip, reason = load_clip(job)
    except Exception as err:  # noqa: BLE001 - one unreadable video must never cost the others
        clip, reason = None, f"unreadable video: {type(err).__name__}: {err}"
    if clip is None:
        return ClipResult(job.file_name, reason=reason)
    save_npy(job.clip_path, clip)
    return ClipResult(job.file_name, n_frames=len(clip), sha256=sha256_file(job.video_path))
