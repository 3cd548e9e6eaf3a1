"""Warm start (lfmcdm/warm.py): a stage run in a fork of the warm server behaves as the command run directly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lfmcdm import warm

from .conftest import make_project, subprocess_env

LFMCDM = str(Path(sys.executable).parent / "lfmcdm")


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env={**subprocess_env(), **env}, capture_output=True, text=True)


def _request(tmp_path: Path, **env: str) -> dict:
    return {"argv": ["lfmcdm", "stage", "phantom"], "cwd": str(tmp_path), "umask": 0o22, "path": list(sys.path),
            "env": {"PATH": "/usr/bin", "HOME": str(tmp_path), **env}}


def _sockets() -> set[Path]:
    return set(warm.runtime_dir().glob("*.sock"))


def test_warm_is_asked_for_per_command():
    on = {warm.ENV: "1"}
    assert warm.wanted(["lfmcdm", "stage", "ingest"], on)
    assert not warm.wanted(["lfmcdm", "stage", "ingest"], {})
    assert not warm.wanted(["lfmcdm", "synthesize"], on)  # only pipeline stages
    assert not warm.wanted(["lfmcdm", "stage", "ingest"], {**on, "RANK": "0"})  # accelerate launch: never


def test_a_bad_idle_time_is_named_and_the_command_runs_in_process(tmp_path):
    assert warm.idle_seconds({}) == warm.idle_seconds({warm.IDLE_ENV: " "}) == warm.IDLE_S
    assert warm.idle_seconds({warm.IDLE_ENV: "2.5"}) == 2.5
    for bad in ("soon", "0", "-1", "nan", "inf"):
        with pytest.raises(warm.Unavailable, match=f"{warm.IDLE_ENV}='{bad}' is not a number of seconds"):
            warm.idle_seconds({warm.IDLE_ENV: bad})
    project = make_project(tmp_path)
    before = _sockets()
    env = {warm.ENV: "1", warm.IDLE_ENV: "soon"}
    run = _run([LFMCDM, "stage", "phantom", "--params", "missing.yaml"], project, **env)
    assert run.returncode == 2 and "missing.yaml" in run.stderr  # the command ran, in this process
    assert "(LFMCDM_WARM_IDLE_S='soon' is not a number of seconds above 0); running in this process" in run.stderr
    assert _sockets() == before  # no server was started


def test_server_is_named_by_everything_that_shapes_an_import(tmp_path):
    base = warm.socket_path(_request(tmp_path))
    # what changes from one stage of a `dvc repro` to the next does not need a new server...
    assert warm.socket_path(_request(tmp_path, DVC_STAGE="train_vae", PWD="/x", LFMCDM_PIPELINE_ID="p")) == base
    # ...any other setting does: libraries read the environment at import
    assert warm.socket_path(_request(tmp_path, MLFLOW_TRACKING_URI="sqlite:///x.db")) != base
    other_path = {**_request(tmp_path), "path": ["/elsewhere", *sys.path]}
    assert warm.socket_path(other_path) != base


def test_servers_live_in_a_private_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(warm.tempfile, "gettempdir", lambda: str(tmp_path))
    assert oct(warm.runtime_dir().stat().st_mode & 0o777) == oct(0o700)
    warm.runtime_dir().chmod(0o755)  # readable by others: another user could watch or plant sockets there
    with pytest.raises(warm.Unavailable, match="not a private folder"):
        warm.runtime_dir()


def test_stage_in_a_warm_worker_matches_the_direct_command(tmp_path):
    """Same files, output and exit status as the plain command; one server serves both commands, then
    leaves when idle."""
    cold = make_project(tmp_path / "cold")
    hot = make_project(tmp_path / "hot")
    direct = _run([LFMCDM, "stage", "phantom"], cold)
    assert direct.returncode == 0, direct.stderr
    env = {warm.ENV: "1", warm.IDLE_ENV: "3"}
    before = _sockets()
    first = _run([LFMCDM, "stage", "phantom"], hot, **env)
    assert first.returncode == 0, first.stderr
    assert "warm start unavailable" not in first.stderr
    (sock,) = _sockets() - before  # the server this command started
    server = sock.stat().st_ino
    again = _run([LFMCDM, "stage", "phantom"], hot, **env)  # a finished stage re-runs to the same files
    assert again.returncode == 0 and sock.stat().st_ino == server  # the same server served it

    assert [line for line in first.stdout.splitlines() if line.startswith("phantom.")] == \
        [line for line in direct.stdout.splitlines() if line.startswith("phantom.")]
    videos = sorted(p.name for p in (cold / "data/raw/phantom/Videos").iterdir())
    assert videos == sorted(p.name for p in (hot / "data/raw/phantom/Videos").iterdir())
    for name in videos:
        assert (cold / "data/raw/phantom/Videos" / name).read_bytes() == \
            (hot / "data/raw/phantom/Videos" / name).read_bytes()
    truth = "data/raw/phantom/truth.parquet"
    assert pq.read_table(cold / truth).equals(pq.read_table(hot / truth))

    bad = _run([LFMCDM, "stage", "phantom", "--params", "missing.yaml"], hot, **env)
    plain = _run([LFMCDM, "stage", "phantom", "--params", "missing.yaml"], hot)
    assert bad.returncode == plain.returncode == 2 and bad.stderr == plain.stderr

    deadline = time.monotonic() + 60
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sock.exists()  # idle for LFMCDM_WARM_IDLE_S: the server is gone


def test_a_worker_dies_with_its_caller():
    caller, supervisor = socket.socketpair()
    worker = os.fork()
    if worker == 0:  # stands in for a stage that would run for minutes (holding no end of the connection)
        caller.close()
        supervisor.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        time.sleep(60)
        os._exit(0)
    started = time.monotonic()
    caller.close()  # the `lfmcdm` command was killed
    assert warm._watch(supervisor, worker) == 1
    assert time.monotonic() - started < warm.KILL_GRACE_S
    with pytest.raises(ChildProcessError):
        os.waitpid(worker, os.WNOHANG)  # terminated and reaped


def test_the_supervisor_reports_the_worker_status():
    caller, supervisor = socket.socketpair()
    worker = os.fork()
    if worker == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a fresh process, whatever pytest installed
        os.kill(os.getpid(), signal.SIGTERM)
    assert warm._watch(supervisor, worker) == 0
    assert caller.recv(64).decode() == f"exit {-signal.SIGTERM}\n"  # the caller exits 128 + 15, as a shell


def test_fast_exit_still_does_what_a_normal_exit_does(tmp_path):
    """launcher.run skips Python's teardown, not the program's: threads joined, atexit run, output flushed."""
    code = f"""
import atexit, sys, threading, time
from pathlib import Path
from lfmcdm.launcher import run
out = Path({str(tmp_path)!r})
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.5)
    (out / "thread").write_text("done")
def app(args=None, prog_name=None):
    threading.Thread(target=late).start()
    sys.stdout.write("unflushed")
    raise SystemExit(3)
run(app)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3 and proc.stdout == "unflushed"
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"


def test_allocator_keeps_large_blocks_on_the_heap():
    """train.malloc_cache_mb: a 16 MB block comes from the heap, not a fresh mmap (glibc; skipped elsewhere)."""
    code = """
import ctypes, sys
from lfmcdm.runtime import configure_allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
def mmapped(applied):
    if applied is not None and not configure_allocator(applied):
        sys.exit(3)
    block = libc.malloc(16 << 20)
    size = libc.mallinfo2().hblkhd
    libc.free(ctypes.c_void_p(block))
    return size
print(mmapped(None) >= 16 << 20, mmapped(1024) < 16 << 20)
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]  # glibc's default mmaps it; configured, the heap serves it
