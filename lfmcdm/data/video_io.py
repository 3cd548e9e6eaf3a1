"""Video reading and writing with PyAV (EchoNet stores grayscale echo as 3-channel AVI)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; the message says why."""


def read_gray(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode a whole video to grayscale uint8 ``(T, H, W)`` and return it with its frame rate.

    Decoding straight to ``gray`` lets FFmpeg's swscale do the colour conversion in C, which is
    both faster and lighter than decoding RGB and averaging in NumPy.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            frames = [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(f"{type(err).__name__}: {err}") from err
    if not frames:
        raise VideoDecodeError("no decodable frames")
    return np.stack(frames), fps


def write_gray(path: str | Path, frames: np.ndarray, fps: float, codec: str = "mjpeg", quality: int = 3) -> None:
    """Write grayscale uint8 ``(T, H, W)`` frames as an EchoNet-style 3-channel AVI, atomically.

    MJPG in AVI is what EchoNet-Dynamic ships; ``quality`` is the MJPEG qscale (lower is better).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    _, height, width = frames.shape
    try:
        with av.open(str(tmp), mode="w", format="avi") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = width, height
            if codec == "mjpeg":
                stream.pix_fmt = "yuvj420p"
                stream.codec_context.qmin = stream.codec_context.qmax = quality
            else:
                stream.pix_fmt = "yuv420p"
            for gray in frames:
                rgb = np.repeat(gray[:, :, None], 3, axis=2)
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def resample_indices(n_frames: int, source_fps: float, target_fps: float) -> np.ndarray:
    """Frame indices that resample a clip from ``source_fps`` to ``target_fps`` (nearest frame in time).

    The output covers the same duration: ``round(n * target / source)`` frames.
    """
    if abs(source_fps - target_fps) < 1e-6:
        return np.arange(n_frames)
    n_out = max(1, int(round(n_frames * target_fps / source_fps)))
    times = np.arange(n_out) / target_fps
    return np.clip(np.round(times * source_fps).astype(np.int64), 0, n_frames - 1)
