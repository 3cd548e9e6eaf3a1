"""Label-free *pseudo* VolumeTracings for synthetic videos, in EchoNet-Dynamic's format.

EchoNet's loaders need two traced frames per video (end-systole and end-diastole), each traced
as the LV long axis followed by 20 chords perpendicular to it. No person traced a synthetic
video, so both ingredients come from the pipeline's own label-free estimators:

- the ED and ES frames from the label-free phase estimator (:func:`lfmcdm.data.phase.estimate_phase`,
  the one ingest uses on real clips), called through its public API only;
- the outline from the label-free LV cavity estimate (:func:`lfmcdm.eval.cavity.cavity_mask` inside
  the clip's label-free LV region, the one evaluation measures cavity-area curves with): its
  principal axis is the long axis, and each chord spans the mask across the axis.

A video on which either estimate fails, or where the cavity at "ED" is not larger than at "ES"
(the two estimators disagree), gets no tracing and says why: EchoNet drops videos without two
traced frames, which is better than teaching a segmentation model swapped labels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfmcdm.atomic import atomic_path
from lfmcdm.data.echonet import TRACING_COLUMNS
from lfmcdm.data.phantom import N_CHORDS
from lfmcdm.data.phase import estimate_phase
from lfmcdm.eval.cavity import cavity_mask, clip_regions
from lfmcdm.settings.diffusion import CavityConfig
from lfmcdm.settings.pseudo import PhaseConfig

OK = "ok"
Line = tuple[float, float, float, float]


@dataclass(frozen=True)
class PseudoTracing:
    """Pseudo ED/ES frame indices, a status (``ok`` or why not), and rows ``(X1, Y1, X2, Y2, Frame)``."""

    ed: int | None
    es: int | None
    status: str
    rows: list[tuple[float, float, float, float, int]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == OK


def outline_lines(mask: np.ndarray, n_chords: int = N_CHORDS) -> list[Line] | None:
    """Long axis then ``n_chords`` perpendicular chords of a boolean cavity mask (pixel coordinates, x = column).

    The long axis is the mask's principal axis, spanning its extent (pixel edges included); chords
    sit at evenly spaced positions strictly inside it and reach across the pixels they pass through.
    X1/Y1 of every chord lie on the same side, so chord ends form EchoNet's outline polygon.
    None when the mask has fewer pixels than lines (no outline can be drawn).
    """
    ys, xs = np.nonzero(mask)
    if len(xs) < n_chords + 1:
        return None
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    centre = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    axis = vectors[:, -1] * (1 if vectors[1, -1] >= 0 else -1)  # downwards: apex (top of the fan) first
    across = np.array([-axis[1], axis[0]])
    along, side = (points - centre) @ axis, (points - centre) @ across
    lo, hi = along.min() - 0.5, along.max() + 0.5
    lines: list[Line] = [_line(centre + lo * axis, centre + hi * axis)]
    for t in np.linspace(lo, hi, n_chords + 2)[1:-1]:
        band = np.abs(along - t) <= 0.5
        a, b = (side[band].min() - 0.5, side[band].max() + 0.5) if band.any() else (0.0, 0.0)
        mid = centre + t * axis
        lines.append(_line(mid + a * across, mid + b * across))
    return lines


def _line(p: np.ndarray, q: np.ndarray) -> Line:
    return tuple(round(float(v), 3) for v in (*p, *q))  # type: ignore[return-value]


def outline_area(lines: list[Line]) -> float:
    """Area of the polygon through the chord ends (EchoNet's trace: X1 ends, then X2 ends reversed)."""
    chords = np.asarray(lines[1:], np.float64)
    xs = np.concatenate([chords[:, 0], chords[::-1, 2]])
    ys = np.concatenate([chords[:, 1], chords[::-1, 3]])
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def pseudo_tracing(video: np.ndarray, fps: float, phase_cfg: PhaseConfig, cavity_cfg: CavityConfig) -> PseudoTracing:
    """ED/ES of ``video`` (uint8 ``(T, H, W)`` at ``fps``) and the outline of the cavity at each, or why not.

    Rows come ES first and ED last: EchoNet's loader takes the *last* traced frame of a video as
    the large (diastolic) one and the first as the small one.
    """
    video = np.asarray(video)
    phase = estimate_phase(video, fps, phase_cfg)
    if not phase.ok:
        return PseudoTracing(None, None, f"phase: {phase.status}")
    ed, es = int(phase.ed), int(phase.es)
    fan, region = clip_regions(video, cavity_cfg)
    outlines = {}
    for frame in (es, ed):
        lines = outline_lines(cavity_mask(video[frame], fan, region, cavity_cfg))
        if lines is None:
            return PseudoTracing(ed, es, f"no cavity found at frame {frame}")
        outlines[frame] = lines
    if outline_area(outlines[ed]) <= outline_area(outlines[es]):
        return PseudoTracing(ed, es, "cavity at ED not larger than at ES")
    rows = [(*line, frame) for frame in (es, ed) for line in outlines[frame]]
    return PseudoTracing(ed, es, OK, rows)


def write_tracings(path: Path, videos: list[tuple[str, list]]) -> None:
    """VolumeTracings.csv: header exactly EchoNet's, FileName *with* ``.avi`` (as EchoNet writes it)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRACING_COLUMNS)
        for sample_id, rows in videos:
            for x1, y1, x2, y2, frame in rows:
                writer.writerow([f"{sample_id}.avi", x1, y1, x2, y2, int(frame)])
