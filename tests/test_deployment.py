"""The daily-cohort deployment on a real Prefect server: deployed with its cron schedule, run once on demand."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
import yaml

from flows.cohort import DAILY_CRON

from .conftest import stop_process

pytestmark = pytest.mark.e2e

SERVE = textwrap.dedent('''
    import sys
    from prefect import serve
    from flows.cohort import DAILY_CRON, cohort
    params_path, root = sys.argv[1:3]
    deployment = cohort.to_deployment(name="daily-cohort", cron=DAILY_CRON,
                                      parameters={"params_path": params_path, "root": root, "daily": True})
    serve(deployment)
''')

TRIGGER = textwrap.dedent('''
    import asyncio, json, time
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    async def deployment_when_ready():
        async with get_client() as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    return await client.read_deployment_by_name("lfmcdm-cohort/daily-cohort")
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1)

    deployment = asyncio.run(deployment_when_ready())
    run = run_deployment("lfmcdm-cohort/daily-cohort", parameters={"n_videos": 2}, timeout=900)
    print(json.dumps({"state": run.state.type.value, "crons": [s.schedule.cron for s in deployment.schedules],
                      "active": [s.active for s in deployment.schedules]}))
''')


def test_daily_cohort_deployment_runs_on_a_prefect_server(dvc_project, tmp_path, prefect_env):
    root = tmp_path / "project"
    shutil.copytree(dvc_project, root, symlinks=True, ignore=shutil.ignore_patterns(".dvc", "synthetic", "checkpoints"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["synthesis"].update(cohort="daily", steps=2, shard_size=1)
    (root / "params_daily.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-c", SERVE, "params_daily.yaml", str(root)], cwd=root,
                              env=prefect_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        trigger = subprocess.run([sys.executable, "-c", TRIGGER], cwd=root, env=prefect_env, capture_output=True,
                                 text=True, timeout=1200)
    finally:
        stop_process(server)
        log.close()
    served = (tmp_path / "serve.log").read_text()[-4000:]
    assert trigger.returncode == 0, trigger.stdout[-2000:] + trigger.stderr[-4000:] + served
    result = json.loads(trigger.stdout.strip().splitlines()[-1])
    assert result["crons"] == [DAILY_CRON] and all(result["active"])  # deployed with its schedule
    assert result["state"] == "COMPLETED", served
    cohorts = sorted((root / "data/synthetic").glob("daily-*"))
    assert len(cohorts) == 1, cohorts  # daily=True: one dated cohort folder
    manifest = pq.read_table(cohorts[0] / "manifest.parquet").to_pylist()
    assert len(manifest) == 2 and {r["steps"] for r in manifest} == {2}
    assert all((cohorts[0] / r["path"]).exists() for r in manifest)


def test_cohort_flow_sends_shards_to_the_dask_cluster_in_params(dvc_project, tmp_path, prefect_env):
    """`synthesis.dask_address` alone (no CLI flag) sends the shards to that cluster (issue 17)."""
    from distributed import Client, LocalCluster, get_task_stream

    root = tmp_path / "project"
    shutil.copytree(dvc_project, root, symlinks=True, ignore=shutil.ignore_patterns(".dvc", "synthetic", "checkpoints"))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["synthesis"].update(cohort="dask", n_videos=2, steps=2, shard_size=1,
                                   dask_address=cluster.scheduler_address)
        (root / "params_dask.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        with get_task_stream(client) as stream:
            proc = subprocess.run([sys.executable, "-m", "flows.cohort", "--params", "params_dask.yaml"], cwd=root,
                                  env=prefect_env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert len(stream.data) >= 2  # both shards ran on the cluster's worker
    assert pq.read_table(root / "data/synthetic/dask/manifest.parquet").num_rows == 2
