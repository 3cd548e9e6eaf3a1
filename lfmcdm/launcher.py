"""The ``lfmcdm`` console command: a stage in a warm worker when asked (:mod:`lfmcdm.warm`), else the CLI here.

Kept apart from :mod:`lfmcdm.cli` so that handing a command to a warm worker imports nothing heavy.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def main() -> NoReturn:
    from lfmcdm import warm

    if warm.wanted(sys.argv):
        status = warm.run_client(sys.argv)
        if status is not None:
            sys.exit(status)
    from lfmcdm.cli import app

    run(app)


def run(app: Callable[..., object], args: list[str] | None = None, prog_name: str | None = None) -> NoReturn:
    """Run the CLI, then end the process without tearing down the interpreter.

    Why: a stage process holds torch, diffusers, MLflow and GX; Python's teardown of those modules took
    2.6 s after every stage had finished its work (docs/benchmarks.md, "Warm start"). What a normal exit
    does for the program still happens, in order: non-daemon threads are joined, ``atexit`` handlers run
    (MLflow ends its runs, logging flushes), stdout/stderr are flushed. An uncaught exception other
    than ``SystemExit`` takes Python's normal path (traceback, full teardown).
    """
    try:
        app(args=args, prog_name=prog_name)
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    exit_now(status)


def exit_now(status: object) -> NoReturn:
    """``sys.exit(status)`` minus the interpreter teardown (see :func:`run`)."""
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:  # sys.exit("message"): printed, status 1, as Python does
        print(status, file=sys.stderr)
        code = 1
    threading._shutdown()  # what Python runs first at exit: joins non-daemon threads (and executors' workers)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)  # as the OS reports Python's own exit: sys.exit(-1) -> 255
