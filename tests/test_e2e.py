"""End to end with the real tools: DVC reproduces the pipeline, MLflow (sqlite) records it, Prefect runs it.

No mocks: a temporary project holds dvc.yaml, a tiny params.yaml and links to the package code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from lfmcdm.config import _deep_merge

from .conftest import REPO, TINY

pytestmark = pytest.mark.e2e

E2E_OVERRIDES = TINY


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("lfmcdm", "flows"):
        (root / name).symlink_to(REPO / name)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    params = _deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), E2E_OVERRIDES, "e2e")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LFMCDM_PIPELINE_ID")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _stage_names() -> list[str]:
    return list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def _mlflow_runs(root: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_dvc_repro_end_to_end(tmp_path):
    root = _project(tmp_path)
    _run(["dvc", "init", "--no-scm", "-q"], root)
    _run(["dvc", "config", "core.analytics", "false"], root)
    _run(["dvc", "repro"], root)

    videos = pq.read_table(root / "data/interim/videos.parquet").to_pylist()
    assert len(videos) == E2E_OVERRIDES["phantom"]["n_videos"]
    ingest_metrics = json.loads((root / "metrics/ingest.json").read_text())
    assert ingest_metrics["videos_kept"] == len(videos) and ingest_metrics["videos_rejected"] == 0

    # nothing left to do, and a second repro re-runs nothing
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], root)
    again = _run(["dvc", "repro"], root)
    assert "Running stage" not in again
    assert "dvc.yaml" in _run(["dvc", "metrics", "show"], root) or "ingest" in _run(["dvc", "metrics", "show"], root)

    # MLflow: one parent run for this `dvc repro`, a child run per stage
    runs = _mlflow_runs(root)
    parents = [r for r in runs if r.data.tags.get("lfmcdm.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("lfmcdm.role") == "stage"]
    assert len(parents) == 1
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.tags["lfmcdm.stage"] for r in children) == sorted(_stage_names())


def test_prefect_flow_end_to_end(tmp_path):
    root = _project(tmp_path)
    env = _env()
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run([sys.executable, "-m", "flows.pipeline", "--params", "params.yaml", "--root", ".",
                           "--stages", *_stage_names()],
                          cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (root / "data/interim/videos.parquet").exists()
    runs = _mlflow_runs(root)
    children = [r for r in runs if r.data.tags.get("lfmcdm.role") == "stage"]
    parent_ids = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(parent_ids) == 1
    assert {r.data.tags["lfmcdm.pipeline_id"] for r in children} == {next(iter(
        r.data.tags["lfmcdm.pipeline_id"] for r in children))}
    assert next(iter(r.data.tags["lfmcdm.pipeline_id"] for r in children)).startswith("prefect-")
    assert sorted(r.data.tags["lfmcdm.stage"] for r in children) == sorted(_stage_names())
