"""Animated GIFs: appearance source | motion donor | generated, side by side, at the generated frame rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lfmcdm.atomic import atomic_path

LABEL_HEIGHT = 14  # px strip above each panel for its caption
GAP = 4  # px between panels
LABEL_GRAY, BACKGROUND = 230, 20


def _frames_at(video: np.ndarray, fps: float, times: np.ndarray) -> np.ndarray:
    """Nearest frames of ``video`` at ``times`` (seconds), holding the last frame past its end."""
    idx = np.clip(np.round(times * fps).astype(int), 0, len(video) - 1)
    return np.asarray(video)[idx]


def side_by_side_gif(panels: list[tuple[str, np.ndarray, float, float]], fps: float, n_frames: int, scale: int,
                     path: Path) -> Path:
    """Write a looping GIF of ``panels`` = (caption, uint8 (T, H, W), video fps, start time s).

    Every panel is shown at the same instants ``start + k / fps`` for ``k < n_frames``, so a donor
    can be shown from the lag it was aligned at.
    """
    times = np.arange(n_frames) / fps
    columns = [_frames_at(v, vfps, start + times) for _, v, vfps, start in panels]
    height = max(c.shape[1] for c in columns) * scale
    widths = [c.shape[2] * scale for c in columns]
    canvas_w = sum(widths) + GAP * (len(columns) - 1)
    images = []
    for k in range(n_frames):
        canvas = Image.new("L", (canvas_w, height + LABEL_HEIGHT), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        x = 0
        for (caption, *_), column, width in zip(panels, columns, widths):
            frame = Image.fromarray(column[k]).resize((width, column.shape[1] * scale), Image.NEAREST)
            canvas.paste(frame, (x, LABEL_HEIGHT))
            draw.text((x + 2, 1), caption, fill=LABEL_GRAY)
            x += width + GAP
        images.append(canvas)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(1, int(round(1000 / fps))), loop=0)
    return path
