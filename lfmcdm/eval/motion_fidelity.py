"""Motion fidelity helpers for cohort evaluation: anchored curve correlation, shuffled partners, cosines."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CurveMatch:
    """A generated curve aligned to a donor curve at the best lag of those searched."""

    r: float  # Pearson r at the best lag (NaN when no lag leaves enough overlap)
    lag_s: float  # generated time t matches donor time t + lag_s
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # generated frame times used (s)
    donor: np.ndarray = field(default_factory=lambda: np.zeros(0))  # donor curve at times + lag_s
    generated: np.ndarray = field(default_factory=lambda: np.zeros(0))  # generated curve at times


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; NaN when either curve is constant or shorter than 2 points."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def align_curves(donor: np.ndarray, donor_fps: float, generated: np.ndarray, gen_fps: float, max_lag_s: float,
                 min_frames: int, min_lag_s: float = 0.0) -> CurveMatch:
    """Best-lag Pearson r between a donor curve and a generated one at different frame rates.

    The donor is interpolated at the generated frame times shifted by each lag in
    ``[min_lag_s, max_lag_s]`` (one donor frame apart; the generated video starts somewhere in the
    donor); only generated frames whose shifted time falls inside the donor are used, and a lag
    needs ``min_frames`` of them.
    """
    donor, generated = np.asarray(donor, np.float64), np.asarray(generated, np.float64)
    t_gen = np.arange(len(generated)) / gen_fps
    t_donor = np.arange(len(donor)) / donor_fps
    best = CurveMatch(float("nan"), float("nan"))
    if len(donor) < 2 or len(generated) < 2 or max_lag_s < min_lag_s:
        return best
    n_lags = int(np.floor((max_lag_s - min_lag_s) * donor_fps + 1e-9))  # 1e-9: 0.04 s * 50 fps is 2 lags, not 1
    for lag in min_lag_s + np.arange(n_lags + 1) / donor_fps:
        shifted = t_gen + lag
        ok = (shifted >= 0) & (shifted <= t_donor[-1])
        if ok.sum() < max(min_frames, 2):
            continue
        d = np.interp(shifted[ok], t_donor, donor)
        r = pearson(d, generated[ok])
        if np.isfinite(r) and not (np.isfinite(best.r) and r <= best.r):
            best = CurveMatch(r, float(lag), t_gen[ok], d, generated[ok])
    return best


def align_at(donor: np.ndarray, donor_fps: float, generated: np.ndarray, gen_fps: float, anchor_s: float,
             tolerance_s: float, min_frames: int) -> CurveMatch:
    """Pearson r with the generated video's time 0 placed at ``anchor_s`` of the donor (best within +/- tolerance).

    A generated video starts where its donor's motion starts (the donor's label-free end-diastole,
    where its motion-bank trajectory begins), so that is where its curve must match. A free lag
    search would let any periodic donor line up with any heartbeat and hide whether the motion
    followed its own donor.
    """
    return align_curves(donor, donor_fps, generated, gen_fps, anchor_s + tolerance_s, min_frames,
                        min_lag_s=max(0.0, anchor_s - tolerance_s))


def nanmean_or_none(values) -> float | None:
    """Mean of the finite values (None entries skipped); None when there are none."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of ``(N, D)`` arrays -> ``(N,)`` (0 for zero rows)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(1) / np.where(norms > 0, norms, 1.0), 0.0)


def shuffled_partners(keys: list[str], seed: int) -> list[int | None]:
    """For each item, a random other item with a different key (None when every item shares its key)."""
    rng = np.random.default_rng(seed)
    out: list[int | None] = []
    for key in keys:
        others = [j for j, k in enumerate(keys) if k != key]
        out.append(int(rng.choice(others)) if others else None)
    return out
