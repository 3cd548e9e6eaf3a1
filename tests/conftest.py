"""Shared fixtures: tiny phantom datasets and params that keep every test fast on 2 CPU cores."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests track into their own tmp sqlite

import lfmcdm.tracking  # noqa: E402,F401 - reads the (now unset) user tracking URI before any test sets one
from lfmcdm.config import Params, parse_params  # noqa: E402
from lfmcdm.data import phantom  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TINY = {  # workers 1: a few tiny videos render faster in-process than spawned workers start
    "phantom": {"n_videos": 8, "n_frames": {"low": 40, "high": 48}, "workers": 1},
    "data": {"workers": 1, "min_frames": 16},
}


def tiny_params(**overrides) -> Params:
    """Params for tests: the repo defaults with a tiny phantom, plus ``overrides`` (nested dicts)."""
    from lfmcdm.config import _deep_merge

    raw = _deep_merge(TINY, overrides, "test")
    return parse_params(raw, source="<test params>")


#: The whole pipeline at toy scale: every stage runs for real, just briefly (seconds each on 2 cores).
PIPELINE = {
    "phantom": {"n_videos": 10, "n_frames": {"low": 40, "high": 48}, "heart_rate_bpm": {"low": 80, "high": 120},
                "workers": 1},
    "data": {"workers": 1, "min_frames": 16},
    "pseudo": {"reid": {"steps": 30, "batch_videos": 8}},
    "mafe": {"epochs": 2, "batch_size": 4, "probe_folds": 3},
    "vae": {"steps": 20, "val_frames": 32, "scale_frames": 64, "log_every": 5},
    "diffusion": {"steps": 6, "batch_size": 2, "log_every": 2, "val_videos": 2,
                  "motion_eval": {"videos": 1, "steps": 3}},
    "distill": {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "log_every": 2, "eval_videos": 1, "teacher_steps": 3},
    "synthesis": {"n_videos": 4, "steps": 3, "shard_size": 2, "batch_size": 2},
    "evaluate": {"ef": {"steps": 10, "min_test_videos": 2, "repeats": 2}},
}


def make_project(root: Path, overrides: dict | None = None) -> Path:
    """A throwaway project: links to the package code, the repo's dvc.yaml, params.yaml + ``overrides``."""
    import yaml

    from lfmcdm.config import _deep_merge

    root.mkdir(parents=True, exist_ok=True)
    for name in ("lfmcdm", "flows"):
        (root / name).symlink_to(REPO / name)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    (root / ".dvcignore").write_text((REPO / ".dvcignore").read_text())  # `dvc init` keeps it
    params = _deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), overrides or PIPELINE, "test")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def subprocess_env() -> dict[str, str]:
    """The test's environment for child processes: this venv first on PATH, no outside tracking server."""
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LFMCDM_PIPELINE_ID")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run_ok(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session", autouse=True)
def _no_home_state(tmp_path_factory):
    """Nothing a test runs reads or writes the user's HOME: Prefect and DVC get homes of their own."""
    prefect_home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    os.environ["PREFECT_HOME"] = str(prefect_home)
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def stop_process(proc, grace_s: float = 30) -> None:
    """Terminate a background server a test started; kill it if it does not stop within ``grace_s``."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> str:
    """One real Prefect API server for the session (``prefect server start`` on loopback); yields its URL.

    Every flow under test talks to it, as a deployment would; one flow subprocess per test starting its
    own ephemeral server was slow and flaky on 2 busy cores ("Timed out ... ephemeral Prefect API").
    """
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = subprocess_env()
    env.update(PREFECT_HOME=str(tmp_path_factory.mktemp("prefect-server")), PREFECT_UI_ENABLED="false",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = tmp_path_factory.mktemp("prefect-log") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, f"prefect server exited ({server.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"prefect server not healthy after 180 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        stop_process(server)


@pytest.fixture()
def prefect_env(prefect_server, tmp_path) -> dict[str, str]:
    """Environment for a flow subprocess: this venv, the session's Prefect server, a Prefect home of its own."""
    env = subprocess_env()
    env.update(PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "prefect-home"))
    return env


@pytest.fixture(scope="session")
def dvc_project(tmp_path_factory) -> Path:
    """The whole pipeline reproduced once by real `dvc repro` (shared by the e2e and synthesis tests)."""
    root = make_project(tmp_path_factory.mktemp("dvc") / "project")
    run_ok(["dvc", "init", "--no-scm", "-q"], root)
    run_ok(["dvc", "config", "core.analytics", "false"], root)
    # as `make demo` runs it: the stages in forks of one warm process (lfmcdm/warm.py), which leaves soon after
    run_ok(["dvc", "repro"], root, env={**subprocess_env(), "LFMCDM_WARM_START": "1", "LFMCDM_WARM_IDLE_S": "5"})
    return root


@pytest.fixture()
def dvc_project_copy(dvc_project, tmp_path) -> Path:
    """A private copy of the toy project, for tests that run stages in it: ``dvc_project`` itself stays
    exactly as ``dvc repro`` left it, whatever order the tests run in."""
    copy = tmp_path / "project-copy"
    shutil.copytree(dvc_project, copy, symlinks=True)
    return copy


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A tiny phantom EchoNet folder, generated once per test session (read-only for tests)."""
    out = tmp_path_factory.mktemp("phantom")
    phantom.write_dataset(tiny_params().phantom, out, seed=0, progress=False)
    return out


@pytest.fixture()
def echonet_copy(phantom_dir, tmp_path) -> Path:
    """A writable copy of the session phantom, for tests that corrupt it."""
    dst = tmp_path / "echonet"
    shutil.copytree(phantom_dir, dst)
    return dst
