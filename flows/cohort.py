"""Prefect flow producing one synthetic cohort, shards fanned out over a task runner.

Threads by default; a Dask cluster when a scheduler address is given (``--dask-address``, the flow
parameter ``dask_address``, or ``synthesis.dask_address`` in params.yaml, in that order), or
``--dask`` starts a local one. The work itself is the ``synthesize`` stage: this flow only decides
where shards run. Shards are idempotent (a finished shard is a file), so a failed one is retried
``synthesis.shard_retries`` times.

    python -m flows.cohort --cohort trial --n 64                    # threads
    python -m flows.cohort --cohort trial --n 64 --dask              # a local Dask cluster
    python -m flows.cohort --dask-address tcp://scheduler:8786       # an existing Dask cluster
    python -m flows.cohort serve                                     # scheduled daily deployment
"""

from __future__ import annotations

import argparse
import os
from functools import partial

from prefect import flow, task, unmapped
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from lfmcdm.config import load_params
from lfmcdm.stages import run_stage
from lfmcdm.synth.cohort import CohortJob, run_shard
from lfmcdm.synth.generator import load_cohort_models
from lfmcdm.synth.schedule import daily_cohort_name
from lfmcdm.tracking import PIPELINE_ENV

DAILY_CRON = "0 3 * * *"


@task(name="shard", task_run_name="shard-{k}", retry_delay_seconds=5)
def shard_task(job: CohortJob, k: int) -> str:
    """One shard on whichever worker runs it; models load once per worker process."""
    return str(run_shard(job, k, load_cohort_models(job.params, job.root)))


def _prefect_shard_map(job: CohortJob, shard_ids: list[int]) -> None:
    """Shards on the current flow's task runner, each retried (a shard is idempotent: rewritten whole)."""
    retried = shard_task.with_options(retries=job.params.synthesis.shard_retries)
    for future in retried.map(unmapped(job), shard_ids):
        future.result()


@flow(name="lfmcdm-cohort-shards")
def _shards_flow(job: CohortJob, shard_ids: list[int]) -> None:
    _prefect_shard_map(job, shard_ids)


def _dask_shard_map(address: str, job: CohortJob, shard_ids: list[int]) -> None:
    """Shards on an existing Dask cluster: a subflow bound to a Dask task runner at ``address``."""
    from prefect_dask import DaskTaskRunner

    _shards_flow.with_options(task_runner=DaskTaskRunner(address=address))(job, shard_ids)


def _shard_map(address: str | None):
    """Where shards run: the given Dask scheduler, else this flow's own task runner."""
    return partial(_dask_shard_map, address) if address else _prefect_shard_map


@flow(name="lfmcdm-cohort", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def cohort(params_path: str = "params.yaml", root: str = ".", cohort_name: str | None = None,
           n_videos: int | None = None, daily: bool = False, dask_address: str | None = None) -> dict:
    """Synthesize one cohort (``daily=True`` names it ``<cohort>-YYYYMMDD``); shards on ``dask_address``
    (default ``synthesis.dask_address``) when set."""
    os.environ[PIPELINE_ENV] = f"prefect-{flow_run.get_id() or 'local'}"
    base = load_params(params_path).synthesis
    name = cohort_name or base.cohort
    if daily:
        name = daily_cohort_name(name, flow_run.scheduled_start_time)
    overrides = {"synthesis": {"cohort": name, **({"n_videos": n_videos} if n_videos else {})}}
    params = load_params(params_path, overrides=overrides)
    address = dask_address or params.synthesis.dask_address
    return run_stage("synthesize", params, root=root, progress=False, shard_map=_shard_map(address))


def with_runner(local_dask: bool = False, workers: int = 2):
    """The cohort flow bound to a task runner: a local Dask cluster, or threads (an existing cluster's
    address is a flow parameter, so deployments honour it too)."""
    if not local_dask:
        return cohort
    from prefect_dask import DaskTaskRunner

    return cohort.with_options(task_runner=DaskTaskRunner(
        cluster_class="distributed.LocalCluster", cluster_kwargs={"n_workers": workers, "threads_per_worker": 1}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["run", "serve"], default="run")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--cohort", default=None)
    parser.add_argument("--n", type=int, default=None, help="number of videos")
    parser.add_argument("--dask", action="store_true", help="start a local Dask cluster for the shards")
    parser.add_argument("--dask-address", default=None, help="scheduler address of an existing Dask cluster")
    parser.add_argument("--cron", default=DAILY_CRON, help="schedule for `serve`")
    args = parser.parse_args()
    flow_fn = with_runner(args.dask)
    if args.command == "serve":
        flow_fn.serve(name="daily-cohort", cron=args.cron,
                      parameters={"params_path": args.params, "root": os.path.abspath(args.root), "daily": True,
                                  "dask_address": args.dask_address})
    else:
        flow_fn(params_path=args.params, root=args.root, cohort_name=args.cohort, n_videos=args.n,
                dask_address=args.dask_address)


if __name__ == "__main__":
    main()
