"""MLflow tracking: one parent run per pipeline invocation, one child run per stage.

A pipeline invocation is identified by ``LFMCDM_PIPELINE_ID`` when set (Prefect flows and
``make demo`` set it); otherwise by the nearest ``dvc`` ancestor process, so that a plain
``dvc repro`` - which starts every stage as its own process - still groups its stages under one
parent run. A stage run alone gets a parent of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: `lfmcdm stage`'s warm-start client imports this module, not pydantic
    from lfmcdm.config import TrackingConfig

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls from an offline pipeline

PIPELINE_ENV = "LFMCDM_PIPELINE_ID"
PARENT_TAG = "mlflow.parentRunId"
CONTENT_TAG = "lfmcdm.content_version"  # sha256:<16 hex> of a registered model folder's files

#: The user's own MLFLOW_TRACKING_URI, read before anything here points MLflow somewhere: MLflow 3's
#: ``set_tracking_uri`` writes the variable back into ``os.environ``, so reading it later would make
#: the first project tracked in a process capture every later one (another root, another test).
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def tracking_uri(cfg: TrackingConfig, root: Path) -> str:
    """The tracking URI, with a relative sqlite path anchored at the repository root."""
    uri = USER_TRACKING_URI or cfg.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str((Path(root) / uri[len(prefix):]).resolve())
    return uri


def pipeline_id() -> str:
    """Who this stage belongs to: env var, else the enclosing ``dvc repro`` process, else itself."""
    if os.environ.get(PIPELINE_ENV):
        return os.environ[PIPELINE_ENV]
    try:
        import psutil

        for proc in psutil.Process().parents():
            cmd = " ".join(proc.cmdline()[:3])
            if "dvc" in os.path.basename(proc.name()) or "/dvc " in cmd or cmd.endswith("/dvc"):
                return f"dvc-{proc.pid}-{int(proc.create_time())}"
    except Exception:  # noqa: BLE001 - process inspection is best effort
        pass
    return f"single-{uuid.uuid4().hex[:12]}"


def _quiet_store_setup() -> None:
    """Silence MLflow's INFO lines about creating/migrating a new sqlite store.

    They go to stderr on the first stage of a fresh checkout and bury the one-line error a stage
    prints for bad input (docs/design.md, "Hostile input and faults"); warnings and errors still show.
    """
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def setup(cfg: TrackingConfig, root: Path) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    import mlflow

    _quiet_store_setup()
    mlflow.set_tracking_uri(tracking_uri(cfg, root))
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        artifacts = (Path(root) / "mlartifacts").resolve().as_uri()
        experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def ensure_parent(experiment_id: str, pid: str) -> str:
    """Find or create the parent run of pipeline invocation ``pid``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    query = f"tags.`lfmcdm.pipeline_id` = '{pid}' and tags.`lfmcdm.role` = 'parent'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"pipeline {pid}",
                            tags={"lfmcdm.pipeline_id": pid, "lfmcdm.role": "parent"})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b.c": value}`` for MLflow params."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


@contextlib.contextmanager
def stage_run(cfg: TrackingConfig, root: Path, stage: str, params: dict[str, Any]) -> Iterator[Any]:
    """An MLflow run for one stage, nested under its pipeline's parent run, with its params logged."""
    import mlflow

    experiment_id = setup(cfg, root)
    pid = pipeline_id()
    parent = ensure_parent(experiment_id, pid)
    tags = {PARENT_TAG: parent, "lfmcdm.stage": stage, "lfmcdm.pipeline_id": pid, "lfmcdm.role": "stage"}
    with mlflow.start_run(run_name=stage, experiment_id=experiment_id, tags=tags) as run:
        flat = {k: str(v)[:500] for k, v in flatten(params).items()}
        if flat:
            mlflow.log_params(flat)
        yield run


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log the numeric metrics (None = not computable on this data, so not logged)."""
    import mlflow

    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numeric:
        mlflow.log_metrics(numeric, step=step)


def register_model(name: str, local_dir: str | Path, aliases: tuple[str, ...] = ("champion",)) -> str | None:
    """Log a saved model folder (safetensors / diffusers) to the active run and register a new version.

    MLflow's ``register_model`` insists on an MLflow-flavoured model; our weights are plain
    safetensors/diffusers folders (loadable without MLflow), so the version is created from the
    logged artifact folder directly. Returns the version number, or None with no active run.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    run = mlflow.active_run()
    if run is None:
        return None
    mlflow.log_artifacts(str(local_dir), artifact_path=name)
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/{name}", run_id=run.info.run_id)
    from lfmcdm.fingerprint import content_version  # what a cohort manifest's *_version names

    client.set_model_version_tag(name, version.version, CONTENT_TAG, content_version(local_dir))
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version.version)
    return version.version


def resolve_model(name: str, alias: str, cfg: TrackingConfig, root: Path) -> tuple[Path, str]:
    """Download (or locate) the model folder registered under ``name@alias``; returns (path, version)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(cfg, root))
    client = MlflowClient()
    if alias == "latest":  # reserved in MLflow 3: not settable, but resolvable as the newest version
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise LookupError(f"no version of model {name!r} in the MLflow registry")
        version = max(versions, key=lambda v: int(v.version))
    else:
        version = client.get_model_version_by_alias(name, alias)
    return Path(mlflow.artifacts.download_artifacts(version.source)), str(version.version)
