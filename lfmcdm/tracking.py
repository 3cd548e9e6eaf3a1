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
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class _StoreWarmup(threading.Thread):
    """Imports MLflow, opens the store and finds the parent run on a side thread.

    Why: that is ~4 s of every stage process (MLflow and SQLAlchemy imports, the sqlite store), and on the
    stage's own thread it delays the work by as much. On a side thread it overlaps the stage's first seconds,
    which run in torch kernels and worker processes with the GIL released (docs/benchmarks.md).
    """

    def __init__(self, cfg: TrackingConfig, root: Path):
        super().__init__(name="lfmcdm-mlflow-warmup", daemon=True)
        self.cfg, self.root = cfg, root
        self.result: tuple[str, str, str] | None = None  # experiment id, pipeline id, parent run id
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            experiment_id = setup(self.cfg, self.root)
            pid = pipeline_id()
            self.result = (experiment_id, pid, ensure_parent(experiment_id, pid))
        except BaseException as err:  # noqa: BLE001 - handed to the stage's thread, raised there
            self.error = err

    def get(self) -> tuple[str, str, str]:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class StageRun:
    """A stage's MLflow run, started on first use: :func:`active_run` (every logging call goes through it)
    or the end of the stage. Until then the store warms up on a side thread (:class:`_StoreWarmup`)."""

    def __init__(self, cfg: TrackingConfig, root: Path, stage: str, params: dict[str, Any]):
        self.stage, self.params = stage, params
        self.thread = threading.get_ident()  # MLflow keeps the active run per thread: start it on this one
        self.run: Any = None
        self.warmup = _StoreWarmup(cfg, root)
        self.warmup.start()

    def start(self) -> Any:
        """The started run (starting it now if this is its first use)."""
        if self.run is None:
            import mlflow

            experiment_id, pid, parent = self.warmup.get()
            tags = {PARENT_TAG: parent, "lfmcdm.stage": self.stage, "lfmcdm.pipeline_id": pid, "lfmcdm.role": "stage"}
            self.run = mlflow.start_run(run_name=self.stage, experiment_id=experiment_id, tags=tags)
            flat = {k: str(v)[:500] for k, v in flatten(self.params).items()}
            if flat:
                mlflow.log_params(flat)
        return self.run


_STAGE_RUN: StageRun | None = None  # the stage run in progress in this process, if any


@contextlib.contextmanager
def stage_run(cfg: TrackingConfig, root: Path, stage: str, params: dict[str, Any]) -> Iterator[StageRun]:
    """An MLflow run for one stage, nested under its pipeline's parent run, with its params logged.

    The run is FINISHED when the block ends normally and FAILED when it raises, as ``mlflow.start_run``'s.
    """
    global _STAGE_RUN
    if _STAGE_RUN is not None:
        raise RuntimeError(f"stage {stage!r} started inside stage {_STAGE_RUN.stage!r}'s run")
    _STAGE_RUN = current = StageRun(cfg, root, stage, params)
    status = "FAILED"
    try:
        yield current
        status = "FINISHED"
    finally:
        _STAGE_RUN = None
        try:
            current.start()  # a stage that logged nothing still gets its run, with its params and status
        finally:
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.end_run(status)


def active_run() -> Any:
    """The stage's MLflow run (started now if this is its first use), or MLflow's own active run outside
    a stage, or None. Code that logs to a stage's run asks here, not ``mlflow.active_run()``."""
    current = _STAGE_RUN
    if current is not None and current.thread == threading.get_ident():
        return current.start()
    import mlflow

    return mlflow.active_run()


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log the numeric metrics to the active run (None = not computable on this data, so not logged); without
    a run, nothing (never a stray run)."""
    import mlflow

    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numeric and active_run() is not None:
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

    run = active_run()
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
