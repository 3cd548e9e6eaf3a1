"""Label-free cardiac phase v2: find the ventricles without labels, then ED/ES of every beat.

Why not "dark area in the centre of the sector" (v1): in an apical four-chamber view the atria
*fill while the ventricles empty*, so a dark-area signal mixes two curves in anti-phase and can
follow the atria, putting ED at ES. Here:

1. **Blood, label-free.** After speckle smoothing, a pixel is "blood" when darker than the Otsu
   split of the sector's mean image (soft threshold). The sector is the largest bright connected
   region (scanner marks outside it are ignored); its apex is where the beams start (the probe).
2. **Chambers that move.** The first temporal principal component of the blood maps groups the
   pixels whose blood/tissue state changes together; pixels loading with opposite signs change in
   anti-phase (ventricles vs atria).
3. **Ventricles vs atria.** Either anti-phase group could be the ventricles. The ventricles
   contract fast and fill slowly, so with the right choice ED -> ES is the short part of the cycle
   (about a third); with the atria's curve it is the long part. The choice must also agree with
   the anatomy of an apical view: ventricles above the atria (nearer the apex, where the beams
   start). A counter-phase group much weaker than the main one is ignored (one chamber, e.g. the
   ellipse phantom), and the darkness of blood orients its curve.
4. **ED/ES per beat.** The ventricles' blood area minus the atria's (weighted by loading) is large
   at ED, so its maxima are ED and the minimum after each is ES; edge beats count too. The
   ventricles' base is left out (``basal_exclude``): the opening valve leaflets swing in there right
   after ES and hold its dark area low while the ventricle refills, which puts the minimum late.
   Then each ES moves back (at most ``es_refine_frames``) to the minimum of the ventricles' apical
   blood area, which neither the leaflets nor the atria (peaking as the mitral valve opens) reach.
5. **Confidence.** Periodicity, beat-to-beat consistency, whether systole is the shorter part of
   the cycle (a swapped ED/ES makes it the longer one) and whether the chosen ventricles really lie
   above the anti-phase chambers. Below ``min_confidence`` the clip is flagged with the weakest reason: never a
   silent guess.

VolumeTracings are never read here: they only *measure* this estimate (stage ``pseudo_labels``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from lfmcdm.settings.pseudo import PhaseConfig

OK = "ok"


@dataclass(frozen=True)
class PhaseEstimate:
    """ED/ES of the clip's strongest beat (``None`` when flagged), every beat, status and evidence."""

    ed: int | None
    es: int | None
    status: str
    period_frames: float | None = None
    signal: np.ndarray | None = field(default=None, repr=False)  # per frame, ventricular blood area (arbitrary units)
    beats: tuple[tuple[int, int], ...] = ()  # (ED, ES) of every complete beat, in order
    eds: tuple[int, ...] = ()  # every ED found (also one whose ES falls after the clip)
    ess: tuple[int, ...] = ()  # every ES found (also one whose ED came before the clip)
    confidence: float | None = None  # 0..1; below PhaseConfig.min_confidence the estimate is flagged
    ventricle_mask: np.ndarray | None = field(default=None, repr=False)  # pixels whose blood state drives `signal`

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def ed_frames(self) -> list[int]:
        return list(self.eds)

    @property
    def es_frames(self) -> list[int]:
        return list(self.ess)


def estimate_phase(clip: np.ndarray, fps: float, cfg: PhaseConfig | None = None) -> PhaseEstimate:
    """ED/ES of every beat of ``clip`` (uint8 ``(T, H, W)``), with a confidence, or a flag saying why not."""
    cfg = cfg or PhaseConfig()
    clip = np.asarray(clip)
    if clip.ndim != 3:
        raise ValueError(f"expected a (T, H, W) clip, got shape {clip.shape}")
    if len(clip) < cfg.min_frames:
        return PhaseEstimate(None, None, f"too short for phase: {len(clip)} frames (minimum {cfg.min_frames})")
    if clip.size == 0 or float(clip.max()) <= cfg.blank_level:
        return PhaseEstimate(None, None, "blank clip: no echo signal")
    found = moving_chambers(clip, cfg)
    if isinstance(found, str):
        return PhaseEstimate(None, None, found)
    sector, _, blood, groups = found
    candidates = [_orient(blood, sector.shape, sector, groups, sign, fps, cfg) for sign in groups.orientations]
    found = [c for c in candidates if c["beats"]]
    if not found:
        c = candidates[0]
        return PhaseEstimate(None, None, "no ED->ES cycle found in the clip", c["period"], c["signal"],
                             ventricle_mask=c["mask"])
    nearer = [c for c in found if (groups.gap(c["sign"]) or 0.0) >= 2 * cfg.min_depth_gap]
    # clearly separated chambers: the ventricles are the ones nearer the apex; otherwise (one chamber,
    # or a ring around it) the ones whose contraction is the short phase of the cycle
    best = nearer[0] if nearer else min(found, key=lambda c: c["systole"])
    gap = groups.gap(best["sign"])
    confidence, reason = phase_confidence(best["signal"], best["beats"], best["period"], gap, groups.why, cfg)
    if cfg.es_refine_frames:  # after the choice of chambers and the confidence, which it must not sway
        apical = _smooth1d(blood @ groups.weights(best["sign"], 0.0, cfg.es_refine_basal_exclude), cfg.temporal_sigma)
        best["beats"], best["ess"] = refine_es(apical, best["beats"], best["ess"], cfg.es_refine_frames)
    fields = dict(beats=tuple(best["beats"]), eds=tuple(best["eds"]), ess=tuple(best["ess"]),
                  confidence=confidence, ventricle_mask=best["mask"])
    if confidence < cfg.min_confidence:
        status = f"low phase confidence {confidence:.2f} (minimum {cfg.min_confidence:g}): {reason}"
        return PhaseEstimate(None, None, status, best["period"], best["signal"], **fields)
    ed, es = strongest_beat(best["signal"], best["beats"])
    return PhaseEstimate(ed, es, OK, best["period"], best["signal"], **fields)


def moving_chambers(clip: np.ndarray, cfg: PhaseConfig) -> tuple[np.ndarray, tuple[float, float], np.ndarray,
                                                                  "ChamberGroups"] | str:
    """(sector mask, apex (x, y), blood maps ``(T, N)``, chamber groups) of a ``(T, H, W)`` clip, or why
    it shows no motion.

    The label-free anatomy shared by the phase estimate and the LV cavity measure (lfmcdm/eval/cavity.py).
    """
    sector, apex = find_sector(clip, cfg)
    pixels = smoothed_frames(clip, cfg.spatial_sigma)[:, sector]
    flag = motion_flag(pixels, cfg)
    if flag:
        return flag
    blood = blood_maps(pixels, cfg)
    return sector, apex, blood, chamber_groups(blood, sector, apex, cfg)


def _orient(blood: np.ndarray, shape: tuple[int, int], sector: np.ndarray, groups: "ChamberGroups", sign: int,
            fps: float, cfg: PhaseConfig) -> dict:
    """The cardiac signal, period and beats if the ``sign`` group is the ventricles (and the other the atria)."""
    weights = groups.weights(sign, cfg.atria_weight, cfg.basal_exclude)
    signal = _smooth1d(blood @ weights, cfg.temporal_sigma)
    period = estimate_period(signal, fps, cfg)
    beats, eds, ess = find_beats(signal, period, fps, cfg)
    cycle = period if period is not None else float(len(signal))
    systole = float(np.median([(es - ed) / cycle for ed, es in beats])) if beats else np.inf
    mask = np.zeros(shape, bool)
    mask[sector] = weights > 0
    return {"sign": sign, "signal": signal, "period": period, "beats": beats, "eds": eds, "ess": ess,
            "systole": systole, "mask": mask}


# --- where the heart is -----------------------------------------------------------------------


def find_sector(clip: np.ndarray, cfg: PhaseConfig) -> tuple[np.ndarray, tuple[float, float]]:
    """(eroded fan mask, apex (x, y)): the convex hull of the largest lit region.

    Largest, so static marks outside the fan drop out; hull, because blood pools can stay below the
    blank level in every frame and would otherwise be holes exactly where the heart is.
    """
    lit = (clip.max(axis=0) > cfg.blank_level).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
    largest = labels == (1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))) if n > 1 else lit.astype(bool)
    points = cv2.findNonZero(largest.astype(np.uint8))
    fan = np.zeros(lit.shape, np.uint8)
    if points is not None:
        cv2.fillConvexPoly(fan, cv2.convexHull(points), 1)
    fan = fan.astype(bool)
    kernel = np.ones((cfg.sector_erode_px, cfg.sector_erode_px), np.uint8)
    eroded = cv2.erode(fan.astype(np.uint8), kernel) > 0
    sector = eroded if eroded.sum() >= cfg.min_region_px else fan
    ys, xs = np.nonzero(fan)
    top = ys <= ys.min() + 2
    return sector, (float(xs[top].mean()), float(ys.min()))


def smoothed_frames(clip: np.ndarray, sigma: float) -> np.ndarray:
    """float32 frames, each blurred by ``sigma`` px (in place: no per-frame copies to stack)."""
    frames = np.array(clip, dtype=np.float32)
    if sigma > 0:
        for frame in frames:
            cv2.GaussianBlur(frame, (0, 0), sigma, dst=frame)
    return frames


def motion_flag(pixels: np.ndarray, cfg: PhaseConfig) -> str | None:
    """Why the sector shows no cardiac motion, or None: its main temporal mode must be strong and dominant.

    On pure noise the singular values are nearly equal; on a static clip they are tiny.
    """
    centred = (pixels - pixels.mean(axis=0)).astype(np.float64)
    s, _, _ = temporal_modes(centred)
    n_frames, n_pixels = centred.shape
    rms = float(s[0] / np.sqrt(n_frames * n_pixels))
    if rms < cfg.min_motion_rms:
        return f"no visible motion: {rms:.2f} gray levels RMS (minimum {cfg.min_motion_rms:g})"
    dominance = float(s[0] / s[1]) if len(s) > 1 and s[1] > 0 else float("inf")
    if dominance < cfg.min_dominance:
        return (f"no visible motion: changes look like noise (main mode {dominance:.2f}x the next, "
                f"minimum {cfg.min_dominance:g})")
    return None


def temporal_modes(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(singular values, first temporal mode, its pixel loadings) of a centred ``(T, N)`` matrix.

    Through the small ``T x T`` Gram matrix: clips have far fewer frames than pixels, so this is the
    SVD at a fraction of the cost.
    """
    gram = centred @ centred.T
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    singular = np.sqrt(values)
    first = vectors[:, 0]
    loading = first @ centred / max(singular[0], 1e-12)
    return singular, first, loading


def blood_maps(pixels: np.ndarray, cfg: PhaseConfig) -> np.ndarray:
    """Soft blood indicator ``(T, N)`` in [0, 1]: darker than the Otsu split of the sector's mean image."""
    mean_image = pixels.mean(axis=0)
    as_u8 = np.clip(mean_image, 0, 255).astype(np.uint8).reshape(-1, 1)
    threshold, _ = cv2.threshold(as_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    width = max(float(mean_image.std()) * cfg.dark_softness, 1e-6)
    z = np.clip((pixels - float(threshold)) / width, -50, 50)
    return 1.0 / (1.0 + np.exp(z))


@dataclass(frozen=True)
class ChamberGroups:
    """Pixels whose blood state changes together (sign +1) and in anti-phase (-1) on the main temporal mode."""

    loading: np.ndarray
    members: dict[int, np.ndarray]
    mass: dict[int, float]
    depth: dict[int, float]  # loading-weighted mean distance from the apex
    depth_scale: float  # sector depth (px)
    orientations: tuple[int, ...]  # candidate signs for "the ventricles"
    why: str
    pixel_depth: np.ndarray  # every analysed pixel's distance from the apex (px)

    def weights(self, sign: int, atria_weight: float, basal_exclude: float = 0.0) -> np.ndarray:
        """Per-pixel weights: the ``sign`` group's blood counts for, the anti-phase group's (atria) against.

        The atria peak as the mitral valve opens (= ES) and empty while the ventricles fill, so
        subtracting their blood area sharpens the same timing where opening leaflets blur the ventricles'.
        """
        w = np.where(self.members[sign], np.abs(self.loading), 0.0)
        if basal_exclude > 0 and self.members[sign].any():
            # the valve leaflets swing into the ventricles' base as they open: only walls above it count
            cut = np.quantile(self.pixel_depth[self.members[sign]], 1 - basal_exclude)
            w = np.where(self.pixel_depth <= cut, w, 0.0)
        if len(self.orientations) == 2 and atria_weight > 0:
            w = w - atria_weight * np.where(self.members[-sign], np.abs(self.loading), 0.0)
        return w

    def gap(self, sign: int) -> float | None:
        """How much nearer the apex the ``sign`` group is than the anti-phase group (share of depth); None: one group."""
        if len(self.orientations) < 2:
            return None
        return (self.depth[-sign] - self.depth[sign]) / self.depth_scale


def chamber_groups(blood: np.ndarray, sector: np.ndarray, apex: tuple[float, float], cfg: PhaseConfig) -> ChamberGroups:
    """Split the moving pixels by the sign of their loading on the first temporal mode of the blood maps.

    Both signs are candidates for "the ventricles" unless the counter-phase group is much weaker
    than the main one (``minor_group_share``): then there is one chamber, oriented by darkness.
    """
    _, _, loading = temporal_modes(blood - blood.mean(axis=0))
    strong = np.abs(loading) >= cfg.loading_fraction * np.abs(loading).max()
    ys, xs = np.nonzero(sector)
    depth = np.hypot(xs - apex[0], ys - apex[1])
    members, mass, mean_depth = {}, {}, {}
    for sign in (1, -1):
        members[sign] = strong & (sign * loading > 0)
        mass[sign] = float(np.abs(loading[members[sign]]).sum())
        weights = np.abs(loading[members[sign]])
        mean_depth[sign] = float(np.average(depth[members[sign]], weights=weights)) if mass[sign] > 0 else np.inf
    major = max(mass, key=mass.get)
    if mass[-major] < cfg.minor_group_share * mass[major]:
        orientations, why = (major,), "one moving chamber group"
    else:
        orientations, why = (1, -1), "two anti-phase groups"
    return ChamberGroups(loading, members, mass, mean_depth, max(float(depth.max()), 1.0), orientations, why, depth)


# --- timing -----------------------------------------------------------------------------------


def _smooth1d(signal: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return signal
    radius = max(1, int(round(3 * sigma)))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(signal, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _autocorrelation(signal: np.ndarray) -> np.ndarray:
    x = signal - signal.mean()
    n = len(x)
    ac = np.correlate(x, x, mode="full")[n - 1 :] / np.arange(n, 0, -1)
    return ac / ac[0]


def estimate_period(signal: np.ndarray, fps: float, cfg: PhaseConfig) -> float | None:
    """Cardiac period in frames from the signal's autocorrelation (None when under one clear cycle).

    Whole multiples of the period peak too (and, on short clips, sometimes higher), so the first
    peak in the physiological range that comes close to the highest wins; a parabola through it
    gives a sub-frame period. Lags beyond ``max_lag_share`` of the clip are too poorly sampled to trust.
    """
    n = len(signal)
    if not np.any(signal - signal.mean()):
        return None
    ac = _autocorrelation(signal)
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


def _local_extrema(signal: np.ndarray, half: int, sign: int) -> list[int]:
    """Interior frames that are the extreme (max for sign 1, min for -1) within +/- ``half`` frames."""
    s = sign * signal
    n = len(s)
    return [t for t in range(1, n - 1) if s[t] >= s[max(0, t - half) : t + half + 1].max()
            and s[t] > min(s[t - 1], s[t + 1])]


def _is_local_min(signal: np.ndarray, t: int) -> bool:
    return 0 < t < len(signal) - 1 and signal[t] <= min(signal[t - 1], signal[t + 1])


def find_beats(signal: np.ndarray, period: float | None, fps: float,
               cfg: PhaseConfig) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """(complete beats as (ED, ES), every ED, every ES) of the clip.

    ED = a maximum over +/- half a period; ES = the minimum between an ED and the next (within
    ``es_window`` periods, at least ``min_systole_frames`` after it). The clip's edges hold partial
    beats: an ES before the first ED and an ED whose ES falls after the clip still count, when they
    are true interior extremes (the recording may just start or stop on a slope). A swing under
    ``min_beat_swing`` of the median is noise, not a beat.
    """
    n = len(signal)
    half = max(1, int((period or cfg.min_period_s * fps) // 2))
    window = max(cfg.min_systole_frames + 1, int(np.ceil(cfg.es_window * period))) if period else n
    eds = _local_extrema(signal, half, 1)
    if not eds:
        return [], [], []
    beats, ess = [], []
    for i, ed in enumerate(eds):
        stop = min(n - 1, ed + window + 1, eds[i + 1] if i + 1 < len(eds) else n - 1)
        lo = ed + cfg.min_systole_frames
        if lo < stop:
            es = lo + int(np.argmin(signal[lo:stop]))
            if _is_local_min(signal, es):
                beats.append((ed, es))
                ess.append(es)
    back = int(np.ceil(period)) if period else eds[0]
    lo = max(1, eds[0] - back)
    if lo < eds[0] - 1:
        es = lo + int(np.argmin(signal[lo : eds[0]]))
        if _is_local_min(signal, es) and es < eds[0]:
            ess.insert(0, es)
    swings = [signal[ed] - signal[es] for ed, es in beats] or [float(np.ptp(signal))]
    median = float(np.median(swings))
    floor = cfg.min_beat_swing * median
    keep_beats = [b for b in beats if signal[b[0]] - signal[b[1]] >= floor]
    paired_ed, paired_es = {b[0] for b in keep_beats}, {b[1] for b in keep_beats}
    # a partial beat at an edge must show the turn it claims (the fall after an ED, the fall into an ES)
    # or, when the clip cuts that turn short, the full depth of a beat on its other side: noise near
    # the clip's end does neither
    turn, full = cfg.edge_turn * median, (1 - cfg.edge_turn) * median
    span = int(np.ceil(period)) if period else n
    keep_ed = [ed for ed in eds if ed in paired_ed
               or (ed + 1 < n and signal[ed] - signal[ed + 1 : ed + half + 1].min() >= turn)
               or signal[ed] - signal[max(0, ed - span) : ed].min(initial=signal[ed]) >= full]
    keep_es = [es for es in ess if es in paired_es
               or (es > 0 and signal[max(0, es - half) : es].max() - signal[es] >= turn)
               or signal[es + 1 : es + span + 1].max(initial=signal[es]) - signal[es] >= full]
    return keep_beats, sorted(keep_ed), sorted(keep_es)


def refine_es(apical: np.ndarray, beats: list[tuple[int, int]], ess: list[int], reach: int
              ) -> tuple[list[tuple[int, int]], list[int]]:
    """Each ES moved back to the minimum of the ventricles' apical blood area within ``reach`` frames.

    The beats are found on the whole signal (robust: every moving chamber votes), but its minimum
    runs late: the atria peak as the mitral valve opens (after an isovolumic pause in a real heart)
    and opening leaflets fill the ventricles' base. The apex sees neither. (On a fresh set of 200 A4C
    phantoms ES within 2 frames rose from 0.946 to 0.967, docs/benchmarks.md; the apical signal alone
    finds beats less reliably, so it only places them.)
    """
    def moved(es: int) -> int:
        lo = max(0, es - reach)  # both biases run late: look back only
        return lo + int(np.argmin(apical[lo : es + 1]))

    shift = {es: moved(es) for es in {*ess, *(es for _, es in beats)}}
    ed_of = {es: ed for ed, es in beats}  # an ES never moves to or before its own beat's ED
    placed = {es: new if new > ed_of.get(es, -1) else es for es, new in shift.items()}
    return [(ed, placed[es]) for ed, es in beats], sorted({placed[es] for es in ess})


def strongest_beat(signal: np.ndarray, beats: list[tuple[int, int]]) -> tuple[int, int]:
    """The beat with the largest ED-ES swing (the one downstream pairs use)."""
    return max(beats, key=lambda b: signal[b[0]] - signal[b[1]])


def phase_confidence(signal: np.ndarray, beats: list[tuple[int, int]], period: float | None,
                     gap: float | None, why: str, cfg: PhaseConfig) -> tuple[float, str]:
    """Confidence in [0, 1] (the weakest of four pieces of evidence) and the reason naming the weakest."""
    evidence: dict[str, tuple[float, str]] = {}
    if period is not None:
        ac = _autocorrelation(signal)
        lag = int(round(period))
        periodicity = float(ac[min(lag, len(ac) - 1)])
        evidence["periodicity"] = (float(np.clip(periodicity, 0, 1)), f"weak periodicity (autocorrelation {periodicity:.2f})")
        systole = np.array([(es - ed) / period for ed, es in beats])
        share = float(np.median(systole))
        score = float(np.clip((cfg.max_systole_share - share) / 0.1, 0, 1))
        evidence["order"] = (score, f"systole takes {share:.0%} of the cycle: ED/ES look swapped")
    else:
        evidence["periodicity"] = (cfg.single_beat_confidence, "under two cycles: no period to check the beat against")
    swings = np.array([signal[ed] - signal[es] for ed, es in beats])
    spread = float(swings.std() / max(swings.mean(), 1e-9)) if len(swings) > 1 else 0.0
    evidence["consistency"] = (float(np.clip(1 - spread, 0, 1)), f"beats disagree (swing spread {spread:.0%})")
    if gap is not None:
        # in an apical view the ventricles sit above the atria; a concentric ring around one chamber
        # may sit a little above it, so only a clear inversion counts against
        score = 1.0 if gap >= 0 else float(np.clip(1 + gap / (2 * cfg.min_depth_gap), 0, 1))
        evidence["position"] = (score, f"the chambers chosen as ventricles lie {-gap:.0%} of the depth *below* the "
                                       f"anti-phase ones ({why})")
    weakest = min(evidence, key=lambda k: evidence[k][0])
    return evidence[weakest][0], evidence[weakest][1]
