"""Phantom v2: an apical four-chamber (A4C) echocardiogram with known truth.

Why: the one-ellipse phantom cannot tell an estimator that follows *the left ventricle* from one
that follows *any dark area*. Real EchoNet clips are A4C views: the atria fill while the ventricles
empty, so "dark area in the sector" mixes signals in anti-phase. This phantom reproduces that, and
the image formation that makes real clips hard (speckle from moving scatterers, a PSF that is
coarser laterally and with depth, attenuation + TGC, near-field haze, wall dropout, specular walls
and valves, scanner marks outside the sector, breathing drift), calibrated to the aggregate
statistics in docs/design.md ("Real-echo reference statistics").

Model (EchoNet orientation: probe/apex at the top, LV right of the septum, RV left, atria below):

* Chambers are ellipses in *heart coordinates* ``(u, v)``: ``u`` from the LV apex towards the base,
  ``v`` across, the septum at ``v = 0``. They are drawn once, in the end-diastolic *reference*.
* Every frame is the reference seen through a smooth **backward map** ``B_t`` (frame -> reference):
  ventricles shorten towards the fixed apex (the valve plane descends towards the apex in systole)
  and narrow about their centre lines; the atria stretch between the moving valve plane and the
  fixed far field and widen, in anti-phase; a slow breathing drift moves the whole heart. Chamber
  masks, true motion (``F_b(B_a(x))``, with ``F`` the numerical inverse of ``B``) and images all come
  from the same map, so the truth is exact by construction.
* Timing per beat (beats have their own period and stroke): ventricular contraction ``c`` (0 at ED,
  1 at ES; rapid filling, diastasis, atrial kick), atrial filling ``g`` (its mirror), leaflet opening
  ``o`` (closed in systole; E wave, partial closure, A wave).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SYSTOLE_FRACTION = 0.36  # share of the cycle from ED to ES
LONG_SHORTENING = 0.13  # longitudinal shortening of the ventricles at ES (valve plane descent), EF 60 %
RV_STROKE = 0.8  # RV radial contraction relative to the LV's
ATRIAL_SWELL = 0.16  # lateral growth of the atria from ED to ES
VALVE_TRUNCATION = 0.85  # valve plane at u = (1 + this) * a: the ventricle ellipses are cut at their base
PIXEL_SPACING_CM = 0.15  # gives EchoNet-like volumes (EDV ~ 60-160 mL)
N_DISCS = 20  # method of discs, as EchoNet's 20 chords
BREATH_HZ = 0.25  # breathing drift frequency
PSF_AXIAL_PX = 0.9  # speckle grain along the beam (px)
PSF_LATERAL_BINS = 2.0  # speckle grain across the beam, in polar bins (so coarser with depth)
POLAR_THETA_BINS = 96
DYNAMIC_RANGE_DB = 44.0  # log compression: this many dB map to gray 0..255
FLOOR_DB = -34.0  # echo level (dB re myocardium) shown as black
BLOOD, TISSUE, MYOCARDIUM = 0.004, 0.032, 1.0  # echogenicity (amplitude) of the reference
NOISE_DB = -52.0  # electronic noise floor (dB re myocardium) at noise_std = 10


@dataclass(frozen=True)
class A4cSpec:
    """Everything random about one A4C phantom video; the video is a pure function of it."""

    name: str
    split: str
    seed: int
    n_frames: int
    fps: float
    size: int
    hr_bpm: float
    ef: float  # target EF (%); the measured one (method of discs) is in the truth table
    phase0: float
    beat_periods: tuple[float, ...]  # relative to 60 / hr_bpm, one per beat from the clip's first
    beat_strokes: tuple[float, ...]  # contraction amplitude per beat (1 = nominal)
    apex_x: float  # sector (probe) apex
    apex_y: float
    sector_half_deg: float
    sector_depth: float  # px
    lv_apex_depth: float  # px from the probe to the LV apex along the heart axis
    lv_shift: float  # px lateral offset of the LV apex from the sector centre line
    rotation: float  # heart axis tilt from vertical (radians, >0 = base to the right)
    a_lv: float  # LV half length (px)
    b_lv: float  # LV half width (px)
    septum: float  # half thickness of the septum (px)
    wall: float  # ventricular wall thickness at ED (px)
    atria_scale: float
    gain_db: float
    tgc_slope_db: float  # residual depth gain after TGC (dB over the sector depth)
    haze: float
    noise_std: float
    drift_px: float
    kind: str = "a4c"

    @property
    def sr_min(self) -> float:
        """LV radial scale at ES so that ``sL * sR^2 = 1 - EF`` (volume ~ length x width^2)."""
        sl = 1.0 - LONG_SHORTENING * self.ef / 60.0
        return math.sqrt(max(0.05, 1.0 - self.ef / 100.0) / sl)


# --- timing -----------------------------------------------------------------------------------


def _systole(p: np.ndarray) -> np.ndarray:
    """0 -> 1 over systole, with a non-zero initial slope so ED is a sharp volume maximum."""
    return 0.7 * 0.5 * (1 - np.cos(np.pi * p)) + 0.3 * p


def _early(u: np.ndarray) -> np.ndarray:
    """Rapid filling: 1 -> 0 over the first 40 % of diastole, starting with a non-zero slope so ES is a sharp minimum."""
    x = np.clip(u / 0.4, 0, 1)
    return 0.8 * 0.5 * (1 + np.cos(np.pi * x)) + 0.2 * (1 - x)


def _kick(u: np.ndarray, plateau: float) -> np.ndarray:
    """Diastasis at ``plateau`` then the atrial kick: linear to 0 over the last 20 % of diastole."""
    return np.where(u < 0.8, plateau, plateau * (1 - (u - 0.8) / 0.2))


def cycle_curves(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ventricular contraction c, atrial filling g, leaflet opening o) at cycle phase ``phi`` (mod 1)."""
    phi = np.mod(phi, 1.0)
    p = np.clip(phi / SYSTOLE_FRACTION, 0, 1)
    u = np.clip((phi - SYSTOLE_FRACTION) / (1 - SYSTOLE_FRACTION), 0, 1)
    systole = phi < SYSTOLE_FRACTION
    c = np.where(systole, _systole(p), 0.78 * _early(u) + 0.22 * _kick(u, 1.0))
    g = np.where(systole, _systole(p), 0.5 * _early(u) + _kick(u, 0.5))
    o = np.where(systole, 0.0, np.interp(u, [0, 0.04, 0.14, 0.45, 0.7, 0.86, 0.97, 1.0],
                                         [0, 0, 1, 0.35, 0.35, 0.8, 0, 0]))
    return c, g, o


def beat_phase(spec: A4cSpec, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuous cycle phase (integer = ED) and the beat index of each time (s), from per-beat periods."""
    period = 60.0 / spec.hr_bpm
    lengths = np.asarray(spec.beat_periods) * period
    starts = -spec.phase0 * lengths[0] + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    k = np.clip(np.searchsorted(starts, t_s, side="right") - 1, 0, len(lengths) - 1)
    return k + (t_s - starts[k]) / lengths[k], k


def frame_curves(spec: A4cSpec) -> dict[str, np.ndarray]:
    """Per-frame timing: phase, c, g, o (stroke-scaled), ventricular/atrial scales, drift."""
    t = np.arange(spec.n_frames) / spec.fps
    phi, k = beat_phase(spec, t)
    c, g, o = cycle_curves(phi)
    stroke = np.asarray(spec.beat_strokes)[k]
    c, g = c * stroke, g * stroke
    ef_share = spec.ef / 60.0
    breath = 2 * np.pi * BREATH_HZ * t + spec.seed % 7
    return {
        "phi": phi, "c": c, "g": g, "o": o,
        "s_long": 1 - LONG_SHORTENING * ef_share * c,
        "s_lv": np.maximum(0.25, 1 - (1 - spec.sr_min) * c),
        "s_rv": np.maximum(0.25, 1 - RV_STROKE * (1 - spec.sr_min) * c),
        "s_atria": 1 + ATRIAL_SWELL * g,
        "drift_x": spec.drift_px * np.sin(breath), "drift_y": 0.6 * spec.drift_px * np.sin(breath + 1.0),
    }


# --- geometry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anatomy:
    """Chamber ellipses in heart coordinates (u down the axis from the LV apex, v across, septum at 0)."""

    origin: np.ndarray  # image position of u = v = 0 (septum line, level of the LV apex)
    d: np.ndarray  # unit heart axis (apex -> base), image coordinates
    n: np.ndarray  # unit across-axis (towards the LV)
    chambers: dict[str, tuple[float, float, float, float, float | None]]  # name: (uc, vc, a, b, u_cut or None)
    u_mv: float  # mitral valve plane (reference)
    u_tv: float  # tricuspid valve plane
    u_far: float  # beyond: no motion
    wall: float
    septum: float


def anatomy(spec: A4cSpec) -> Anatomy:
    d = np.array([math.sin(spec.rotation), math.cos(spec.rotation)])
    n = np.array([math.cos(spec.rotation), -math.sin(spec.rotation)])
    a, b, sep = spec.a_lv, spec.b_lv, spec.septum
    lv_apex = np.array([spec.apex_x + spec.lv_shift, spec.apex_y]) + spec.lv_apex_depth * d
    origin = lv_apex - (sep + b) * n  # heart coordinates start on the septum line
    u_mv = (1 + VALVE_TRUNCATION) * a
    u_tv = u_mv - 0.12 * a  # the tricuspid annulus sits a little nearer the apex
    a_rv, b_rv = 0.78 * a, 0.68 * b
    a_la, b_la = 0.42 * a * spec.atria_scale, 0.95 * b * spec.atria_scale
    a_ra, b_ra = 0.40 * a * spec.atria_scale, 0.85 * b * spec.atria_scale
    gap = 0.6 * spec.wall  # the annulus ring between ventricle and atrium
    chambers = {
        "lv": (a, sep + b, a, b, u_mv),
        "rv": (u_tv - VALVE_TRUNCATION * a_rv, -(sep + b_rv), a_rv, b_rv, u_tv),
        "la": (u_mv + gap + a_la, 0.6 * sep + b_la, a_la, b_la, None),
        "ra": (u_tv + gap + a_ra, -(0.6 * sep + b_ra), a_ra, b_ra, None),
    }
    u_far = u_mv + gap + 2 * a_la + 2.5 * spec.wall
    return Anatomy(origin, d, n, chambers, u_mv, u_tv, u_far, spec.wall, sep)


def to_heart(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dx, dy = x - anat.origin[0], y - anat.origin[1]
    return dx * anat.d[0] + dy * anat.d[1], dx * anat.n[0] + dy * anat.n[1]


def to_image(anat: Anatomy, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return anat.origin[0] + u * anat.d[0] + v * anat.n[0], anat.origin[1] + u * anat.d[1] + v * anat.n[1]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def chamber_radius(anat: Anatomy, name: str, u: np.ndarray, v: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius (<= 1 inside) of a chamber padded by ``pad`` px; inf beyond its valve cut."""
    uc, vc, a, b, cut = anat.chambers[name]
    r = np.sqrt(((u - uc) / (a + pad)) ** 2 + ((v - vc) / (b + pad)) ** 2)
    if cut is not None:
        r = np.where(u <= cut + pad, r, np.inf)
    return r


def backward_map(anat: Anatomy, curves: dict[str, np.ndarray], t: int, x: np.ndarray, y: np.ndarray):
    """Frame ``t`` image points -> reference (ED) image points: the one deformation everything uses."""
    x = x - curves["drift_x"][t]
    y = y - curves["drift_y"][t]
    u, v = to_heart(anat, x, y)
    sl = curves["s_long"][t]
    u_valve = anat.u_mv * sl
    stretch = (anat.u_far - anat.u_mv) / (anat.u_far - u_valve)
    u_ref = np.where(u <= u_valve, u / sl, np.where(u <= anat.u_far, anat.u_mv + (u - u_valve) * stretch, u))
    # lateral: piecewise-linear, monotone maps per side of the septum (so the map never folds): the
    # mid-septum stays, endocardium moves in (ventricles) or out (atria), walls thicken as they move
    lv, rv, la, ra = (anat.chambers[k] for k in ("lv", "rv", "la", "ra"))
    vent = _lateral(v, _side_knots(anat.septum, 2 * lv[3], anat.wall, curves["s_lv"][t]),
                    _side_knots(anat.septum, 2 * rv[3], anat.wall, curves["s_rv"][t]))
    sa = curves["s_atria"][t]
    atria = _lateral(v, _side_knots(0.6 * anat.septum, 2 * la[3], 0.45 * anat.wall, sa, 0.0),
                     _side_knots(0.6 * anat.septum, 2 * ra[3], 0.45 * anat.wall, sa, 0.0))
    w_atria = _smoothstep((u - u_valve) / anat.wall + 0.5)
    w_far = 1 - _smoothstep((u - anat.u_far) / (2 * anat.wall))
    w_near = _smoothstep((u + 3 * anat.wall) / (2 * anat.wall))  # no lateral motion above the apex
    v_ref = v + ((1 - w_atria) * vent + w_atria * atria - v) * w_far * w_near
    return to_image(anat, u_ref, v_ref)


def _side_knots(septum: float, width: float, wall: float, scale: float,
                septal_share: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(frame knots, reference knots) of one side's lateral map, distances from the mid-septum.

    The chamber's width becomes ``width * scale``: ``septal_share`` of the change at the septal side,
    the rest at the free wall; the outer edge of the free wall moves 60 % as far as its inner edge (the wall thickens
    when the chamber narrows), and motion fades to nothing 2.5 walls further out.
    """
    change = width * (1 - scale)
    ref = np.array([0.0, septum, septum + width, septum + width + wall, septum + width + 3.5 * wall])
    free = 1 - septal_share
    frame = ref + np.array([0.0, septal_share * change, -free * change, -0.6 * free * change, 0.0])
    return frame, ref


def _lateral(v: np.ndarray, lv_side, rv_side) -> np.ndarray:
    """Reference lateral coordinate: the LV side's map for v >= 0, the mirrored RV side's for v < 0."""
    far = 1e4
    left = np.interp(v, np.append(lv_side[0], far), np.append(lv_side[1], far))
    right = -np.interp(-v, np.append(rv_side[0], far), np.append(rv_side[1], far))
    return np.where(v >= 0, left, right)


def forward_map(anat: Anatomy, curves: dict[str, np.ndarray], t: int, xr: np.ndarray, yr: np.ndarray,
                iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Reference points -> frame ``t`` points: Newton's method on ``B_t(p) = ref`` (finite-difference Jacobian).

    The point and its two nudged copies go through one :func:`backward_map` call: the map is element-wise,
    so the numbers are the same as three calls', and the renderer's few leaflet hinges per frame cost a
    third of the Python overhead.
    """
    x, y = xr.astype(np.float64).copy(), yr.astype(np.float64).copy()
    h = 0.25
    for _ in range(iterations):
        bx3, by3 = backward_map(anat, curves, t, np.stack([x, x + h, x]), np.stack([y, y, y + h]))
        (bx, bxx, bxy), (by, byx, byy) = bx3, by3
        ex, ey = bx - xr, by - yr
        j11, j21, j12, j22 = (bxx - bx) / h, (byx - by) / h, (bxy - bx) / h, (byy - by) / h
        det = j11 * j22 - j12 * j21
        det = np.where(np.abs(det) < 1e-6, 1e-6, det)
        x = x - (j22 * ex - j12 * ey) / det
        y = y - (-j21 * ex + j11 * ey) / det
    return x, y


def sector(spec: A4cSpec) -> np.ndarray:
    """The fan of this video (per-video angle and depth)."""
    yy, xx = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float64)
    r = np.hypot(xx - spec.apex_x, yy - spec.apex_y)
    theta = np.degrees(np.arctan2(xx - spec.apex_x, yy - spec.apex_y))
    return (r <= spec.sector_depth) & (np.abs(theta) <= spec.sector_half_deg) & (yy >= spec.apex_y)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return xx, yy


def label_masks(spec: A4cSpec, frames: list[int] | None = None) -> dict[str, np.ndarray]:
    """Boolean blood masks ``(T, H, W)`` of lv, rv, la, ra per frame (all frames by default)."""
    anat, curves = anatomy(spec), frame_curves(spec)
    xx, yy = _grid(spec.size)
    frames = range(spec.n_frames) if frames is None else frames
    out: dict[str, list[np.ndarray]] = {k: [] for k in anat.chambers}
    for t in frames:
        u, v = to_heart(anat, *backward_map(anat, curves, t, xx, yy))
        for k in anat.chambers:
            out[k].append(chamber_radius(anat, k, u, v) <= 1.0)
    return {k: np.stack(m) for k, m in out.items()}


def lv_volume_ml(spec: A4cSpec, mask: np.ndarray) -> float:
    """Method of discs on an LV mask: 20 discs along the LV's long axis (as echo labs and EchoNet)."""
    anat = anatomy(spec)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    u, _ = to_heart(anat, xs.astype(np.float64), ys.astype(np.float64))
    lo, hi = u.min(), u.max() + 1.0
    h = (hi - lo) / N_DISCS
    counts = np.bincount(np.minimum(((u - lo) / h).astype(int), N_DISCS - 1), minlength=N_DISCS)
    diameters = counts / h
    return float(np.sum(np.pi / 4 * diameters**2 * h) * PIXEL_SPACING_CM**3)


def phase_frames(spec: A4cSpec, lv_volume: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """True ED (largest LV volume) and ES (smallest) frames of every beat inside the clip.

    Each beat's ED is at an integer cycle phase and its ES ``SYSTOLE_FRACTION`` later; the extreme
    lies between two frames, so truth is whichever neighbour has the larger (smaller) LV.
    """
    if lv_volume is None:
        lv_volume = np.array([lv_volume_ml(spec, m) for m in label_masks(spec)["lv"]])
    area = lv_volume
    phi = frame_curves(spec)["phi"]
    ed, es = [], []
    for k in range(int(np.floor(phi.min())), int(np.ceil(phi.max())) + 1):
        for offset, out, pick in ((0.0, ed, np.argmax), (SYSTOLE_FRACTION, es, np.argmin)):
            target = k + offset
            after = np.nonzero(phi >= target)[0]
            if len(after) == 0 or after[0] == 0 and phi[0] > target:
                continue
            f = int(after[0])
            candidates = [c for c in (f - 1, f) if 0 <= c < spec.n_frames]
            out.append(candidates[int(pick(area[candidates]))])
    return sorted(set(ed)), sorted(set(es))


def lv_contour(spec: A4cSpec, t: int, n_points: int = 160) -> np.ndarray:
    """The true LV endocardial contour at frame ``t`` ``(N, 2)`` (x, y): reference ellipse cut at the valve, mapped."""
    anat, curves = anatomy(spec), frame_curves(spec)
    uc, vc, a, b, cut = anat.chambers["lv"]
    theta_cut = math.acos(min(1.0, (cut - uc) / a))
    theta = np.linspace(theta_cut, 2 * math.pi - theta_cut, n_points)
    u, v = uc + a * np.cos(theta), vc + b * np.sin(theta)
    xr, yr = to_image(anat, u, v)
    x, y = forward_map(anat, curves, t, xr, yr)
    return np.stack([x, y], axis=1)


def tracing_lines(spec: A4cSpec, t: int, n_chords: int) -> list[tuple[float, float, float, float]]:
    """Long axis (apex -> mitral annulus midpoint) then ``n_chords`` perpendicular chords of the true contour."""
    pts = lv_contour(spec, t)
    base_mid = (pts[0] + pts[-1]) / 2
    along = pts - base_mid
    axis_dir = along[np.argmax(np.hypot(along[:, 0], along[:, 1]))]
    apex = base_mid + axis_dir
    length = float(np.hypot(*axis_dir))
    d = axis_dir / length
    nrm = np.array([-d[1], d[0]])
    s = (pts - base_mid) @ d
    w = (pts - base_mid) @ nrm
    lines = [(*apex, *base_mid)]
    closed_s, closed_w = np.append(s, s[0]), np.append(w, w[0])
    for f in np.linspace(0, 1, n_chords + 2)[1:-1]:
        target = f * length
        crossings = []
        for i in range(len(closed_s) - 1):
            s0, s1 = closed_s[i], closed_s[i + 1]
            if (s0 - target) * (s1 - target) <= 0 and s0 != s1:
                crossings.append(closed_w[i] + (target - s0) / (s1 - s0) * (closed_w[i + 1] - closed_w[i]))
        lo, hi = (min(crossings), max(crossings)) if crossings else (0.0, 0.0)
        mid = base_mid + target * d
        lines.append((*(mid + lo * nrm), *(mid + hi * nrm)))
    return [tuple(round(float(v), 3) for v in line) for line in lines]


def true_flow(spec: A4cSpec, frame_a: int, frame_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact forward flow ``(H, W, 2)`` from frame a to b, and the mask where it is checked.

    The flow is exact everywhere (``F_b(B_a(x)) - x``); the mask keeps the heart's walls and septum
    inside the fan, the only place where the image shows the motion (blood pools are nearly black).
    """
    anat, curves = anatomy(spec), frame_curves(spec)
    xx, yy = _grid(spec.size)
    xr, yr = backward_map(anat, curves, frame_a, xx, yy)
    xb, yb = forward_map(anat, curves, frame_b, xr, yr)
    flow = np.stack([xb - xx, yb - yy], axis=-1).astype(np.float32)
    u, v = to_heart(anat, xr, yr)
    blood = np.zeros_like(u, dtype=bool)
    walls = np.zeros_like(u, dtype=bool)
    for k in ("lv", "rv"):
        blood |= chamber_radius(anat, k, u, v) <= 1.0
        walls |= chamber_radius(anat, k, u, v, pad=anat.wall) <= 1.0
    return flow, walls & ~blood & sector(spec)


# --- image formation --------------------------------------------------------------------------


def _lowpass_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = cv2.GaussianBlur(rng.standard_normal(shape), (0, 0), sigma)
    return field / (field.std() + 1e-9)


def reference_echogenicity(spec: A4cSpec, rng: np.random.Generator) -> np.ndarray:
    """Amplitude echogenicity of the ED reference: dim tissue, bright walls (specular where they face
    the beam, dropping out where they run along it), near-black blood pools, a bright pericardium."""
    anat = anatomy(spec)
    xx, yy = _grid(spec.size)
    u, v = to_heart(anat, xx, yy)
    tissue = TISSUE * np.exp(0.45 * _lowpass_noise(rng, xx.shape, 5.0))
    blood = np.zeros_like(u)
    myo = np.zeros_like(u)
    for k in anat.chambers:
        pad = anat.wall if k in ("lv", "rv") else 0.45 * anat.wall
        blood = np.maximum(blood, np.clip((1.0 - chamber_radius(anat, k, u, v)) * 12 + 0.5, 0, 1))
        myo = np.maximum(myo, np.clip((1.0 - chamber_radius(anat, k, u, v, pad=pad)) * 10, 0, 1))
    smooth_blood = cv2.GaussianBlur(blood, (0, 0), 2.0)
    gy, gx = np.gradient(smooth_blood)
    beam_x, beam_y = xx - spec.apex_x, yy - spec.apex_y
    norm = np.hypot(gx, gy) * np.hypot(beam_x, beam_y) + 1e-9
    facing = np.abs(gx * beam_x + gy * beam_y) / norm  # 1 where the wall faces the probe: specular
    dropout = np.clip(0.5 + 0.5 * _lowpass_noise(rng, xx.shape, 7.0), 0, 1)  # partial dropout of walls along beams
    wall_gain = (0.35 + 0.65 * facing) * (1 - 0.75 * dropout * (1 - facing))
    myo_amp = 0.3 * MYOCARDIUM * np.exp(0.35 * _lowpass_noise(rng, xx.shape, 3.0)) * (0.4 + 1.2 * wall_gain)
    shell = myo * (1 - blood)
    peri = np.clip(1 - np.abs(np.sqrt(np.maximum(shell, 0)) - 0.15) * 4, 0, 1) * (shell > 0) * (shell < 0.5)
    amp = tissue * (1 - shell) + myo_amp * shell + 0.5 * MYOCARDIUM * peri * facing
    return amp * (1 - blood) + BLOOD * blood


def _leaflets(spec: A4cSpec, anat: Anatomy, curves: dict, t: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mitral and tricuspid leaflet segments (frame image coordinates) at frame ``t``."""
    hinges_u, hinges_v, info = [], [], []
    for k in ("lv", "rv"):
        uc, vc, a, b, cut = anat.chambers[k]
        half = b * math.sqrt(max(0.0, 1 - ((cut - uc) / a) ** 2))
        for side in (-1, 1):
            hinges_u.append(cut + 0.3 * anat.wall)
            hinges_v.append(vc + side * half)
            info.append((side, half))
    xr, yr = to_image(anat, np.array(hinges_u), np.array(hinges_v))
    hx, hy = forward_map(anat, curves, t, xr, yr)
    angle = curves["o"][t] * math.radians(75)
    segs = []
    for (side, half), x, y in zip(info, hx, hy):
        length = (0.62 if side < 0 else 0.5) * 2 * half * 0.95  # anterior leaflet longer than posterior
        closed_dir = -side * anat.n * math.cos(0.25) + anat.d * math.sin(0.25)  # towards the centre, bowed down
        direction = math.cos(angle) * closed_dir - math.sin(angle) * anat.d  # opening swings them into the ventricle
        direction = direction / np.linalg.norm(direction)
        segs.append((np.array([x, y]), np.array([x, y]) + length * direction))
    return segs


def render(spec: A4cSpec) -> np.ndarray:
    """Render the video ``(T, H, W)`` uint8 deterministically from its spec."""
    rng = np.random.default_rng(spec.seed)
    size = spec.size
    anat, curves = anatomy(spec), frame_curves(spec)
    amp_ref = reference_echogenicity(spec, rng).astype(np.float32)
    scatter = (rng.standard_normal((size, size, 2)) * amp_ref[..., None]).astype(np.float32)
    xx, yy = _grid(size)
    fan = sector(spec)
    # polar grid of the scan lines: rows = depth, columns = beam angle
    r_axis = np.linspace(0, spec.sector_depth, size)
    th_axis = np.radians(np.linspace(-spec.sector_half_deg, spec.sector_half_deg, POLAR_THETA_BINS))
    rr, tt = np.meshgrid(r_axis, th_axis, indexing="ij")
    to_polar = ((spec.apex_x + rr * np.sin(tt)).astype(np.float32), (spec.apex_y + rr * np.cos(tt)).astype(np.float32))
    r_pix = np.hypot(xx - spec.apex_x, yy - spec.apex_y)
    th_pix = np.arctan2(xx - spec.apex_x, yy - spec.apex_y)
    from_polar = ((np.degrees(th_pix) + spec.sector_half_deg) / (2 * spec.sector_half_deg) * (POLAR_THETA_BINS - 1),
                  r_pix / spec.sector_depth * (size - 1))
    from_polar = (from_polar[0].astype(np.float32), from_polar[1].astype(np.float32))
    depth = rr / spec.sector_depth
    depth_db = spec.gain_db + spec.tgc_slope_db * depth + 2.0 * _lowpass_noise(rng, (size, 1), 12.0)
    haze_amp = spec.haze * TISSUE * np.exp(-depth / 0.15)
    noise_amp = MYOCARDIUM * 10 ** (NOISE_DB / 20) * spec.noise_std / 10.0
    # unit-amplitude white scatterers through the PSF keep unit RMS: undo the blur's energy loss
    psf_gain = math.sqrt(4 * math.pi * PSF_LATERAL_BINS * PSF_AXIAL_PX)
    marks = _scanner_marks(spec, rng, fan)
    frames = np.empty((spec.n_frames, size, size), dtype=np.uint8)
    for t in range(spec.n_frames):
        bx, by = backward_map(anat, curves, t, xx, yy)
        field = cv2.remap(scatter, bx.astype(np.float32), by.astype(np.float32), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
        valves = np.zeros((size, size), np.float32)
        for p, q in _leaflets(spec, anat, curves, t):
            cv2.line(valves, (int(round(p[0] * 4)), int(round(p[1] * 4))), (int(round(q[0] * 4)), int(round(q[1] * 4))),
                     1.0, thickness=2, lineType=cv2.LINE_AA, shift=2)
        field += (valves * 1.3 * MYOCARDIUM)[..., None] * rng.standard_normal((size, size, 2)).astype(np.float32)
        polar = cv2.remap(field, *to_polar, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        polar = cv2.GaussianBlur(polar, (0, 0), sigmaX=PSF_LATERAL_BINS, sigmaY=PSF_AXIAL_PX) * psf_gain
        haze = haze_amp * (0.8 + 0.4 * rng.random())
        noise = noise_amp * rng.standard_normal(polar.shape)
        env = np.hypot(polar[..., 0] + haze * rng.standard_normal(depth.shape) + noise[..., 0],
                       polar[..., 1] + noise[..., 1])
        db = 20 * np.log10(env / MYOCARDIUM + 1e-6) + depth_db
        gray = np.clip((db - FLOOR_DB) / DYNAMIC_RANGE_DB * 255.0, 0, 255).astype(np.float32)
        img = cv2.remap(gray, *from_polar, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        frames[t] = np.where(fan, img, marks).astype(np.uint8)
    return frames


def _scanner_marks(spec: A4cSpec, rng: np.random.Generator, fan: np.ndarray) -> np.ndarray:
    """Small bright static marks outside the fan, like the leftovers of de-identified scanner frames."""
    marks = np.zeros((spec.size, spec.size), np.float32)
    away = cv2.dilate(fan.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    free = np.argwhere(away[:-4, :-6])
    for k in rng.choice(len(free), size=int(rng.integers(2, 6)), replace=False):
        y, x = free[k]
        marks[y : y + int(rng.integers(1, 3)), x : x + int(rng.integers(1, 5))] = float(rng.uniform(120, 255))
    return np.where(away, marks, 0)


# --- population -------------------------------------------------------------------------------


def sample_spec(cfg, rng: np.random.Generator, name: str, split: str) -> A4cSpec:
    """Draw one video's properties from the EchoNet-like population in ``cfg`` (PhantomConfig)."""
    pop = cfg.a4c
    size = cfg.size
    if rng.random() < pop.low_ef_share:
        ef = rng.uniform(pop.low_ef.low, pop.low_ef.high)
    else:
        ef = rng.normal(pop.ef_mean, pop.ef_std)
    ef = float(np.clip(ef, cfg.ef_percent.low, cfg.ef_percent.high))
    fps = float(round(cfg.fps * (1 + rng.uniform(-pop.fps_jitter, pop.fps_jitter))))
    n_frames = int(rng.integers(int(cfg.n_frames.low), int(cfg.n_frames.high) + 1))
    hr = float(rng.uniform(cfg.heart_rate_bpm.low, cfg.heart_rate_bpm.high))
    n_beats = int(np.ceil(n_frames / fps * hr / 60.0)) + 3
    scale = size * (1 + rng.uniform(-pop.size_jitter, pop.size_jitter))
    half_deg = float(rng.uniform(34, 42))
    return A4cSpec(
        name=name, split=split, seed=int(rng.integers(0, 2**31)), n_frames=n_frames, fps=fps, size=size,
        hr_bpm=hr, ef=ef, phase0=float(rng.random()),
        beat_periods=tuple(float(v) for v in np.clip(1 + pop.beat_jitter * rng.standard_normal(n_beats), 0.7, 1.3)),
        beat_strokes=tuple(float(v) for v in np.clip(1 + pop.beat_jitter * rng.standard_normal(n_beats), 0.75, 1.2)),
        apex_x=float((size - 1) / 2 + rng.uniform(-0.02, 0.02) * size), apex_y=float(rng.uniform(0.0, 0.04) * size),
        sector_half_deg=half_deg, sector_depth=float(rng.uniform(0.9, 0.98) * size),
        lv_apex_depth=float(rng.uniform(0.09, 0.14) * scale), lv_shift=float(rng.uniform(0.0, 0.08) * size),
        rotation=float(rng.uniform(0.0, 0.2)), a_lv=float(rng.uniform(0.27, 0.31) * scale),
        b_lv=float(rng.uniform(0.135, 0.16) * scale), septum=float(rng.uniform(0.028, 0.036) * scale),
        wall=float(rng.uniform(0.055, 0.07) * scale), atria_scale=float(pop.atria_scale),
        gain_db=float(rng.uniform(-3.5, 0.5) + 20 * np.log10(rng.uniform(cfg.gain.low, cfg.gain.high))),
        tgc_slope_db=float(rng.uniform(-6, 4)), haze=float(rng.uniform(0.1, 0.5)),
        noise_std=float(rng.uniform(cfg.noise_std.low, cfg.noise_std.high)), drift_px=float(rng.uniform(0.3, 1.5)),
    )
