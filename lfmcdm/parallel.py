"""A process pool that streams results with a progress bar and bounded memory."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def n_workers(requested: int) -> int:
    """0 means one worker per available core."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def pmap(fn: Callable[[T], R], items: list[T], workers: int, desc: str, progress: bool = True) -> Iterator[R]:
    """``map(fn, items)`` over worker processes, yielding results in input order.

    Spawned (not forked) workers: the parent may hold MLflow/sqlite handles and threads that must not
    be duplicated. Each task's inputs and outputs are small; bulky arrays are written by the worker.
    """
    workers = min(n_workers(workers), max(1, len(items)))
    bar = tqdm(total=len(items), desc=desc, unit="video", disable=not progress)
    results: Iterable[R]
    if workers == 1:
        results = map(fn, items)
        for r in results:
            bar.update()
            yield r
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for r in pool.map(fn, items, chunksize=max(1, min(16, len(items) // (workers * 4)))):
                bar.update()
                yield r
    bar.close()
