"""The cohort as a dataset product, without models: pseudo tracings, VolumeTracings.csv, the data card."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from lfmcdm.data import phantom
from lfmcdm.data.phase import estimate_phase
from lfmcdm.eval.privacy import PrivacyFilter
from lfmcdm.synth import card
from lfmcdm.synth.cohort import CohortJob
from lfmcdm.synth.tracings import outline_area, outline_lines, pseudo_tracing, write_tracings

from .conftest import tiny_params
from .echonet_rules import TRACING_HEADER, polygon_area


def _ellipse(angle_deg: float, a: float = 30, b: float = 14, size: int = 112) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (56, 50), (int(a), int(b)), angle_deg, 0, 360, 1, -1)
    return mask.astype(bool)


@pytest.mark.parametrize("angle", [90.0, 70.0, 120.0])
def test_outline_is_long_axis_plus_twenty_chords(angle):
    mask = _ellipse(angle)
    lines = outline_lines(mask)
    assert len(lines) == 21
    x1, y1, x2, y2 = lines[0]
    assert np.hypot(x2 - x1, y2 - y1) == pytest.approx(60, abs=2)  # the major axis, 2a
    direction = np.degrees(np.arctan2(y2 - y1, x2 - x1)) % 180
    assert min(abs(direction - angle), 180 - abs(direction - angle)) < 3
    assert y2 >= y1  # apex (top) first
    axis = np.array([x2 - x1, y2 - y1]) / np.hypot(x2 - x1, y2 - y1)
    for cx1, cy1, cx2, cy2 in lines[1:]:
        assert abs(np.dot([cx2 - cx1, cy2 - cy1], axis)) < 0.01  # perpendicular (to the 3 decimals written)
    assert outline_area(lines) == pytest.approx(mask.sum(), rel=0.08)
    assert polygon_area(lines) == pytest.approx(outline_area(lines))  # the polygon EchoNet draws
    assert outline_lines(np.zeros((112, 112), bool)) is None


@pytest.mark.parametrize("kind", ["ellipse", "a4c"])
def test_pseudo_tracing_of_a_beating_phantom(kind):
    # the outline is the dark pool inside the clip's label-free LV region (lfmcdm/eval/cavity.py)
    params = tiny_params(phantom={"kind": kind, "n_videos": 3, "n_frames": {"low": 100, "high": 100}})
    spec = phantom.sample_specs(params.phantom, 0)[0]
    video = phantom.render(spec)
    cavity_cfg = params.diffusion.motion_eval.cavity
    tracing = pseudo_tracing(video, spec.fps, params.pseudo.phase, cavity_cfg)
    phase = estimate_phase(video, spec.fps, params.pseudo.phase)
    assert tracing.ok and (tracing.ed, tracing.es) == (phase.ed, phase.es)
    frames = [row[4] for row in tracing.rows]
    assert frames == [tracing.es] * 21 + [tracing.ed] * 21  # ES first, ED last: EchoNet's Small/LargeIndex
    ed_area = outline_area([r[:4] for r in tracing.rows[21:]])
    es_area = outline_area([r[:4] for r in tracing.rows[:21]])
    true_area = phantom.cavity_masks(spec).sum(axis=(1, 2))
    assert ed_area > es_area
    assert true_area[tracing.ed] > true_area[tracing.es]  # the pseudo labels agree with the phantom's truth
    # the dark-pool estimate runs small: blurred bright walls cover the cavity's rim (2-3 px on the A4C
    # phantom's point-spread function, about a third of a 20 x 45 px LV)
    assert ed_area == pytest.approx(true_area[tracing.ed], rel=0.35 if kind == "ellipse" else 0.45)

    still = np.repeat(video[:1], len(video), axis=0)
    flagged = pseudo_tracing(still, spec.fps, params.pseudo.phase, cavity_cfg)
    assert not flagged.ok and flagged.status.startswith("phase:") and not flagged.rows


def test_volume_tracings_file_is_echonet_format(tmp_path):
    rows = [(1.0, 2.0, 3.0, 4.0, 7)] * 21 + [(5.0, 6.0, 7.0, 8.0, 3)] * 21
    write_tracings(tmp_path / "VolumeTracings.csv", [("c-000001", rows)])
    with open(tmp_path / "VolumeTracings.csv") as f:
        assert f.readline().strip() == ",".join(TRACING_HEADER)
    with open(tmp_path / "VolumeTracings.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == 42 and {r["FileName"] for r in written} == {"c-000001.avi"}
    assert [int(r["Frame"]) for r in written[::21]] == [7, 3]


def _job(params, root: Path) -> CohortJob:
    return CohortJob(params=params, root=root, plan=[], key="abc123", versions={"mcdm": "3", "vae": "2", "reid": "1", "mafe": "4"},
                     hashes={"mcdm": "m" * 64, "vae": "v" * 64, "reid": "r" * 64, "motion_bank": "b" * 64},
                     fps=16.0, privacy=PrivacyFilter(np.zeros((0, 1)), 0.87))


def _rows() -> list[dict]:
    made = datetime(2026, 11, 30, 3, tzinfo=timezone.utc)
    rows = []
    for i, (split, passed, traced) in enumerate([("TRAIN", True, True), ("TRAIN", True, False), ("VAL", True, True),
                                                 ("TEST", False, False), ("TRAIN", False, False)]):
        rows.append({"sample_id": f"c-{i:06d}", "split": split, "privacy_pass": passed, "created_at": made,
                     "pseudo_tracing": "ok" if traced else ("phase: blank clip" if passed else "not shipped (privacy)")})
    return rows


def test_data_card_counts_provenance_and_licence(tmp_path):
    params = tiny_params(synthesis={"cohort": "c"})
    data_card = card.build(_job(params, tmp_path), _rows())
    counts = data_card["counts"]
    assert (counts["planned"], counts["shipped"], counts["not_shipped_privacy"], counts["pseudo_traced"]) == (5, 3, 2, 2)
    assert counts["shipped_per_split"] == {"TRAIN": 2, "VAL": 1, "TEST": 0}
    assert counts["pseudo_traced_per_split"] == {"TRAIN": 1, "VAL": 1, "TEST": 0}
    assert data_card["generation"]["models"]["mcdm"] == {"registry_name": "lfmcdm-mcdm", "version": "3", "sha256": "m" * 64}
    assert data_card["privacy"]["pass_share"] == pytest.approx(0.6) and data_card["privacy"]["threshold"] == 0.87
    assert data_card["frame_rate"] == {"fps": 50.0, "model_fps": 16.0, "resampling": "nearest frame in time"}
    assert data_card["source"]["licence"] == card.PHANTOM_LICENCE
    text = card.render(data_card)
    assert "| TRAIN | 2 | 1 |" in text and "PSEUDO labels" in text and "0.8700" in text and "50 fps" in text

    real = tiny_params(data={"echonet_root": "data/raw/EchoNet-Dynamic"})
    assert "Research Use Agreement" in card.build(_job(real, tmp_path), _rows())["source"]["licence"]
    own = tiny_params(synthesis={"source_licence": "CC-BY-4.0 (our own scans)"})
    assert card.build(_job(own, tmp_path), _rows())["source"]["licence"] == "CC-BY-4.0 (our own scans)"
    native = tiny_params(synthesis={"export_fps": None})
    assert card.build(_job(native, tmp_path), _rows())["frame_rate"] == {"fps": 16.0, "model_fps": 16.0, "resampling": "none"}
