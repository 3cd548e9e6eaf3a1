"""DVC experiments tell the truth (issue 17): real `dvc exp run` in a Git copy of the toy trained project."""

from __future__ import annotations

import json
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest

from .conftest import REPO, run_ok, subprocess_env

pytestmark = pytest.mark.e2e

STEPS = 2  # the toy pipeline samples with 3 steps; the experiment changes it


def _git_project(dvc_project, dst):
    """The trained toy project as a Git repository with its DVC lock committed (what `dvc exp` needs).

    No mlflow.db, no mlartifacts: synthesis must run from the DVC-tracked models/ alone.
    """
    shutil.copytree(dvc_project, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "checkpoints", "tmp"))
    (dst / ".gitignore").write_text((REPO / ".gitignore").read_text())
    (dst / ".dvc/.gitignore").write_text("/config.local\n/tmp\n/cache\n")  # `dvc init --no-scm` wrote none
    run_ok(["dvc", "config", "core.no_scm", "false"], dst)  # the session project was `dvc init --no-scm`
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "test"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "base"]):
        run_ok(cmd, dst)
    tracked = run_ok(["git", "ls-files"], dst).split()
    assert "metrics/synthesis.json" in tracked and "dvc.lock" in tracked  # metrics travel with commits
    assert not any(f.startswith(".dvc/cache") for f in tracked)
    return dst


def _experiments(shown: list[dict]):
    """(params, metrics) of every experiment in `dvc exp show --json` (DVC 3 layout)."""
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = {k: v.get("data", {}) for k, v in (data.get("metrics") or {}).items()}
                yield rev.get("name"), params, metrics


def test_dvc_exp_run_set_param_reruns_synthesis_only_and_shows_metrics(dvc_project, tmp_path):
    root = _git_project(dvc_project, tmp_path / "exp")
    out = run_ok(["dvc", "exp", "run", "-S", f"synthesis.steps={STEPS}"], root)
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    assert ran == ["evaluate", "synthesize"], out[-3000:]
    manifest = pq.read_table(root / "data/synthetic/demo/manifest.parquet").to_pylist()
    assert {r["steps"] for r in manifest} == {STEPS}

    shown = _exp_show(root)
    exps = [(name, m) for name, p, m in _experiments(shown) if p.get("synthesis", {}).get("steps") == STEPS]
    assert exps, json.dumps(shown)[:3000]
    name, metrics = exps[0]
    assert metrics["metrics/synthesis.json"]["videos"] == len(manifest)
    assert "frechet_reid_frame_distance" in metrics["metrics/eval.json"]

    # editing a profile that is not active re-runs nothing
    # (edited with DVC's own -S writer: a YAML 1.1 round trip would turn the `no` DVC wrote into false)
    from dvc.utils.hydra import apply_overrides

    apply_overrides(str(root / "params.yaml"), ["profiles.quality.vae.steps=7"])
    assert "steps: 7" in (root / "params.yaml").read_text()
    assert "Data and pipelines are up to date" in run_ok(["dvc", "status"], root)
    run_ok(["git", "checkout", "--", "params.yaml"], root)

    # a temporary copy of the workspace (no mlflow.db there) reproduces too
    run_ok(["dvc", "exp", "run", "--temp", "-S", "synthesis.guidance_scale=1.75"], root)
    # ...and so does the queue (`--run-all` runs the queued experiments and waits for them)
    run_ok(["dvc", "exp", "run", "--queue", "-S", "synthesis.guidance_scale=1.25"], root)
    run_ok(["dvc", "exp", "run", "--run-all"], root)
    for scale in (1.75, 1.25):
        found = [m for _, p, m in _experiments(_exp_show(root))
                 if p.get("synthesis", {}).get("guidance_scale") == scale]
        assert found and found[0]["metrics/synthesis.json"]["videos"] == len(manifest), scale


def _exp_show(root) -> list[dict]:
    proc = subprocess.run(["dvc", "exp", "show", "--json"], cwd=root, env=subprocess_env(), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
