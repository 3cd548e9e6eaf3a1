"""Warm start: ``lfmcdm stage`` commands run in forks of one process that has imported the heavy libraries.

Why: a stage process spends 5-10 s importing torch, diffusers, accelerate, MLflow and Great Expectations
before it does any work, and ``dvc repro`` starts eleven of them (docs/benchmarks.md, "Warm start"). With
``LFMCDM_WARM_START=1`` (``make demo`` sets it) the first stage command starts a server that imports them
once (the first command does not wait for them: see :func:`_serve`); every stage command then connects
to it over a Unix socket, hands over its arguments, working folder, environment and its stdin/stdout/stderr,
and the server forks a worker that runs the command exactly as the ``lfmcdm`` command would. The command's
output, exit status and Ctrl-C behave as without warm start; DVC sees no difference.

What keeps a worker the same as a fresh process:

- the server imports third-party libraries only, never lfmcdm (a worker imports the checkout as it is
  now), and runs no torch operation (OpenMP's thread pool does not survive a fork);
- a server serves only callers with the same interpreter, ``sys.path``, installed packages and
  environment (they name its socket), so a changed venv or setting gets a new server;
- it exits after ``LFMCDM_WARM_IDLE_S`` seconds (default :data:`IDLE_S`) with no command running;
- the worker dies with its caller: if the caller is killed, the worker is terminated.

Anything that fails before a command is handed over (no Unix sockets, the server cannot start) runs the
command in-process, as without warm start; nothing is ever run twice.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ENV = "LFMCDM_WARM_START"  # "1" / "true" / "yes" / "on": `lfmcdm stage` runs in a warm worker
IDLE_ENV = "LFMCDM_WARM_IDLE_S"
IDLE_S = 30.0  # server lifetime with nothing running: covers DVC's gaps between stages (~1-2 s)
START_TIMEOUT_S = 180.0  # the server listens ~0.1 s after it starts (imports come later); a loaded machine is slower
POLL_S = 0.05  # how often a caller retries the socket while the server starts
SUPERVISE_POLL_S = 0.2  # how often a supervisor checks its worker and its caller
KILL_GRACE_S = 10.0  # a worker whose caller vanished gets SIGTERM, then SIGKILL after this
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What stage processes import: torch and its friends, MLflow's client and sqlite stores, GX. Not cv2:
# OpenCV starts a thread pool at import, which a fork does not carry.
PREIMPORTS = (
    "torch", "accelerate", "diffusers.models", "diffusers.schedulers", "diffusers.optimization",
    "diffusers.training_utils", "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "mlflow.pyfunc", "great_expectations", "pyarrow.parquet",
    "pandas", "matplotlib",
)
# Environment variables that differ between the commands of one `dvc repro` (DVC_STAGE names each stage)
# and that no import reads, so they do not name the server; tracking.PIPELINE_ENV (set by the caller) neither
VOLATILE_ENV = ("_", "PWD", "OLDPWD", "SHLVL")
VOLATILE_ENV_PREFIX = "DVC_"


class Unavailable(RuntimeError):
    """Warm start cannot serve this command (it then runs in-process)."""


def wanted(argv: list[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Warm start is asked for, and possible: a ``stage`` command, outside a distributed launch."""
    on = environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return (on and argv[1:2] == ["stage"] and "RANK" not in environ and hasattr(socket, "AF_UNIX")
            and hasattr(socket, "send_fds") and hasattr(os, "fork"))


# --- the caller (the `lfmcdm` command) -------------------------------------------------------------------

def run_client(argv: list[str]) -> int | None:
    """Run ``argv`` in a warm worker; its exit status, or None when warm start is unavailable."""
    request = _request(argv)
    try:
        idle_seconds(request["env"])  # a bad value is said here, not in the server's log
        path = socket_path(request)
        sock = _connect_or_start(path)
    except (OSError, Unavailable) as exc:
        print(f"lfmcdm: warm start unavailable ({exc}); running in this process", file=sys.stderr)
        return None
    with sock:
        try:
            _send(sock, request)
            reader = sock.makefile("r")
            line = reader.readline()
        except OSError:
            line = ""
        if not line.startswith("pid "):  # the server left before it forked a worker: nothing ran
            print("lfmcdm: the warm-start server did not take the command; running in this process", file=sys.stderr)
            return None
        return _await(reader, int(line.split()[1]))


def idle_seconds(environ: Mapping[str, str]) -> float:
    """The server's idle lifetime: ``LFMCDM_WARM_IDLE_S`` seconds (unset or empty: :data:`IDLE_S`)."""
    raw = environ.get(IDLE_ENV, "").strip()
    if not raw:
        return IDLE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise Unavailable(f"{IDLE_ENV}={raw!r} is not a number of seconds above 0")
    return value


def _request(argv: list[str]) -> dict:
    from lfmcdm.tracking import PIPELINE_ENV, pipeline_id

    env = dict(os.environ)
    # the worker's parents are the server's, not `dvc repro`: name the pipeline here, where DVC is a parent
    env.setdefault(PIPELINE_ENV, pipeline_id())
    umask = os.umask(0)
    os.umask(umask)
    return {"argv": list(argv), "cwd": os.getcwd(), "env": env, "umask": umask, "path": list(sys.path)}


def socket_path(request: dict) -> Path:
    """The socket of the server for this interpreter, ``sys.path``, installed packages and environment."""
    import site

    from lfmcdm.tracking import PIPELINE_ENV

    packages = [(p, os.stat(p).st_mtime_ns) for p in site.getsitepackages() if os.path.isdir(p)]
    volatile = (*VOLATILE_ENV, PIPELINE_ENV)
    env = {k: v for k, v in request["env"].items() if k not in volatile and not k.startswith(VOLATILE_ENV_PREFIX)}
    key = {"python": sys.executable, "path": request["path"], "packages": packages, "env": env,
           "server": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return runtime_dir() / f"{digest}.sock"


def runtime_dir() -> Path:
    """This user's private folder for servers' sockets, locks and logs (created 0700; refused if not ours)."""
    folder = Path(tempfile.gettempdir()) / f"lfmcdm-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise Unavailable(f"{folder} is not a private folder of this user")
    return folder


def _peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end (Linux SO_PEERCRED: pid, uid, gid)."""
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]


def _connect(path: Path) -> socket.socket:
    """Connect to the server at ``path``; only a server of this user is handed a command (and its terminal)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        if _peer_uid(sock) != os.getuid():
            raise Unavailable(f"{path} is served by another user")
    except (OSError, Unavailable):
        sock.close()
        raise
    return sock


def _connect_or_start(path: Path) -> socket.socket:
    """Connect to the running server, or start one (one caller at a time: a lock file) and connect."""
    import fcntl

    try:
        return _connect(path)
    except OSError:
        pass
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _connect(path)
        except OSError:
            path.unlink(missing_ok=True)  # a dead server's socket
        server = _start_server(path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                return _connect(path)
            except OSError:
                if server.poll() is not None:
                    raise Unavailable(f"the server exited with status {server.returncode}; see {path}.log")
                time.sleep(POLL_S)
        server.kill()
        raise Unavailable(f"the server did not start within {START_TIMEOUT_S:.0f} s; see {path}.log")


def _start_server(path: Path) -> subprocess.Popen:
    """A detached server process (own session, no terminal), with this caller's interpreter and sys.path."""
    code = f"import sys; sys.path[:] = {list(sys.path)!r}; from lfmcdm.warm import main; main({str(path)!r})"
    with open(f"{path}.log", "w") as log:
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                cwd="/", start_new_session=True, close_fds=True)


def _stdio_fds() -> list[int]:
    """This process's fds 0-2, with /dev/null for any that is closed."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def _send(sock: socket.socket, request: dict) -> None:
    data = json.dumps(request).encode()
    socket.send_fds(sock, [struct.pack("!I", len(data))], _stdio_fds())
    sock.sendall(data)


def _await(reader, worker: int) -> int:
    """Forward signals to the worker until the server reports its exit status; the command's status."""

    def forward(signum, _frame) -> None:
        try:
            os.kill(worker, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    line = reader.readline()
    if not line.startswith("exit "):
        print("lfmcdm: the warm-start server lost the command's worker", file=sys.stderr)
        return 1
    code = int(line.split()[1])
    return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128 + N


# --- the server ------------------------------------------------------------------------------------------

def main(path: str) -> None:
    """The server process: serve until idle, importing between callers. Supervisors and workers return here."""
    conn = _serve(Path(path))
    if conn is None:
        return
    request, fds = _supervise(conn)  # returns only in the worker
    _run(request, fds)


def _preimport(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        print(f"lfmcdm warm start: {name} not imported ({exc})", file=sys.stderr)


def _serve(path: Path) -> socket.socket | None:
    """Accept callers, one forked supervisor each; the connection in a supervisor, None when idle.

    The socket listens before the imports, which go one module at a time with a look for callers in
    between: the first command (the pipeline's first stage) starts at once, imports what it needs itself,
    and runs on one core while the server imports on the other (the imports took 25 s in a new venv,
    bytecode compiled on the way; the first stage waited for all of them). Leaving is race-free: the
    socket's path goes first (a new caller then starts a new server), then whoever connected in the
    meantime is still served.
    """
    idle = idle_seconds(os.environ)
    pending = list(PREIMPORTS)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)  # this user's commands only (the caller checks the server's user too)
    server.listen()
    inode, children, last, leaving = os.stat(path).st_ino, set(), time.monotonic(), False
    while True:
        children = {pid for pid in children if os.waitpid(pid, os.WNOHANG) == (0, 0)}
        if children or pending:
            last = time.monotonic()
        elif not leaving and time.monotonic() - last >= idle:
            leaving = True
            _release(path, inode)
        server.settimeout(0.0 if pending or leaving else 1.0)
        try:
            conn, _ = server.accept()
        except (TimeoutError, BlockingIOError):
            if leaving:
                break
            if pending:
                _preimport(pending.pop(0))
            continue
        if _peer_uid(conn) != os.getuid():
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            server.close()
            return conn
        conn.close()
        children.add(pid)
    server.close()
    return None


def _release(path: Path, inode: int) -> None:
    """Remove this server's socket (and its log, which only a failed start needs), unless a newer server's."""
    if path.exists() and os.stat(path).st_ino == inode:
        path.unlink()
        Path(f"{path}.log").unlink(missing_ok=True)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    size = struct.unpack("!I", head)[0]
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the caller hung up")
        data += chunk
    return json.loads(data), list(fds)


def _supervise(conn: socket.socket) -> tuple[dict, list[int]]:
    """In a supervisor: fork the worker, report its pid and exit status; returns only in the worker."""
    conn.settimeout(None)
    try:
        request, fds = _receive(conn)
    except (OSError, ValueError):
        os._exit(1)
    worker = os.fork()
    if worker == 0:
        conn.close()
        return request, fds
    for fd in fds:  # the worker holds the caller's terminal/pipes; EOF must not wait for this process
        os.close(fd)
    try:
        conn.sendall(f"pid {worker}\n".encode())
        os._exit(_watch(conn, worker))
    except OSError:
        _terminate(worker)
        os._exit(1)


def _watch(conn: socket.socket, worker: int) -> int:
    """Wait for the worker; send its exit status. A caller that hangs up takes its worker with it."""
    while True:
        done, status = os.waitpid(worker, os.WNOHANG)
        if done:
            conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            return 0
        readable, _, _ = select.select([conn], [], [], SUPERVISE_POLL_S)
        if readable and not conn.recv(1):
            _terminate(worker)
            return 1


def _terminate(worker: int) -> None:
    os.kill(worker, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        if os.waitpid(worker, os.WNOHANG)[0]:
            return
        time.sleep(SUPERVISE_POLL_S)
    os.kill(worker, signal.SIGKILL)
    os.waitpid(worker, 0)


def _run(request: dict, fds: list[int]) -> None:
    """In the worker: become the caller's process (stdio, folder, environment), then run the command."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    sys.path[:] = request["path"]
    sys.argv = request["argv"]
    _reopen_stdio()
    from lfmcdm.cli import app
    from lfmcdm.launcher import run

    run(app, args=sys.argv[1:], prog_name=os.path.basename(sys.argv[0]))


def _reopen_stdio() -> None:
    """New sys.stdin/stdout/stderr on fds 0-2 (now the caller's), buffered as Python buffers a fresh process's."""
    import io

    encoding, errors = sys.stdout.encoding, sys.stdout.errors

    def wrap(fd: int, mode: str, line: bool) -> io.TextIOWrapper:
        return io.TextIOWrapper(io.open(fd, mode + "b", closefd=False), encoding=encoding,
                                errors="backslashreplace" if fd == 2 else errors, line_buffering=line,
                                write_through=bool(os.environ.get("PYTHONUNBUFFERED")))

    sys.stdin = sys.__stdin__ = wrap(0, "r", False)
    sys.stdout = sys.__stdout__ = wrap(1, "w", os.isatty(1))
    sys.stderr = sys.__stderr__ = wrap(2, "w", True)
