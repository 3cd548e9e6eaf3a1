"""End to end with the real tools: DVC reproduces the pipeline, MLflow (sqlite) records it, Prefect runs it.

No mocks: a temporary project holds dvc.yaml, a toy-scale params.yaml and links to the package code.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import av
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from lfmcdm.synth import card

from .conftest import PIPELINE, REPO, make_project, run_ok
from .echonet_rules import TRACING_HEADER, EchoRules

pytestmark = pytest.mark.e2e

METRIC_KEYS = {
    "ingest": {"videos_kept", "videos_rejected", "videos_per_s"},
    "pseudo_labels": {"phase_ed_within2_share", "phase_es_within2_share", "phase_swap_share", "flow_epe",
                      "flow_epe_zero_baseline", "reid_top1"},
    "mafe": {"val_psnr", "val_psnr_average_baseline", "val_ssim", "ef_probe_r2_motion", "ef_probe_r2_appearance"},
    "vae": {"val_psnr", "val_ssim"},
    "diffusion": {"train_loss", "motion_area_r"},
    "distill": {"train_loss", "student_gap", "untrained_gap", "teacher_few_step_gap", "motion_area_r"},
    "synthesis": {"videos", "privacy_pass_share", "videos_per_s", "videos_shipped", "videos_pseudo_traced"},
}


def _stage_names() -> list[str]:
    return list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def _mlflow_runs(root):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_dvc_pipeline_outputs(dvc_project):
    root = dvc_project
    videos = pq.read_table(root / "data/interim/videos.parquet").to_pylist()
    assert len(videos) == PIPELINE["phantom"]["n_videos"]
    for name, keys in METRIC_KEYS.items():
        metrics = json.loads((root / f"metrics/{name}.json").read_text())
        assert keys <= set(metrics), f"metrics/{name}.json lacks {keys - set(metrics)}"
    assert json.loads((root / "metrics/ingest.json").read_text())["videos_kept"] == len(videos)
    assert (root / "metrics/eval.json").exists()

    # the synthetic cohort downstream teams consume
    cohort = root / "data/synthetic/demo"
    manifest = pq.read_table(cohort / "manifest.parquet")
    assert manifest.num_rows == PIPELINE["synthesis"]["n_videos"]
    assert pl.read_parquet(cohort / "manifest.parquet").height == pd.read_parquet(cohort / "manifest.parquet").shape[0]
    with open(cohort / "FileList.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                                     "NumberOfFrames", "Split"]
        filelist = list(reader)
    passed = [r for r in manifest.to_pylist() if r["privacy_pass"]]
    assert {r["FileName"] for r in filelist} == {r["sample_id"] for r in passed}
    # only privacy-passing videos are shipped; the others are in the manifest alone
    assert {p.name for p in (cohort / "Videos").iterdir()} == {f"{r['sample_id']}.avi" for r in passed}
    assert all(r["path"] is None for r in manifest.to_pylist() if not r["privacy_pass"])
    for row in passed:
        with av.open(str(cohort / row["path"])) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
            assert float(stream.average_rate) == pytest.approx(row["fps"])
        assert len(frames) == row["n_frames"] and frames[0].width == row["width"]
        assert row["fps"] == 50.0  # synthesis.export_fps: EchoNet's rate, whatever the model's
    # EchoNet-compatible: its loader rules read the cohort (videos with two pseudo-traced frames)
    with open(cohort / "VolumeTracings.csv") as f:
        assert f.readline().strip().split(",") == TRACING_HEADER
    loader = EchoRules(cohort, split="all")
    assert len(loader) == sum(r["pseudo_tracing"] == "ok" for r in passed)
    for i in range(len(loader)):
        targets = loader.targets(i)
        assert targets["LargeIndex"] != targets["SmallIndex"] and targets["EF"] >= 0
    # the data card, for people and machines
    data_card = card.read_card(cohort / "manifest.parquet")
    assert data_card["counts"]["planned"] == manifest.num_rows and data_card["counts"]["shipped"] == len(passed)
    assert "PSEUDO labels" in (cohort / "README.md").read_text()
    assert (root / "reports/demo/index.html").exists()


def test_dvc_is_up_to_date_and_tracked(dvc_project):
    root = dvc_project
    assert "Data and pipelines are up to date" in run_ok(["dvc", "status"], root)
    # Python writes bytecode beside the code the stages depend on (lfmcdm/data, ...) as modules are first
    # imported, stage after stage: .dvcignore keeps it out of their hashes, or the pipeline never settles
    probe = root / "lfmcdm/data/__pycache__/dvcignore_probe.cpython-311.pyc"
    probe.parent.mkdir(exist_ok=True)
    probe.write_bytes(b"not code")
    try:
        assert "Data and pipelines are up to date" in run_ok(["dvc", "status"], root)
    finally:
        probe.unlink()
    assert "Running stage" not in run_ok(["dvc", "repro"], root)  # a second repro re-runs nothing
    shown = run_ok(["dvc", "metrics", "show", "--json"], root)
    assert "videos_kept" in shown and "val_psnr" in shown

    runs = _mlflow_runs(root)
    parents = [r for r in runs if r.data.tags.get("lfmcdm.role") == "parent"
               and r.data.tags["lfmcdm.pipeline_id"].startswith("dvc-")]
    assert len(parents) == 1  # one parent run for the whole `dvc repro`
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["lfmcdm.stage"] for r in children) == sorted(_stage_names())

    from mlflow import MlflowClient

    client = MlflowClient()
    for name in ("lfmcdm-reid", "lfmcdm-mafe", "lfmcdm-vae", "lfmcdm-mcdm"):
        assert client.search_model_versions(f"name = '{name}'"), f"{name} not registered"
    assert client.get_model_version_by_alias("lfmcdm-mcdm", "champion")


def test_prefect_flow_end_to_end(tmp_path, prefect_env):
    """The Prefect pipeline flow runs the same stages (here the data stages, to keep CI short)."""
    root = make_project(tmp_path / "project")
    env = prefect_env
    stages = ["phantom", "ingest", "pseudo_labels"]
    proc = subprocess.run([sys.executable, "-m", "flows.pipeline", "--params", "params.yaml", "--root", ".",
                           "--stages", *stages], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (root / "data/interim/videos.parquet").exists() and (root / "models/reid").exists()
    children = [r for r in _mlflow_runs(root) if r.data.tags.get("lfmcdm.role") == "stage"]
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1
    assert all(r.data.tags["lfmcdm.pipeline_id"].startswith("prefect-") for r in children)
    assert sorted(r.data.tags["lfmcdm.stage"] for r in children) == sorted(stages)
    # the run is on the Prefect server, completed, with one task run per stage
    flow_runs = _prefect_post(env["PREFECT_API_URL"], "flow_runs/filter",
                              {"flow_runs": {"id": {"any_": [children[0].data.tags["lfmcdm.pipeline_id"][8:]]}}})
    assert [r["state_type"] for r in flow_runs] == ["COMPLETED"]
    task_runs = _prefect_post(env["PREFECT_API_URL"], "task_runs/filter",
                              {"flow_runs": {"id": {"any_": [flow_runs[0]["id"]]}}})
    assert sorted(r["name"] for r in task_runs) == sorted(stages)


def _prefect_post(api: str, path: str, body: dict) -> list[dict]:
    import urllib.request

    request = urllib.request.Request(f"{api}/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())
