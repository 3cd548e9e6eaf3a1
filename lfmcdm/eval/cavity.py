"""Cavity area of echo frames: the left ventricle's dark blood, one function for real and generated videos.

Why not "all dark pixels in the middle of the fan": in an apical four-chamber view the LV merges
with the left atrium whenever the mitral valve opens, and the atria fill while the ventricles
empty, so a dark-area curve mixes anti-phase chambers. Here, per clip:

1. **Where the LV is, label-free** (:func:`lv_region`): the pixels whose blood state changes with
   the ventricles (the label-free phase estimator's chamber groups, lfmcdm/data/phase.py: the
   moving group nearer the apex), closed into blobs; the largest blob is the LV (the RV is the
   smaller one across the septum); its convex hull is the LV's region.
2. **Per frame**: blur away speckle, call "dark" whatever is below ``dark_fraction`` of the frame's
   median brightness inside the fan, and measure the largest dark component inside that region.

A clip with no moving chambers (a still or noise) falls back to a central box of the fan. On the
phantoms this tracks the true LV area with r > 0.95 (absolute area is under-estimated, which a
correlation does not care about).
"""

from __future__ import annotations

import cv2
import numpy as np

from lfmcdm.data.phantom import sector_mask
from lfmcdm.data.phase import moving_chambers
from lfmcdm.settings.diffusion import CavityConfig
from lfmcdm.settings.pseudo import PhaseConfig


def search_region(size: int, cfg: CavityConfig) -> tuple[np.ndarray, np.ndarray]:
    """(eroded fan mask, central box within it) for ``size`` x ``size`` frames: the fallback region."""
    kernel = np.ones((cfg.sector_erode_px, cfg.sector_erode_px), np.uint8)
    fan = cv2.erode(sector_mask(size).astype(np.uint8), kernel).astype(bool)
    yy, xx = np.mgrid[0:size, 0:size]
    half = cfg.region_fraction * size / 2
    box = (np.abs(xx - (size - 1) / 2) <= half) & (np.abs(yy - (size - 1) / 2) <= half)
    return fan, box & fan


def lv_region(frames: np.ndarray, cfg: CavityConfig, phase_cfg: PhaseConfig | None = None) -> np.ndarray | None:
    """The LV's region of a uint8 ``(T, H, W)`` clip (boolean ``(H, W)``), or None when no chamber moves."""
    phase_cfg = phase_cfg or PhaseConfig()
    frames = np.asarray(frames)
    if len(frames) < 3 or float(frames.max()) <= phase_cfg.blank_level:
        return None
    found = moving_chambers(frames, phase_cfg)
    if isinstance(found, str):  # a still or noise: no chamber to find
        return None
    sector, apex, _, groups = found
    sign = min(groups.orientations, key=lambda s: groups.depth[s])  # ventricles: the group nearer the apex
    moving = np.zeros(sector.shape, np.uint8)
    moving[sector] = groups.members[sign]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.lv_close_px, cfg.lv_close_px))
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    if n <= 1 or stats[1:, cv2.CC_STAT_AREA].max() < cfg.lv_min_px:
        return None
    blob = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    points = np.vstack([cv2.findNonZero(blob).reshape(-1, 2), np.round([apex]).astype(np.int32)])
    region = np.zeros_like(blob)
    cv2.fillConvexPoly(region, cv2.convexHull(points), 1)
    return region.astype(bool) & sector


def cavity_mask(frame: np.ndarray, fan: np.ndarray, region: np.ndarray, cfg: CavityConfig) -> np.ndarray:
    """The cavity of one uint8 frame: its largest dark component in ``region`` (boolean, empty if none)."""
    blurred = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), cfg.blur_sigma)
    dark = ((blurred < cfg.dark_fraction * np.median(blurred[fan])) & region).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    if n <= 1:
        return np.zeros(dark.shape, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def clip_regions(frames: np.ndarray, cfg: CavityConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fan, region searched for the cavity) of a clip: the LV's region, else the central box."""
    fan, box = search_region(np.asarray(frames).shape[-1], cfg)
    region = lv_region(frames, cfg) if cfg.region == "lv" else None
    return fan, (region if region is not None else box)


def cavity_areas(frames: np.ndarray, cfg: CavityConfig = CavityConfig()) -> np.ndarray:
    """Cavity (LV) area in pixels per frame of uint8 ``(T, H, W)`` frames -> float ``(T,)``."""
    frames = np.asarray(frames)
    fan, region = clip_regions(frames, cfg)
    return np.array([float(cavity_mask(frame, fan, region, cfg).sum()) for frame in frames])


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r, or None when either curve is constant (or too short) to correlate."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
