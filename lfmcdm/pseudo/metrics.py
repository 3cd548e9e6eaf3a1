"""How good are the pseudo labels? Measured against phantom truth, or VolumeTracings when present.

The references are only ever used here, to *measure* the label-free estimates; nothing the
pipeline produces depends on them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lfmcdm.data import phantom
from lfmcdm.pseudo.flow import end_point_error

WITHIN_FRAMES = 2  # the contract's tolerance: estimate within 2 frames of a true ED/ES


def _to_clip_frames(frames: list[int], row: dict) -> list[int]:
    """Source-frame indices (phantom truth) -> clip indices (clips are resampled to data.target_fps)."""
    return [int(round(f * row["fps"] / row["source_fps"])) for f in frames]


def reference_frames(row: dict, truth: dict[str, dict]) -> tuple[list[int], list[int]] | None:
    """True ED and ES clip frames of a video: every cycle of the phantom, else the traced pair, else None."""
    t = truth.get(row["file_name"])
    if t is not None:
        return _to_clip_frames(t["ed_frames"], row), _to_clip_frames(t["es_frames"], row)
    if row.get("traced_ed") is not None and row.get("traced_es") is not None:
        return [row["traced_ed"]], [row["traced_es"]]
    return None


def _nearest_error(estimate: int | None, references: list[int]) -> float:
    if estimate is None or not references:
        return float("inf")  # a flagged clip that has a reference counts as a miss, never silently drops out
    return float(min(abs(estimate - r) for r in references))


def phase_metrics(rows: list[dict], truth: dict[str, dict]) -> dict[str, float | None]:
    """Share of videos whose ED (ES) estimate is within 2 frames of the nearest true one, and median errors."""
    ed_err, es_err = [], []
    for row in rows:
        ref = reference_frames(row, truth)
        if ref is None:
            continue
        ed_err.append(_nearest_error(row.get("ed_frame"), ref[0]))
        es_err.append(_nearest_error(row.get("es_frame"), ref[1]))
    if not ed_err:
        return {"phase_ed_within2_share": None, "phase_es_within2_share": None,
                "phase_ed_median_error": None, "phase_es_median_error": None}
    ed, es = np.array(ed_err), np.array(es_err)
    return {
        "phase_ed_within2_share": float((ed <= WITHIN_FRAMES).mean()),
        "phase_es_within2_share": float((es <= WITHIN_FRAMES).mean()),
        "phase_ed_median_error": float(np.median(ed)),
        "phase_es_median_error": float(np.median(es)),
    }


def flow_metrics(
    rows: list[dict], truth: dict[str, dict], load_flow: Callable[[str], np.ndarray]
) -> dict[str, float | None]:
    """Mean end-point error of the ED->ES pseudo flow vs the phantom's exact flow (and of zero flow).

    Averaged per video (each video weighs the same) over the pixels where the truth is exact.
    Null without phantom truth.
    """
    epe, zero = [], []
    for row in rows:
        t = truth.get(row["file_name"])
        if t is None or row.get("ed_frame") is None:
            continue
        spec = phantom.spec_from_truth(t)
        scale = row["source_fps"] / row["fps"]
        a, b = int(round(row["ed_frame"] * scale)), int(round(row["es_frame"] * scale))
        if not (0 <= a < spec.n_frames and 0 <= b < spec.n_frames):
            continue
        true, mask = phantom.true_flow(spec, a, b)
        flow = np.asarray(load_flow(row["file_name"])[0], dtype=np.float32)
        if flow.shape != true.shape:
            continue
        epe.append(end_point_error(flow, true, mask))
        zero.append(end_point_error(np.zeros_like(true), true, mask))
    if not epe:
        return {"flow_epe": None, "flow_epe_zero_baseline": None}
    return {"flow_epe": float(np.nanmean(epe)), "flow_epe_zero_baseline": float(np.nanmean(zero))}
