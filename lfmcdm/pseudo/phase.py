"""Label-free cardiac phase: one end-diastole (largest cavity) and the end-systole that follows it.

Why this signal: the cavity's growth and shrinking is the dominant *temporal* change in the
centre of an echo sector, so the first principal component (over time) of the speckle-smoothed
central pixels traces the cardiac cycle without any label. PCA gives its shape, not its sign; the
sign comes from the share of dark (blood) pixels, which by definition is large at ED. The
period (autocorrelation of that signal) bounds where the ES of one cycle can be. VolumeTracings
are never read here: they only *measure* this estimate (stage ``pseudo_labels``).

Clips on which no estimate is meaningful (blank, too short, static) get a clear flag reason as
status instead of a guess, and never raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from lfmcdm.settings.pseudo import PhaseConfig

OK = "ok"


@dataclass(frozen=True)
class PhaseEstimate:
    """ED/ES clip-frame indices (``None`` when flagged), the status, and the evidence behind them."""

    ed: int | None
    es: int | None
    status: str
    period_frames: float | None = None
    signal: np.ndarray | None = field(default=None, repr=False)  # per frame, arbitrary units, large = big cavity

    @property
    def ok(self) -> bool:
        return self.status == OK


def estimate_phase(clip: np.ndarray, fps: float, cfg: PhaseConfig | None = None) -> PhaseEstimate:
    """ED < ES (``es - ed >= min_systole_frames``) of one cycle of ``clip`` (uint8 ``(T, H, W)``), or a flag."""
    cfg = cfg or PhaseConfig()
    clip = np.asarray(clip)
    if clip.ndim != 3:
        raise ValueError(f"expected a (T, H, W) clip, got shape {clip.shape}")
    if len(clip) < cfg.min_frames:
        return PhaseEstimate(None, None, f"too short for phase: {len(clip)} frames (minimum {cfg.min_frames})")
    if clip.size == 0 or float(clip.max()) <= cfg.blank_level:
        return PhaseEstimate(None, None, "blank clip: no echo signal")
    pixels = _region_pixels(clip, cfg)
    mode, flag = _dominant_mode(pixels, cfg)
    if flag:
        return PhaseEstimate(None, None, flag)
    if np.corrcoef(mode, dark_share(pixels, cfg))[0, 1] < 0:
        mode = -mode  # orient: large = big cavity
    signal = _smooth1d(mode, cfg.temporal_sigma)
    period = estimate_period(signal, fps, cfg)
    pair = pick_cycle(signal, period, fps, cfg)
    if pair is None:
        return PhaseEstimate(None, None, "no ED->ES cycle found in the clip", period, signal)
    return PhaseEstimate(pair[0], pair[1], OK, period, signal)


def _region_pixels(clip: np.ndarray, cfg: PhaseConfig) -> np.ndarray:
    """Speckle-smoothed intensities ``(T, N)`` of the central part of the sector (where the cavity is)."""
    sector = clip.max(axis=0) > cfg.blank_level
    kernel = np.ones((cfg.sector_erode_px, cfg.sector_erode_px), np.uint8)
    eroded = cv2.erode(sector.astype(np.uint8), kernel) > 0
    sector = eroded if eroded.sum() >= cfg.min_region_px else sector
    ys, xs = np.nonzero(sector)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    hh = (ys.max() - ys.min()) * cfg.central_fraction / 2
    hw = (xs.max() - xs.min()) * cfg.central_fraction / 2
    yy, xx = np.mgrid[: clip.shape[1], : clip.shape[2]]
    region = sector & (np.abs(yy - cy) <= hh) & (np.abs(xx - cx) <= hw)
    if region.sum() < cfg.min_region_px:
        region = sector
    sigma = cfg.spatial_sigma
    frames = np.asarray(clip, dtype=np.float32)
    if sigma > 0:
        frames = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])
    return frames[:, region]


def _dominant_mode(pixels: np.ndarray, cfg: PhaseConfig) -> tuple[np.ndarray, str | None]:
    """First temporal principal component of the region, or why the clip shows no motion.

    Motion is 'visible' when that mode is both strong (RMS gray levels per pixel) and clearly
    above the next one: on pure noise the singular values are nearly equal.
    """
    centred = (pixels - pixels.mean(axis=0)).astype(np.float64)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    n_frames, n_pixels = centred.shape
    rms = float(s[0] / np.sqrt(n_frames * n_pixels))
    if rms < cfg.min_motion_rms:
        return u[:, 0], f"no visible motion: {rms:.2f} gray levels RMS (minimum {cfg.min_motion_rms:g})"
    dominance = float(s[0] / s[1]) if len(s) > 1 and s[1] > 0 else float("inf")
    if dominance < cfg.min_dominance:
        return u[:, 0], (f"no visible motion: changes look like noise (main mode {dominance:.2f}x the next, "
                         f"minimum {cfg.min_dominance:g})")
    return u[:, 0] * s[0], None


def dark_share(pixels: np.ndarray, cfg: PhaseConfig) -> np.ndarray:
    """Soft share of dark (blood-like) pixels per frame: the cavity size, noisy but with the right sign."""
    mean_image = pixels.mean(axis=0)
    threshold = np.quantile(mean_image, cfg.dark_quantile)
    width = max(float(mean_image.std()) * cfg.dark_softness, 1e-6)
    z = np.clip((pixels - threshold) / width, -50, 50)
    return (1.0 / (1.0 + np.exp(z))).mean(axis=1)


def _smooth1d(signal: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return signal
    radius = max(1, int(round(3 * sigma)))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(signal, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def estimate_period(signal: np.ndarray, fps: float, cfg: PhaseConfig) -> float | None:
    """Cardiac period in frames from the signal's autocorrelation (None when under one clear cycle).

    Whole multiples of the period peak too (and, on short clips, sometimes higher), so the first
    peak in the physiological range that comes close to the highest wins; a parabola through it
    gives a sub-frame period. Lags beyond ``max_lag_share`` of the clip are too poorly sampled to trust.
    """
    x = signal - signal.mean()
    n = len(x)
    if not np.any(x):
        return None
    ac = np.correlate(x, x, mode="full")[n - 1 :] / np.arange(n, 0, -1)
    ac = ac / ac[0]
    lo = max(1, int(np.floor(cfg.min_period_s * fps)))
    hi = min(int(np.ceil(cfg.max_period_s * fps)), int(cfg.max_lag_share * n))
    peaks = [k for k in range(lo, min(hi, n - 2) + 1)
             if ac[k] >= ac[k - 1] and ac[k] > ac[k + 1] and ac[k] >= cfg.min_periodicity]
    if not peaks:
        return None
    top = max(ac[k] for k in peaks)
    lag = next(k for k in peaks if ac[k] >= cfg.period_peak_share * top)
    a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
    denom = a - 2 * b + c
    return float(lag + (0.5 * (a - c) / denom if denom < 0 else 0.0))


def pick_cycle(signal: np.ndarray, period: float | None, fps: float, cfg: PhaseConfig) -> tuple[int, int] | None:
    """The (ED, ES) pair of the clip's strongest cycle.

    ED candidates are maxima over +/- half a period; each one's ES is the minimum within
    ``es_window`` periods after it. With no measurable period (under ~one cycle in the clip) the
    shortest physiological period bounds the maxima and ES may be anywhere after ED. Pairs
    whose extrema are not at the clip's edges win (an edge frame may just be where the recording
    starts or stops); among them the largest ED-ES swing.
    """
    n = len(signal)
    half = max(1, int((period or cfg.min_period_s * fps) // 2))
    window = max(cfg.min_systole_frames + 1, int(np.ceil(cfg.es_window * period))) if period else n
    best: tuple[tuple[bool, float], int, int] | None = None
    for ed in range(n):
        if signal[ed] < signal[max(0, ed - half) : ed + half + 1].max():
            continue
        lo, hi = ed + cfg.min_systole_frames, min(n, ed + window + 1)
        if lo >= hi:
            continue
        es = lo + int(np.argmin(signal[lo:hi]))
        score = (0 < ed and es < n - 1, float(signal[ed] - signal[es]))
        if best is None or score > best[0]:
            best = (score, ed, es)
    return (best[1], best[2]) if best else None
