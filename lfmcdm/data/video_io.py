"""Video reading and writing with PyAV (EchoNet stores grayscale echo as 3-channel AVI)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; the message says why."""


class VideoRefused(VideoDecodeError):
    """A readable file refused on purpose (not a video, header fails a check, too many frames)."""


#: Leading bytes of image formats that FFmpeg would happily "decode" as a one-frame video.
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
                    b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


@dataclass(frozen=True)
class VideoHeader:
    """What the container says before any frame is decoded (0 = not stated)."""

    width: int
    height: int
    frames: int
    fps: float
    format: str


def sniff_image(head: bytes) -> str | None:
    """The image format ``head`` (a file's first bytes) starts with, if it is a still image."""
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return None
    return next((kind for magic, kind in IMAGE_SIGNATURES.items() if head.startswith(magic)), None)


def _header(container, stream) -> VideoHeader:
    ctx = stream.codec_context
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    return VideoHeader(int(ctx.width or 0), int(ctx.height or 0), int(stream.frames or 0), fps, container.format.name)


#: Pixel formats whose first plane is full-range luma: exactly what swscale's ``gray`` conversion returns
#: (tests/test_ingest.py checks it), so it is copied instead of converted. Limited-range YUV (``yuv420p``)
#: is stretched to full range by the conversion and keeps it.
FULL_RANGE_LUMA = frozenset({"gray", "yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"})


def _gray(frame) -> np.ndarray:
    """One decoded frame as gray uint8 ``(H, W)``."""
    if frame.format.name not in FULL_RANGE_LUMA:
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : frame.width]  # a view: the plane keeps its frame alive until np.stack copies it


def read_gray(path: str | Path, max_frames: int | None = None,
              check: Callable[[VideoHeader], str | None] | None = None) -> tuple[np.ndarray, float]:
    """Decode a video to grayscale uint8 ``(T, H, W)`` and return it with its frame rate.

    ``check`` sees the container header before anything is decoded and may refuse the file (its
    message becomes the :class:`VideoDecodeError`), so a 1280x720 or 10^6-frame file costs a header
    read, not its decoded size in memory; decoding also stops past ``max_frames`` frames, whatever
    the header claimed.

    Speed (docs/benchmarks.md, "Scale"): echo is gray, so the decoder skips the chroma planes
    (``AV_CODEC_FLAG_GRAY``), and a full-range luma plane *is* the gray image (:func:`_gray`), so most
    frames need no conversion at all. One decoder thread: ingest already runs one worker per core, and
    on 112-pixel frames threads cost more than they save (82 vs 58 ms a clip with frame threads).
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            header = _header(container, stream)
            if header.format.endswith("_pipe") or header.format == "image2":
                raise VideoRefused(f"not a video ({header.format} image)")
            problem = check(header) if check else None
            if problem:
                raise VideoRefused(problem)
            stream.codec_context.flags |= av.codec.context.Flags.gray
            stream.codec_context.thread_count = 1
            frames = []
            for frame in container.decode(stream):
                if max_frames is not None and len(frames) >= max_frames:
                    raise VideoRefused(f"more than {max_frames} frames decoded (data.max_frames)")
                frames.append(_gray(frame))
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(f"{type(err).__name__}: {err}") from err
    if not frames:
        raise VideoDecodeError("no decodable frames")
    if len({f.shape for f in frames}) > 1:
        raise VideoDecodeError("frame size changes within the video")
    return np.stack(frames), header.fps


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
