"""Stage ``synthesize``: one synthetic cohort, in resumable shards, from registry models.

``ctx.extra["shard_map"]`` lets the Prefect cohort flow fan shards out over its task runner
(threads or a Dask cluster); by default shards run here, ``synthesis.workers`` at a time.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from tqdm import tqdm

from lfmcdm.synth.cohort import CohortJob, assemble, prepare, run_shard
from lfmcdm.synth.generator import load_cohort_models


def local_shard_map(job: CohortJob, shard_ids: list[int], workers: int, progress: bool) -> None:
    """Run shards with a thread pool (torch releases the GIL in its kernels).

    Why more than one: between its UNet calls (which use every core) a shard decodes, resamples, writes and
    scores its videos mostly on one core; a second shard samples meanwhile (demo: 1.15-1.35x faster,
    docs/benchmarks.md). The threads share the models read-only and every video depends on its own seed
    alone, so the cohort does not depend on the number of threads.
    """
    models = load_cohort_models(job.params, job.root)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(shard_ids), desc="synthesize", unit="shard",
                                                     disable=not progress) as bar:
        for _ in pool.map(partial(run_shard, job, models=models), shard_ids):
            bar.update()


def run(ctx) -> dict:
    cfg = ctx.params.synthesis
    models = load_cohort_models(ctx.params, ctx.root)
    job = prepare(ctx.params, ctx.root, models)
    pending = job.pending()
    print(f"synthesize: cohort {cfg.cohort!r}: {len(job.plan)} videos in {job.n_shards} shards, "
          f"{job.n_shards - len(pending)} already done")
    shard_map = ctx.extra.get("shard_map") or partial(local_shard_map, workers=cfg.workers, progress=ctx.progress)
    start = time.perf_counter()
    if pending:
        shard_map(job, pending)
    elapsed = time.perf_counter() - start
    generated = sum(len(job.shard(k)) for k in pending)
    metrics = assemble(job)
    metrics["videos_per_s"] = generated / elapsed if generated and elapsed > 0 else None
    print(f"synthesize: {metrics['videos']} videos in {job.out}, privacy pass share {metrics['privacy_pass_share']}")
    return metrics
