"""A process pool that streams results with a progress bar and bounded memory."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
ORPHAN_POLL_S = 0.5  # how often a worker checks that its parent is alive (where prctl is unavailable too)


def _die_with(parent: int) -> None:
    """Worker initializer: end this worker when ``parent`` dies, even by ``kill -9`` (no cleanup runs there).

    Linux delivers SIGKILL on the parent's death (``PR_SET_PDEATHSIG``); a daemon thread also watches
    ``getppid()`` (portable, and covers a parent that died before the prctl call took effect).
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(ORPHAN_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _worker_init(parent: int, threads: int) -> None:
    """Worker initializer: die with the parent, and keep native thread pools within this worker's share of cores.

    Every worker of a pool the size of the machine otherwise starts one BLAS/OpenMP and one OpenCV thread
    per core: on 2 cores, two workers' spinning BLAS threads made ingest's phase estimate 40x slower
    (1.2 s instead of 31 ms a clip, docs/benchmarks.md "Scale"). Results stay the same up to the
    summation order BLAS picks for a thread count (ED/ES identical; float evidence differs ~1e-8).
    """
    _die_with(parent)
    import cv2  # before the limit: it reaches only loaded libraries, and OpenCV ships a BLAS of its own
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    cv2.setNumThreads(threads)


def n_workers(requested: int) -> int:
    """0 means one worker per available core."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def pmap(fn: Callable[[T], R], items: list[T], workers: int, desc: str, progress: bool = True,
         unit: str = "video") -> Iterator[R]:
    """``map(fn, items)`` over worker processes, yielding results in input order.

    Spawned (not forked) workers: the parent may hold MLflow/sqlite handles and threads that must not
    be duplicated. Each task's inputs and outputs are small; bulky arrays are written by the worker.
    Workers die with the parent (:func:`_die_with`): a killed stage leaves no process behind; each uses
    its share of the cores for native threads (:func:`_worker_init`).
    """
    workers = min(n_workers(workers), max(1, len(items)))
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress)
    results: Iterable[R]
    if workers == 1:
        results = map(fn, items)
        for r in results:
            bar.update()
            yield r
    else:
        threads = max(1, n_workers(0) // workers)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(os.getpid(), threads)) as pool:
            for r in pool.map(fn, items, chunksize=max(1, min(16, len(items) // (workers * 4)))):
                bar.update()
                yield r
    bar.close()
