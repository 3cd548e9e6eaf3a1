"""Prefect flow running the pipeline stages in order, each as a task calling ``lfmcdm.stages``.

Thin by design: no logic lives here, so ``dvc repro``, ``lfmcdm stage`` and this flow always do
the same work. Runs with Prefect's ephemeral local API (no server needed)::

    python -m flows.pipeline                       # every stage, params.yaml in the current folder
    python -m flows.pipeline --stages phantom ingest
"""

from __future__ import annotations

import argparse
import os

from prefect import flow, task
from prefect.runtime import flow_run

from lfmcdm.config import load_params
from lfmcdm.stages import STAGES, run_stage
from lfmcdm.tracking import PIPELINE_ENV


@task(name="stage", task_run_name="{name}", retries=0)
def stage_task(name: str, params_path: str, root: str) -> dict:
    """One stage = one Prefect task (and one MLflow child run)."""
    return run_stage(name, load_params(params_path), root=root, progress=False)


@flow(name="lfmcdm-pipeline", log_prints=True)
def pipeline(params_path: str = "params.yaml", root: str = ".", stages: list[str] | None = None) -> dict[str, dict]:
    """Run ``stages`` (default: all, in pipeline order) under one MLflow parent run."""
    os.environ[PIPELINE_ENV] = f"prefect-{flow_run.get_id() or 'local'}"
    selected = stages or list(STAGES)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    results = {}
    for name in [s for s in STAGES if s in selected]:  # always in pipeline order
        results[name] = stage_task(name, params_path, root)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--stages", nargs="*", default=None)
    args = parser.parse_args()
    pipeline(params_path=args.params, root=args.root, stages=args.stages)


if __name__ == "__main__":
    main()
