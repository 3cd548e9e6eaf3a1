"""Bulk synthesis on the toy pipeline trained by `dvc repro`: resume after a kill, privacy, Dask = threads,
the cohort as a dataset product (quarantine, EchoNet-readable, data card), scheduled daily cohorts, sharing."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from lfmcdm.config import load_params
from lfmcdm.data.tables import load_clip, read_videos
from lfmcdm.data.video_io import resample_indices
from lfmcdm.eval.privacy import PrivacyFilter
from lfmcdm.layout import Layout
from lfmcdm.models.reid import embed_frames, load_reid
from lfmcdm.synth import card
from lfmcdm.synth.cohort import QUARANTINE, assemble, prepare, run_shard
from lfmcdm.synth.plan import SampleSpec

from .conftest import REPO, run_ok, subprocess_env
from .echonet_rules import EchoRules
from .test_e2e import _prefect_post

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
    shipped = [r for r in manifest if r["privacy_pass"]]
    assert sorted(p.name for p in (cohort / "Videos").iterdir()) == sorted(f"{r['sample_id']}.avi" for r in shipped)
    assert parts[0].stat().st_mtime == first_mtime  # the finished shard was not redone
    assert not list(cohort.rglob("*.tmp"))


def test_shards_in_two_threads_make_the_same_cohort_as_one(dvc_project_copy):
    """Shards run side by side in threads (synthesis.workers) share the loaded models: nothing a shard
    draws may depend on another's progress, so the cohort is byte for byte the one a single thread makes."""
    root = dvc_project_copy
    made = []
    for workers in (1, 2):
        params = _params_file(root, f"threads{workers}", cohort="threads", n_videos=4, shard_size=1, workers=workers)
        shutil.rmtree(root / "checkpoints/synthesize/threads", ignore_errors=True)
        shutil.rmtree(root / "data/synthetic/threads", ignore_errors=True)
        run_ok([sys.executable, "-m", "lfmcdm.cli", "stage", "synthesize", "--params", params, "--no-progress"], root)
        cohort = root / "data/synthetic/threads"
        videos = {p.name: p.read_bytes() for p in sorted((cohort / "Videos").iterdir())}
        made.append((_comparable(pq.read_table(cohort / "manifest.parquet")), videos))
    assert len(made[0][0]) == 4 and made[0][1]
    assert made[0] == made[1]


def test_privacy_filter_rejects_a_copied_training_video(dvc_project):
    layout = Layout(dvc_project)
    params = load_params(dvc_project / "params.yaml")
    privacy = PrivacyFilter.from_layout(layout, params.synthesis)
    reid = load_reid(layout.model_dir("reid"))
    copied = read_videos(layout, splits=("TRAIN",))[0]["file_name"]
    score = privacy.score(embed_frames(reid, np.asarray(load_clip(layout, copied))))
    assert score > privacy.threshold and not privacy.passes(score)  # a copy of a training patient is caught...
    heldout = read_videos(layout, splits=("TEST",))[0]["file_name"]
    other = privacy.score(embed_frames(reid, np.asarray(load_clip(layout, heldout))))
    assert other < score  # ...and scores above an unseen patient


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


# ---- the cohort as a dataset product -------------------------------------------------------
MODEL_FPS = 25.0  # the test double 'generates' at half the clips' rate, so export_fps (50) resamples


@dataclass
class ClipModels:
    """Test double of the *diffusion model only*: each sample 'is' a given real clip. Identity (ReID) is
    the pipeline's trained encoder, so the privacy filter and everything after it run for real."""

    reid: object
    clips: dict[str, np.ndarray]
    fps: float = MODEL_FPS
    versions: dict[str, str] = field(default_factory=lambda: {k: "clip-double" for k in ("mcdm", "vae", "mafe", "reid")})
    hashes: dict[str, str] = field(default_factory=dict)

    def generate(self, specs: list[SampleSpec]) -> list[np.ndarray]:
        return [self.clips[s.sample_id] for s in specs]

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return embed_frames(self.reid, frames)


def _at_model_fps(layout: Layout, name: str) -> np.ndarray:
    clip = np.asarray(load_clip(layout, name))
    fps = next(r["fps"] for r in read_videos(layout) if r["file_name"] == name)
    return clip[resample_indices(len(clip), fps, MODEL_FPS)]


def _make_cohort(root, name: str, n: int, clip_for, **synthesis) -> tuple[object, dict, ClipModels]:
    """A cohort through the real prepare -> shards -> assemble path, 'generated' by ``clip_for(i, spec)``."""
    overrides = {"synthesis": {"cohort": name, "n_videos": n, "shard_size": 2, **synthesis}}
    params = load_params(root / "params.yaml", overrides=overrides)
    layout = Layout(root)
    models = ClipModels(load_reid(layout.models / "reid"), {})
    job = prepare(params, root, models)
    models.clips = {spec.sample_id: clip_for(i, spec) for i, spec in enumerate(job.plan)}
    for k in job.pending():
        run_shard(job, k, models)
    return job, assemble(job), models


def _filelist(folder) -> list[dict]:
    with open(folder / "FileList.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_privacy_failing_sample_never_ships(dvc_project_copy):
    """Sample 0 copies its (TRAIN) appearance source's real video: quarantined, recorded, not shipped."""
    layout = Layout(dvc_project_copy)
    heldout = [r["file_name"] for r in read_videos(layout, splits=("VAL", "TEST"))]
    job, metrics, _ = _make_cohort(dvc_project_copy, "quarantine", 4, lambda i, spec: _at_model_fps(
        layout, spec.appearance_source if i == 0 else heldout[i % len(heldout)]), appearance_splits=["TRAIN"])
    cohort = layout.synthetic / "quarantine"
    manifest = {r["sample_id"]: r for r in pq.read_table(cohort / "manifest.parquet").to_pylist()}
    copy = manifest["quarantine-000000"]
    assert copy["privacy_score"] > job.threshold and not copy["privacy_pass"]
    assert copy["path"] is None and copy["pseudo_tracing"] == "not shipped (privacy)"
    shipped = {sid for sid, r in manifest.items() if r["privacy_pass"]}
    assert {p.name for p in (cohort / "Videos").iterdir()} == {f"{sid}.avi" for sid in shipped}
    assert {r["FileName"] for r in _filelist(cohort)} == shipped
    assert "quarantine-000000" not in (cohort / "VolumeTracings.csv").read_text()
    assert not list(cohort.rglob("quarantine-000000*"))  # nowhere in the shipped folder
    kept_out = job.work / QUARANTINE / "quarantine-000000.avi"
    assert kept_out.exists() and cohort not in kept_out.parents
    assert metrics["videos"] == 4 and metrics["videos_shipped"] == len(shipped)
    assert json.loads((cohort / "synthetic_manifest.json").read_text())["success"]


def test_cohort_reads_with_echonet_rules(dvc_project_copy):
    """A cohort of real beating (held-out) clips: EchoNet's loader rules find every video, two traced frames
    each, and EF / ED / ES index targets that match the manifest; the data card describes it."""
    layout = Layout(dvc_project_copy)
    heldout = [r["file_name"] for r in read_videos(layout, splits=("VAL", "TEST"))]
    clips = {name: _at_model_fps(layout, name) for name in heldout}
    job, metrics, _ = _make_cohort(dvc_project_copy, "echonet", 6, lambda i, spec: clips[heldout[i % len(heldout)]])
    cohort = layout.synthetic / "echonet"
    manifest = {r["sample_id"]: r for r in pq.read_table(cohort / "manifest.parquet").to_pylist()}
    filelist = _filelist(cohort)
    assert filelist and all(r["Split"] in ("TRAIN", "VAL", "TEST") for r in filelist)

    loader = EchoRules(cohort, split="all")
    assert len(loader.fnames) == len(loader.listed) == len(filelist)  # no FileName dropped for its extension
    traced = {sid for sid, r in manifest.items() if r["pseudo_tracing"] == "ok"}
    assert len(loader) == len(traced) >= 1
    assert metrics["videos_pseudo_traced"] == len(traced)
    for i in range(len(loader)):
        t = loader.targets(i)
        row = manifest[t["FileName"][:-4]]
        assert (t["LargeIndex"], t["SmallIndex"]) == (row["pseudo_ed_frame"], row["pseudo_es_frame"])
        assert t["EF"] == pytest.approx(row["donor_ef"], abs=1e-3)
        assert t["LargeTrace"] > t["SmallTrace"] > 0
        frames, fps = loader.video(i)
        listed = next(r for r in filelist if r["FileName"] == row["sample_id"])
        assert len(frames) == int(listed["NumberOfFrames"]) == row["n_frames"]
        assert fps == pytest.approx(float(listed["FPS"])) and float(listed["FPS"]) == 50.0  # the true rate
        source = clips[heldout[int(row["sample_id"][-6:]) % len(heldout)]]
        assert row["n_frames"] == round(len(source) * 50.0 / MODEL_FPS)  # resampled from the model's rate
        assert t["LargeIndex"] < row["n_frames"] and t["SmallIndex"] < row["n_frames"]
    per_split = {s: EchoRules(cohort, split=s.lower()) for s in ("TRAIN", "VAL", "TEST")}
    assert sum(len(d) for d in per_split.values()) == len(loader)

    data_card = card.read_card(cohort / "manifest.parquet")
    readme = (cohort / "README.md").read_text()
    assert data_card["counts"]["shipped"] == len(filelist) and data_card["counts"]["pseudo_traced"] == len(traced)
    assert data_card["counts"]["shipped_per_split"] == {s: sum(r["Split"] == s for r in filelist) for s in card.SPLITS}
    assert data_card["frame_rate"]["fps"] == 50.0 and data_card["frame_rate"]["model_fps"] == MODEL_FPS
    assert data_card["generation"]["plan_hash"] == job.key and data_card["source"]["data"] == "phantom"
    assert f"{len(filelist)} videos shipped" in readme and "PSEUDO labels" in readme


def test_cohort_push_and_pull_through_a_dvc_remote(dvc_project, tmp_path):
    """A cohort made outside `dvc repro` is versioned (`.dvc` file in git) and travels via a DVC remote."""
    origin, remote = tmp_path / "origin", tmp_path / "remote"
    origin.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
    run_ok([*git, "init", "-q"], origin)
    shutil.copy(REPO / ".gitignore", origin / ".gitignore")
    run_ok(["dvc", "init", "-q"], origin)
    run_ok(["dvc", "config", "core.analytics", "false"], origin)
    run_ok(["dvc", "remote", "add", "-d", "shared", str(remote)], origin)
    source = dvc_project / "data/synthetic/demo"
    shutil.copytree(source, origin / "data/synthetic/shared-1")

    run_ok([sys.executable, "-m", "lfmcdm.cli", "cohort", "push", "shared-1"], origin)
    assert (origin / "data/synthetic/shared-1.dvc").exists() and any(remote.rglob("*"))
    run_ok([*git, "add", ".gitignore", ".dvc/config", "data/synthetic/shared-1.dvc"], origin)  # not git-ignored
    run_ok([*git, "commit", "-q", "-m", "cohort shared-1"], origin)

    clone = tmp_path / "clone"
    run_ok([*git, "clone", "-q", str(origin), str(clone)], tmp_path)
    assert not (clone / "data/synthetic/shared-1").exists()
    run_ok([sys.executable, "-m", "lfmcdm.cli", "cohort", "pull", "shared-1"], clone)
    pulled = clone / "data/synthetic/shared-1"
    for path in source.rglob("*"):
        if path.is_file():
            assert (pulled / path.relative_to(source)).read_bytes() == path.read_bytes(), path

    # a cohort that does not match its manifest is not pushed
    broken = origin / "data/synthetic/broken"
    shutil.copytree(source, broken)
    shipped = [r for r in pq.read_table(broken / "manifest.parquet").to_pylist() if r["path"]]
    if shipped:
        (broken / shipped[0]["path"]).write_bytes(b"truncated")
        proc = subprocess.run([sys.executable, "-m", "lfmcdm.cli", "cohort", "push", "broken"], cwd=origin,
                              env=subprocess_env(), capture_output=True, text=True)
        assert proc.returncode == 2 and "does not match its manifest" in " ".join(proc.stderr.split())
        assert not (origin / "data/synthetic/broken.dvc").exists()


SCHEDULED_RUNS = """
import sys
from datetime import datetime
from prefect import get_client
from prefect.flow_engine import run_flow
from prefect.states import Scheduled
from flows.cohort import cohort

parameters = {"params_path": sys.argv[1], "root": ".", "daily": True, "n_videos": 2}
for day in sys.argv[2:]:
    with get_client(sync_client=True) as client:  # what a deployment's schedule creates...
        run = client.create_flow_run(cohort, parameters=parameters, state=Scheduled(scheduled_time=datetime.fromisoformat(day)))
    run_flow(cohort, flow_run=run, parameters=parameters)  # ...and what a worker then executes
    print("flow-run", run.id)
"""


def test_scheduled_daily_runs_make_different_cohorts(dvc_project_copy, prefect_env):
    """The real cohort flow, run as flow runs scheduled on two different (past: late-started) days."""
    params = _params_file(dvc_project_copy, "daily", cohort="daily", shard_size=2)
    today = datetime.now(timezone.utc).replace(hour=3, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=2), today - timedelta(days=1)]  # a future start would wait for its time
    proc = subprocess.run([sys.executable, "-c", SCHEDULED_RUNS, params, *(d.isoformat() for d in days)],
                          cwd=dvc_project_copy, env=prefect_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plans = []
    for day in days:
        name = f"daily-{day:%Y%m%d}"
        rows = pq.read_table(dvc_project_copy / f"data/synthetic/{name}/manifest.parquet").to_pylist()
        assert [r["sample_id"] for r in rows] == [f"{name}-{i:06d}" for i in range(2)]
        plans.append([(r["appearance_source"], r["motion_source"], r["seed"]) for r in rows])
    assert not {p[2] for p in plans[0]} & {p[2] for p in plans[1]}  # different seeds...
    assert plans[0] != plans[1]  # ...and different cohorts
    run_ids = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("flow-run ")]
    runs = _prefect_post(prefect_env["PREFECT_API_URL"], "flow_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}})
    assert sorted((r["expected_start_time"][:10], r["state_type"]) for r in runs) == [
        (f"{d:%Y-%m-%d}", "COMPLETED") for d in days]
