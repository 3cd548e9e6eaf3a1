"""Plot data files (CSV) for ``dvc plots``: the same numbers the report's figures draw."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lfmcdm.atomic import atomic_path
from lfmcdm.eval.motion_fidelity import CurveMatch

CAVITY_CSV = "cavity_curves.csv"
EF_CSV = "ef_predictions.csv"
PRIVACY_CSV = "privacy_histogram.csv"


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / max(float(x.std()), 1e-12)


def _cell(value) -> object:
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else round(float(value), 6)


def write_cavity_curves(directory: Path, matches: list[tuple[str, CurveMatch, CurveMatch | None]]) -> Path:
    """Long format: sample_id, time_s, donor_area_z, generated_area_z (z-scored per sample)."""
    rows = []
    for sample_id, own, _ in matches:
        if len(own.times) == 0:
            continue
        for t, d, g in zip(own.times, _z(own.donor), _z(own.generated)):
            rows.append([sample_id, _cell(t), _cell(d), _cell(g)])
    return _write_csv(directory / CAVITY_CSV, ["sample_id", "time_s", "donor_area_z", "generated_area_z"], rows)


def write_ef_predictions(directory: Path, names: list[str], truth: np.ndarray,
                         predictions: dict[str, np.ndarray | None]) -> Path:
    """file_name, ef_true, ef_pred_<set> per real test video (empty where a set could not be trained)."""
    sets = list(predictions)
    rows = [[n, _cell(t), *[_cell(None if predictions[s] is None else predictions[s][i]) for s in sets]]
            for i, (n, t) in enumerate(zip(names, truth))]
    return _write_csv(directory / EF_CSV, ["file_name", "ef_true", *[f"ef_pred_{s}" for s in sets]], rows)


def write_privacy_histogram(directory: Path, synthetic: np.ndarray, heldout: np.ndarray | None, bins: int) -> Path:
    """bin_center, synthetic, heldout_real: counts of nearest-training similarity per bin."""
    values = [v for v in (synthetic, heldout) if v is not None and len(v)]
    rows: list[list] = []
    if values:
        edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
        syn = np.histogram(synthetic, edges)[0] if synthetic is not None and len(synthetic) else np.zeros(bins, int)
        held = np.histogram(heldout, edges)[0] if heldout is not None and len(heldout) else np.zeros(bins, int)
        centers = 0.5 * (edges[:-1] + edges[1:])
        rows = [[_cell(c), int(s), int(h)] for c, s, h in zip(centers, syn, held)]
    return _write_csv(directory / PRIVACY_CSV, ["bin_center", "synthetic", "heldout_real"], rows)
