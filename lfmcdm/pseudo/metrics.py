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
    """True ED and ES clip frames of a video: every beat of the phantom, else the traced pair, else None.

    Phantom extremes on the clip's first or last frame are left out: from the clip alone nobody can
    tell that a curve starting (or ending) high is at a maximum there.
    """
    t = truth.get(row["file_name"])
    if t is not None:
        last = (row.get("n_frames") or 10**9) - 1
        keep = lambda frames: [f for f in _to_clip_frames(frames, row) if 0 < f < last]  # noqa: E731
        return keep(t["ed_frames"]), keep(t["es_frames"])
    if row.get("traced_ed") is not None and row.get("traced_es") is not None:
        return [row["traced_ed"]], [row["traced_es"]]
    return None


def estimated_frames(row: dict) -> tuple[list[int], list[int]]:
    """Label-free ED and ES frames of every beat (the single pair of older tables), empty when flagged."""
    if row.get("status", "ok") != "ok" or row.get("ed_frame") is None:
        return [], []
    eds, ess = row.get("ed_frames"), row.get("es_frames")
    if eds is None or ess is None:
        return [row["ed_frame"]], [row["es_frame"]]
    return list(eds), list(ess)


def _nearest_error(estimates: list[int], reference: int) -> float:
    if not estimates:
        return float("inf")  # a flagged clip that has a reference counts as a miss, never silently drops out
    return float(min(abs(e - reference) for e in estimates))


def _true_beats(eds: list[int], ess: list[int]) -> list[tuple[int, int]]:
    """(ED, ES) pairs of the reference: each ED with the first ES after it (a traced pair as it is)."""
    if len(eds) == 1 and len(ess) == 1:
        return [(eds[0], ess[0])]
    return [(e, next(s for s in ess if s > e)) for e in eds if any(s > e for s in ess)]


def is_swapped(true_ed: int, true_es: int, est_ed: list[int], est_es: list[int]) -> bool:
    """The estimate calls this beat's ED an ES and its ES an ED (each is nearer an estimate of the other kind)."""
    if not est_ed or not est_es:
        return False
    return (_nearest_error(est_es, true_ed) < _nearest_error(est_ed, true_ed)
            and _nearest_error(est_ed, true_es) < _nearest_error(est_es, true_es))


def phase_metrics(rows: list[dict], truth: dict[str, dict]) -> dict[str, float | None]:
    """Per beat: share of true EDs (ESs) with a label-free ED (ES) within 2 frames, median errors, swap share.

    Every beat of a clip counts: a reference frame is compared with the estimate of the beat that
    contains it (the nearest estimated ED or ES of the clip), so a correct ED of another beat is
    never a miss and a clip with one wrong beat loses only that beat. ``phase_swap_share`` is the
    share of reference beats whose ED and ES the estimate has the wrong way round.
    """
    ed_err, es_err, swaps = [], [], []
    for row in rows:
        ref = reference_frames(row, truth)
        if ref is None:
            continue
        est_ed, est_es = estimated_frames(row)
        ed_err += [_nearest_error(est_ed, f) for f in ref[0]]
        es_err += [_nearest_error(est_es, f) for f in ref[1]]
        swaps += [is_swapped(e, s, est_ed, est_es) for e, s in _true_beats(*ref)]
    if not ed_err or not es_err:
        return {"phase_ed_within2_share": None, "phase_es_within2_share": None, "phase_ed_median_error": None,
                "phase_es_median_error": None, "phase_swap_share": None, "phase_beats": 0}
    ed, es = np.array(ed_err), np.array(es_err)
    return {
        "phase_ed_within2_share": float((ed <= WITHIN_FRAMES).mean()),
        "phase_es_within2_share": float((es <= WITHIN_FRAMES).mean()),
        "phase_ed_median_error": float(np.median(ed)),
        "phase_es_median_error": float(np.median(es)),
        "phase_swap_share": float(np.mean(swaps)) if swaps else None,
        "phase_beats": len(swaps),
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
