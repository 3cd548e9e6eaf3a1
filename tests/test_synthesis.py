"""Bulk synthesis on the toy pipeline trained by `dvc repro`: resume after a kill, privacy, Dask = threads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from lfmcdm.config import load_params
from lfmcdm.data.tables import load_clip, read_videos
from lfmcdm.layout import Layout
from lfmcdm.pseudo.reid import embed_frames, load_reid
from lfmcdm.synth.cohort import identities
from lfmcdm.synth.privacy import nearest_similarity, real_threshold, video_embedding

from .conftest import subprocess_env

pytestmark = pytest.mark.e2e


def _params_file(root, name: str, torch_threads: int = 0, **synthesis) -> str:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["synthesis"].update(synthesis)
    params["train"]["torch_threads"] = torch_threads
    path = root / f"params_{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path.name


def _comparable(table) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "created_at"} for r in table.to_pylist()),
                  key=lambda r: r["sample_id"])


def test_killed_synthesis_resumes_without_duplicates(dvc_project_copy):
    root = dvc_project_copy
    params = _params_file(root, "resume", cohort="resume", n_videos=6, shard_size=1, batch_size=1)
    cmd = [sys.executable, "-m", "lfmcdm.cli", "stage", "synthesize", "--params", params, "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=root, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = root / "checkpoints/synthesize/resume"
    deadline = time.time() + 300
    while not list(work.glob("*/shards/00000.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "synthesis finished (or failed) before it could be killed"
    proc.kill()
    proc.wait()
    parts = sorted(work.glob("*/shards/*.parquet"))
    assert 1 <= len(parts) < 6 and not (root / "data/synthetic/resume").exists()
    first_mtime = parts[0].stat().st_mtime

    subprocess.run(cmd, cwd=root, env=subprocess_env(), check=True, capture_output=True)
    cohort = root / "data/synthetic/resume"
    manifest = pq.read_table(cohort / "manifest.parquet").to_pylist()
    assert sorted(r["sample_id"] for r in manifest) == [f"resume-{i:06d}" for i in range(6)]
    assert sorted(p.name for p in (cohort / "Videos").iterdir()) == sorted(f"{r['sample_id']}.avi" for r in manifest)
    assert parts[0].stat().st_mtime == first_mtime  # the finished shard was not redone
    assert not list(cohort.rglob("*.tmp"))


def test_privacy_filter_rejects_a_copied_training_video(dvc_project):
    layout = Layout(dvc_project)
    params = load_params(dvc_project / "params.yaml")
    train = identities(layout, ("TRAIN",))
    threshold = real_threshold(train, identities(layout, ("VAL", "TEST")), params.synthesis.privacy_percentile)
    reid = load_reid(layout.models / "reid")
    copied = read_videos(layout, splits=("TRAIN",))[0]["file_name"]
    score = nearest_similarity(video_embedding(embed_frames(reid, np.asarray(load_clip(layout, copied))))[None], train)
    assert score[0] > threshold  # a copy of a training patient is caught...
    heldout = read_videos(layout, splits=("TEST",))[0]["file_name"]
    other = nearest_similarity(video_embedding(embed_frames(reid, np.asarray(load_clip(layout, heldout))))[None], train)
    assert other[0] < score[0]  # ...and scores above an unseen patient


def test_cohort_flow_dask_matches_threads(dvc_project_copy, tmp_path, prefect_env):
    """The Prefect cohort flow on a local Dask cluster (2 workers) writes the same manifest as threads."""
    copy = tmp_path / "copy"
    shutil.copytree(dvc_project_copy, copy, symlinks=True)
    manifests = []
    for root, extra in ((dvc_project_copy, []), (copy, ["--dask"])):
        # Dask workers run torch on one thread; pin it for both runners so float reductions agree
        params = _params_file(root, "flow", torch_threads=1, cohort="flow", n_videos=4, shard_size=1)
        env = prefect_env
        proc = subprocess.run([sys.executable, "-m", "flows.cohort", "--params", params, *extra], cwd=root, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        manifests.append(_comparable(pq.read_table(root / "data/synthetic/flow/manifest.parquet")))
    assert len(manifests[0]) == 4
    assert manifests[0] == manifests[1]
