"""Faults around a stage (issue 15): kill -9 leaves no worker behind; unusable outputs or tracking store
stop a stage up front with one line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from lfmcdm.data import phantom

from .conftest import subprocess_env, tiny_params

WAIT_S = 120  # bound on every wait below: a regression fails, it does not hang the suite


def _cli(root: Path, stage: str, data: dict) -> list[str]:
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"workers": 2, "min_frames": 16, **data}}))
    return [sys.executable, "-m", "lfmcdm.cli", "stage", stage, "--params", str(params), "--root", str(root),
            "--no-progress"]


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _is_worker(proc: psutil.Process) -> bool:
    """A spawned pool worker; a short-lived child that has already exited (zombie, gone) is not one."""
    try:
        return "spawn_main" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def test_kill_9_of_ingest_leaves_no_worker_behind(tmp_path):
    src = tmp_path / "echonet"
    phantom.write_dataset(tiny_params(phantom={"n_videos": 24, "size": 112}).phantom, src, seed=0, progress=False)
    root = tmp_path / "project"
    root.mkdir()
    cmd = _cli(root, "ingest", {"echonet_root": str(src)})
    ingest = subprocess.Popen(cmd, cwd=root, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(ingest.pid)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while len(workers) < 2 and ingest.poll() is None and time.monotonic() < deadline:
            workers = [p for p in parent.children(recursive=True) if _is_worker(p)]
            time.sleep(0.2)
        assert len(workers) >= 2, "ingest's worker pool never started"
        everything = parent.children(recursive=True)  # workers and multiprocessing's resource tracker
        os.kill(ingest.pid, signal.SIGKILL)
        ingest.wait()
        deadline = time.monotonic() + WAIT_S
        while not all(_gone(p) for p in everything) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p.pid for p in everything if not _gone(p)]
        assert not left, f"processes left behind by a killed ingest: {left}"
    finally:
        for proc in [parent, *workers]:
            try:
                proc.kill()
            except psutil.Error:
                pass


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, timeout=WAIT_S * 2)


def test_output_folder_that_cannot_be_written_stops_ingest_up_front(tmp_path, phantom_dir):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/interim").write_text("a file where ingest's output folder belongs")
    proc = _run(_cli(tmp_path, "ingest", {"echonet_root": str(phantom_dir), "workers": 1}), tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: stage ingest: pre-flight: output folder data/interim is not a folder"
    assert not (tmp_path / "reports/validation").exists()  # stopped before any work


def test_unusable_mlflow_store_stops_ingest_up_front(tmp_path, phantom_dir):
    (tmp_path / "mlflow.db").write_bytes(b"not a database, just bytes" * 100)
    proc = _run(_cli(tmp_path, "ingest", {"echonet_root": str(phantom_dir), "workers": 1}), tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "pre-flight: MLflow store" in message and "not a database" in message
    assert not (tmp_path / "data/interim").exists()


@contextlib.contextmanager
def read_only(path: Path):
    """Make ``path`` read-only even for root: ``chattr +i`` as root (skipped where unsupported), chmod otherwise."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is unavailable here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("target, expected", [
    ("data", "error: stage ingest: pre-flight: output folder data is not writable"),
    ("mlflow.db", "error: stage ingest: pre-flight: MLflow store {root}/mlflow.db is read-only"),
])
def test_read_only_outputs_or_store_stop_ingest_up_front(tmp_path, phantom_dir, target, expected):
    import sqlite3

    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "mlflow.db").execute("CREATE TABLE t (x)").connection.close()
    cmd = _cli(tmp_path, "ingest", {"echonet_root": str(phantom_dir), "workers": 1})
    with read_only(tmp_path / target):
        proc = _run(cmd, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith(expected.format(root=tmp_path)), message
    assert not (tmp_path / "data/interim").exists()


def test_atomic_dir_removes_what_killed_writers_left_behind(tmp_path):
    from lfmcdm.atomic import atomic_dir

    dead = 2**22 + 12345  # above Linux's largest pid: no such process
    stale_tmp = tmp_path / f".out.{dead}.abcd.tmp"
    stale_old = tmp_path / f".out.old.{dead}"
    live_tmp = tmp_path / f".out.{os.getppid()}.efgh.tmp"  # a writer that is still running
    for folder in (stale_tmp, stale_old, live_tmp):
        folder.mkdir()
        (folder / "part.npy").write_bytes(b"half")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "done.txt").write_text("ok")
    assert not stale_tmp.exists() and not stale_old.exists()
    assert live_tmp.exists() and (tmp_path / "out/done.txt").read_text() == "ok"
