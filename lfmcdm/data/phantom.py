"""A phantom EchoNet-Dynamic with known truth: ``kind: a4c`` (default) or ``kind: ellipse``.

``a4c`` is the apical four-chamber phantom of :mod:`lfmcdm.data.phantom_a4c` (four chambers, valves,
atria in anti-phase, realistic image formation). ``ellipse`` is the original phantom described
below, kept byte-identical (same seed, same videos and tables) for comparisons and fast tests;
the functions here dispatch on the spec's type, so callers never need to know which one they hold.

The ellipse phantom: beating ellipsoid ventricles in an ultrasound sector.

Why a phantom: the pipeline must run end to end, offline, on a laptop, and its label-free
estimates (cardiac phase, optical flow, motion fidelity of generated videos) must be *measured*
against truth. Here every quantity is known exactly:

* the cavity is an ellipse scaled by ``s(t)`` about its centre, so the cavity area is
  ``pi*a*b*s(t)^2`` and volume ``~ s(t)^3`` (hence ``EF = 1 - s_min^3``);
* tissue texture (speckle) is a fixed field warped by the same deformation, so the true optical
  flow inside the ventricle region is a pure scaling: ``flow(p) = (p - c) * (s_b / s_a - 1)``;
* end-diastole (largest cavity) is at the start of each cycle, end-systole after the systolic
  fraction of the cycle.

Files are written in the exact EchoNet-Dynamic layout so ingest treats it like the real thing.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from lfmcdm.atomic import atomic_path, write_parquet
from lfmcdm.config import PhantomConfig
from lfmcdm.data import phantom_a4c
from lfmcdm.data.phantom_a4c import A4cSpec
from lfmcdm.data.echonet import FILELIST_COLUMNS, TRACING_COLUMNS
from lfmcdm.data.video_io import write_gray
from lfmcdm.parallel import pmap

SYSTOLE_FRACTION = 0.35  # share of the cardiac cycle spent contracting (physiological ~1/3)
PIXEL_SPACING_CM = 0.16  # gives EchoNet-like volumes (~50-150 mL) for the cavity sizes below
N_CHORDS = 20  # EchoNet traces the long axis plus 20 perpendicular chords
DEFORM_FALLOFF = 1.8  # outer-wall radii over which tissue motion fades to zero


@dataclass(frozen=True)
class PhantomSpec:
    """Everything random about one phantom video; the video is a pure function of it."""

    name: str
    split: str
    seed: int
    n_frames: int
    fps: float
    size: int
    hr_bpm: float
    ef: float
    phase0: float
    cx: float
    cy: float
    a: float  # semi-axis along the long axis at end-diastole, pixels
    b: float  # short semi-axis at end-diastole, pixels
    angle: float  # tilt of the long axis from vertical, radians
    wall: float  # wall thickness, pixels
    gain: float
    noise_std: float

    @property
    def s_min(self) -> float:
        return (1.0 - self.ef / 100.0) ** (1.0 / 3.0)


def contraction(phi: np.ndarray) -> np.ndarray:
    """Contraction in [0, 1] over the cycle phase ``phi`` in [0, 1): 0 at ED, 1 at ES.

    Systole is a smooth half-cosine; diastole falls fast (rapid filling) then slowly (diastasis),
    never flat, so ED is a sharp maximum of cavity size that a label-free estimator can find.
    """
    phi = np.mod(phi, 1.0)
    systole = 0.5 * (1 - np.cos(np.pi * phi / SYSTOLE_FRACTION))
    u = (phi - SYSTOLE_FRACTION) / (1 - SYSTOLE_FRACTION)
    diastole = 0.4 * (1 + np.cos(np.pi * np.clip(u / 0.5, 0, 1))) + 0.2 * (1 - u)
    return np.where(phi < SYSTOLE_FRACTION, systole, diastole)


def scale_curve(spec: PhantomSpec) -> np.ndarray:
    """Cavity scale factor ``s(t)`` per frame (1 at end-diastole, ``s_min`` at end-systole)."""
    t = np.arange(spec.n_frames) / spec.fps
    phi = t * spec.hr_bpm / 60.0 + spec.phase0
    return 1.0 - (1.0 - spec.s_min) * contraction(phi)


def phase_frames(spec: PhantomSpec | A4cSpec) -> tuple[list[int], list[int]]:
    """True ED and ES frame indices (every cycle inside the video)."""
    if isinstance(spec, A4cSpec):
        return phantom_a4c.phase_frames(spec)
    period = 60.0 / spec.hr_bpm
    duration = (spec.n_frames - 1) / spec.fps
    s = scale_curve(spec)
    ed, es = [], []
    for k in range(-1, int(duration / period) + 3):
        for offset, out, pick in ((0.0, ed, np.argmax), (SYSTOLE_FRACTION, es, np.argmin)):
            t = (k + offset - spec.phase0) * period * spec.fps
            # the extreme lies between two frames: truth is whichever of them is more extreme
            candidates = [f for f in (int(np.floor(t)), int(np.ceil(t))) if 0 <= f < spec.n_frames]
            if candidates:
                out.append(candidates[int(pick(s[candidates]))])
    return sorted(set(ed)), sorted(set(es))


def _axes(spec: PhantomSpec) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (x, y) along the long axis and across it."""
    d = np.array([math.sin(spec.angle), math.cos(spec.angle)])
    n = np.array([math.cos(spec.angle), -math.sin(spec.angle)])
    return d, n


def _ellipse_radius(spec: PhantomSpec, x: np.ndarray, y: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius of points relative to the (padded) ED cavity ellipse."""
    d, n = _axes(spec)
    dx, dy = x - spec.cx, y - spec.cy
    along = dx * d[0] + dy * d[1]
    across = dx * n[0] + dy * n[1]
    return np.sqrt((along / (spec.a + pad)) ** 2 + (across / (spec.b + pad)) ** 2)


def deformation_weight(spec: PhantomSpec, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 inside the outer wall (pure scaling), fading smoothly to 0 in the surrounding tissue."""
    r = _ellipse_radius(spec, x, y, pad=spec.wall)
    u = np.clip((r - 1.0) / (DEFORM_FALLOFF - 1.0), 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * u))


def true_flow(spec: PhantomSpec | A4cSpec, frame_a: int, frame_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact forward flow ``(H, W, 2)`` from frame a to b, and the mask where it is exact.

    Inside the outer wall the motion is a pure scaling about the centre, so the flow of a pixel is
    known in closed form; outside we do not claim truth (the mask is False there).
    """
    if isinstance(spec, A4cSpec):
        return phantom_a4c.true_flow(spec, frame_a, frame_b)
    s = scale_curve(spec)
    yy, xx = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float64)
    ratio = s[frame_b] / s[frame_a]
    flow = np.stack([(xx - spec.cx) * (ratio - 1), (yy - spec.cy) * (ratio - 1)], axis=-1)
    # the region of pure scaling in frame a is the outer-wall ellipse scaled by s_a
    r = _ellipse_radius(spec, spec.cx + (xx - spec.cx) / s[frame_a], spec.cy + (yy - spec.cy) / s[frame_a], pad=spec.wall)
    return flow.astype(np.float32), (r <= 1.0) & sector_mask(spec.size)


def cavity_masks(spec: PhantomSpec | A4cSpec) -> np.ndarray:
    """Boolean LV cavity mask per frame ``(T, H, W)`` (the dark blood pool of the left ventricle)."""
    if isinstance(spec, A4cSpec):
        return phantom_a4c.label_masks(spec)["lv"]
    s = scale_curve(spec)
    yy, xx = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float64)
    masks = [
        _ellipse_radius(spec, spec.cx + (xx - spec.cx) / st, spec.cy + (yy - spec.cy) / st) <= 1.0 for st in s
    ]
    return np.stack(masks)


def sector_mask(size: int) -> np.ndarray:
    """The ultrasound fan: apex at the top centre, 76 degrees wide, reaching near the bottom."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    apex_x, apex_y = (size - 1) / 2, 0.02 * size
    r = np.hypot(xx - apex_x, yy - apex_y)
    theta = np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
    return (r <= 0.97 * size) & (np.abs(theta) <= 38.0) & (yy >= apex_y)


def _speckle(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Rayleigh-like speckle: magnitude of low-pass complex Gaussian noise, unit mean."""
    re = cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), sigma)
    im = cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), sigma)
    mag = np.hypot(re, im)
    return mag / mag.mean()


def _reference_image(spec: PhantomSpec, rng: np.random.Generator) -> np.ndarray:
    """Echogenicity at end-diastole: tissue speckle, a bright myocardial wall, a dark cavity."""
    size = spec.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    tissue = 0.6 + 0.8 * cv2.GaussianBlur(rng.random((size, size)), (0, 0), 6)  # slow echogenicity
    image = 70.0 * tissue * _speckle(rng, size, 1.0)
    r_cavity = _ellipse_radius(spec, xx, yy)
    r_wall = _ellipse_radius(spec, xx, yy, pad=spec.wall)
    wall = np.clip((1.0 - r_wall) * 8, 0, 1) * np.clip((r_cavity - 1.0) * 8, 0, 1)
    image = image * (1 + 1.3 * wall)
    blood = np.clip((1.0 - r_cavity) * 10 + 0.5, 0, 1)
    return image * (1 - 0.88 * blood)


def render(spec: PhantomSpec | A4cSpec) -> np.ndarray:
    """Render the video ``(T, H, W)`` uint8 deterministically from its spec."""
    if isinstance(spec, A4cSpec):
        return phantom_a4c.render(spec)
    rng = np.random.default_rng(spec.seed)
    reference = _reference_image(spec, rng).astype(np.float32)
    size = spec.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    weight = deformation_weight(spec, xx, yy)
    depth = np.hypot(xx - (size - 1) / 2, yy) / size
    attenuation = (spec.gain * (1.15 - 0.45 * depth)).astype(np.float32)
    fan = sector_mask(size)
    frames = np.empty((spec.n_frames, size, size), dtype=np.uint8)
    for t, st in enumerate(scale_curve(spec)):
        m = 1.0 + (1.0 / st - 1.0) * weight  # backward map: frame pixel -> reference point
        map_x = (spec.cx + (xx - spec.cx) * m).astype(np.float32)
        map_y = (spec.cy + (yy - spec.cy) * m).astype(np.float32)
        img = cv2.remap(reference, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img = img * attenuation * (0.9 + 0.1 * _speckle(rng, size, 1.5).astype(np.float32))  # speckle decorrelation
        img = img + rng.normal(0.0, spec.noise_std, img.shape)
        frames[t] = np.where(fan, np.clip(img, 0, 255), 0).astype(np.uint8)
    return frames


def sample_specs(cfg: PhantomConfig, seed: int) -> list[PhantomSpec] | list[A4cSpec]:
    """Draw the random properties of every phantom video (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    n = cfg.n_videos
    splits = _assign_splits(n, cfg.splits.TRAIN, cfg.splits.VAL, rng)
    if cfg.kind == "a4c":
        return [phantom_a4c.sample_spec(cfg, rng, f"0X{rng.integers(0, 2**62):016X}", splits[i]) for i in range(n)]
    size = cfg.size
    specs = []
    for i in range(n):
        a = rng.uniform(0.21, 0.27) * size
        specs.append(
            PhantomSpec(
                name=f"0X{rng.integers(0, 2**62):016X}",
                split=splits[i],
                seed=int(rng.integers(0, 2**31)),
                n_frames=int(rng.integers(int(cfg.n_frames.low), int(cfg.n_frames.high) + 1)),
                fps=cfg.fps,
                size=size,
                hr_bpm=float(rng.uniform(cfg.heart_rate_bpm.low, cfg.heart_rate_bpm.high)),
                ef=float(rng.uniform(cfg.ef_percent.low, cfg.ef_percent.high)),
                phase0=float(rng.random()),
                cx=float(size / 2 + rng.uniform(-0.06, 0.06) * size),
                cy=float(rng.uniform(0.46, 0.54) * size),
                a=float(a),
                b=float(a * rng.uniform(0.45, 0.6)),
                angle=float(rng.uniform(-0.3, 0.3)),
                wall=float(rng.uniform(0.05, 0.07) * size),
                gain=float(rng.uniform(cfg.gain.low, cfg.gain.high)),
                noise_std=float(rng.uniform(cfg.noise_std.low, cfg.noise_std.high)),
            )
        )
    return specs


def _assign_splits(n: int, train: float, val: float, rng: np.random.Generator) -> list[str]:
    n_val = int(round(n * val))
    n_train = int(round(n * train))
    if n >= 3:  # every split non-empty whenever possible, so downstream stages always have data
        n_val = max(1, n_val)
        n_train = min(max(1, n_train), n - n_val - 1)
    labels = ["TRAIN"] * n_train + ["VAL"] * n_val + ["TEST"] * (n - n_train - n_val)
    return [labels[i] for i in rng.permutation(n)]


def volumes(spec: PhantomSpec) -> tuple[float, float]:
    """EDV and ESV in mL by the area-length method on the ED/ES cavity (as echo labs measure)."""
    area_cm2 = math.pi * spec.a * spec.b * PIXEL_SPACING_CM**2
    length_cm = 2 * spec.a * PIXEL_SPACING_CM
    edv = 8.0 / (3.0 * math.pi) * area_cm2**2 / length_cm
    return edv, edv * spec.s_min**3


def tracing_lines(spec: PhantomSpec, scale: float) -> list[tuple[float, float, float, float]]:
    """Long axis then 20 perpendicular chords of the cavity at scale ``scale`` (EchoNet's format)."""
    d, n = _axes(spec)
    c = np.array([spec.cx, spec.cy])
    a, b = spec.a * scale, spec.b * scale
    lines = [(*(c - a * d), *(c + a * d))]
    for f in np.linspace(-1, 1, N_CHORDS + 2)[1:-1]:
        mid = c + f * a * d
        half = b * math.sqrt(1 - f * f)
        lines.append((*(mid - half * n), *(mid + half * n)))
    return [tuple(round(float(v), 3) for v in line) for line in lines]


def traced_frames(spec: PhantomSpec | A4cSpec) -> tuple[int, int]:
    """The ED frame and the ES frame an echocardiographer would trace (first full systole)."""
    ed, es = phase_frames(spec)
    return _first_beat(ed, es, spec.n_frames)


def _first_beat(ed: list[int], es: list[int], n_frames: int) -> tuple[int, int]:
    for e in ed:
        after = [s for s in es if s > e]
        if after:
            return e, after[0]
    return (ed[0] if ed else 0), (es[0] if es else n_frames - 1)


def write_dataset(cfg: PhantomConfig, out_dir: str | Path, seed: int, progress: bool = True) -> list:
    """Write a phantom EchoNet-Dynamic folder: FileList.csv, VolumeTracings.csv, Videos/, truth.parquet.

    truth.parquet: the spec's fields, ``kind``, ``ed_frames``/``es_frames`` (every beat, source
    frames), ``cavity_area`` = ``lv_area`` (LV pixels per frame) and ``lv_volume`` (mL per frame).
    """
    out = Path(out_dir)
    (out / "Videos").mkdir(parents=True, exist_ok=True)
    specs = sample_specs(cfg, seed)
    filelist, tracings, truth = [], [], []
    # every video renders from its own spec (and seed): worker processes make the same files, in order
    jobs = [(spec, str(out / "Videos")) for spec in specs]
    for rows, lines, facts in pmap(_write_video, jobs, cfg.workers, "phantom", progress):
        filelist.append(rows)
        tracings += lines
        truth.append(facts)
    _write_csv(out / "FileList.csv", FILELIST_COLUMNS, filelist)
    _write_csv(out / "VolumeTracings.csv", TRACING_COLUMNS, tracings)
    write_parquet(out / "truth.parquet", pa.Table.from_pylist(truth))
    return specs


def _write_video(job: tuple[PhantomSpec | A4cSpec, str]) -> tuple[list, list, dict]:
    """Render and write one video (a worker task); its FileList row, tracing rows and truth row."""
    spec, videos = job
    write_gray(Path(videos) / f"{spec.name}.avi", render(spec), spec.fps)
    rows, lines, facts = _a4c_tables(spec) if isinstance(spec, A4cSpec) else _ellipse_tables(spec)
    return rows, lines, {**asdict(spec), "kind": spec.kind if isinstance(spec, A4cSpec) else "ellipse", **facts}


def _ellipse_tables(spec: PhantomSpec) -> tuple[list, list, dict]:
    """FileList row, VolumeTracings rows and truth facts of one ellipse video (unchanged since v1)."""
    edv, esv = volumes(spec)
    row = [spec.name, round(spec.ef, 4), round(esv, 4), round(edv, 4), spec.size, spec.size,
           spec.fps, spec.n_frames, spec.split]
    ed_t, es_t = traced_frames(spec)
    s = scale_curve(spec)
    lines = []
    for frame in (ed_t, es_t):
        lines += [[f"{spec.name}.avi", *line, frame] for line in tracing_lines(spec, float(s[frame]))]
    ed, es = phase_frames(spec)
    area = cavity_masks(spec).sum(axis=(1, 2)).astype(np.float32).tolist()
    return row, lines, {"ed_frames": ed, "es_frames": es, "cavity_area": area, "lv_area": area,
                        "lv_volume": (edv * s**3).astype(np.float32).tolist()}


def _a4c_tables(spec: A4cSpec) -> tuple[list, list, dict]:
    """FileList row (EF from the traced beat's method-of-discs volumes, as EchoNet), tracings, truth facts."""
    lv = phantom_a4c.label_masks(spec)["lv"]
    area = lv.sum(axis=(1, 2)).astype(np.float32)
    volume = np.array([phantom_a4c.lv_volume_ml(spec, m) for m in lv], np.float32)
    ed, es = phantom_a4c.phase_frames(spec, volume)
    ed_t, es_t = _first_beat(ed, es, spec.n_frames)
    edv, esv = float(volume[ed_t]), float(volume[es_t])
    row = [spec.name, round(100 * (1 - round(esv, 4) / round(edv, 4)), 4), round(esv, 4), round(edv, 4),
           spec.size, spec.size, spec.fps, spec.n_frames, spec.split]
    lines = []
    for frame in (ed_t, es_t):
        lines += [[f"{spec.name}.avi", *line, frame] for line in phantom_a4c.tracing_lines(spec, frame, N_CHORDS)]
    return row, lines, {"ed_frames": ed, "es_frames": es, "cavity_area": area.tolist(), "lv_area": area.tolist(),
                        "lv_volume": volume.tolist()}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def load_truth(root: str | Path) -> dict[str, dict]:
    """The phantom's ground truth by file name (empty when the folder is not a phantom)."""
    path = Path(root) / "truth.parquet"
    if not path.exists():
        return {}
    import pyarrow.parquet as pq

    return {row["name"]: row for row in pq.read_table(path).to_pylist()}


def spec_from_truth(row: dict) -> PhantomSpec | A4cSpec:
    """Rebuild the spec of a phantom video from its truth row (to recompute true flow, masks...)."""
    if row.get("kind") == "a4c":
        fields = A4cSpec.__dataclass_fields__
        return A4cSpec(**{k: tuple(row[k]) if isinstance(row[k], list) else row[k] for k in fields})
    fields = PhantomSpec.__dataclass_fields__
    return PhantomSpec(**{k: row[k] for k in fields})
