"""Cavity area of echo frames by thresholding dark pixels: one function for real and generated videos.

The blood pool is the large dark region in the middle of the fan. Per frame: blur away speckle,
call "dark" whatever is below ``dark_fraction`` of the frame's median brightness inside the fan,
keep only a central box of the (slightly eroded) fan, and measure the largest dark connected
component. On the phantom this tracks the true cavity area with r > 0.99 (absolute area is
under-estimated, which a correlation does not care about).
"""

from __future__ import annotations

import cv2
import numpy as np

from lfmcdm.data.phantom import sector_mask
from lfmcdm.settings.diffusion import CavityConfig


def search_region(size: int, cfg: CavityConfig) -> tuple[np.ndarray, np.ndarray]:
    """(eroded fan mask, central box within it) for ``size`` x ``size`` frames."""
    kernel = np.ones((cfg.sector_erode_px, cfg.sector_erode_px), np.uint8)
    fan = cv2.erode(sector_mask(size).astype(np.uint8), kernel).astype(bool)
    yy, xx = np.mgrid[0:size, 0:size]
    half = cfg.region_fraction * size / 2
    box = (np.abs(xx - (size - 1) / 2) <= half) & (np.abs(yy - (size - 1) / 2) <= half)
    return fan, box & fan


def cavity_mask(frame: np.ndarray, fan: np.ndarray, region: np.ndarray, cfg: CavityConfig) -> np.ndarray:
    """The cavity of one uint8 frame: its largest dark component in ``region`` (boolean, empty if none)."""
    blurred = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), cfg.blur_sigma)
    dark = ((blurred < cfg.dark_fraction * np.median(blurred[fan])) & region).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    if n <= 1:
        return np.zeros(dark.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def cavity_areas(frames: np.ndarray, cfg: CavityConfig = CavityConfig()) -> np.ndarray:
    """Cavity area in pixels per frame of uint8 ``(T, H, W)`` frames -> float ``(T,)``."""
    frames = np.asarray(frames)
    fan, region = search_region(frames.shape[-1], cfg)
    return np.array([float(cavity_mask(frame, fan, region, cfg).sum()) for frame in frames])


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r, or None when either curve is constant (or too short) to correlate."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
