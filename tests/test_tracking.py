"""A stage's MLflow run (lfmcdm/tracking.py): it starts on first use, while the store warms up on a side thread,
and still ends as MLflow's own ``start_run`` block would (docs/design.md, "Tracking")."""

from __future__ import annotations

import threading

import pytest

from lfmcdm import tracking
from tests.conftest import tiny_params


def _runs(params, root):
    from mlflow import MlflowClient

    client = MlflowClient(tracking.tracking_uri(params.tracking, root))
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _stage(runs, name):
    [run] = [r for r in runs if r.data.tags.get("lfmcdm.stage") == name]
    return run


def test_a_stage_run_that_logs_nothing_still_ends_finished_with_its_params_under_its_parent(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.PIPELINE_ENV, "p-quiet")
    params = tiny_params()
    with tracking.stage_run(params.tracking, tmp_path, "quiet", {"vae": {"steps": 3}}):
        pass
    runs = _runs(params, tmp_path)
    run = _stage(runs, "quiet")
    [parent] = [r for r in runs if r.data.tags.get("lfmcdm.role") == "parent"]
    assert run.info.status == "FINISHED"
    assert run.data.params == {"vae.steps": "3"}
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags["lfmcdm.pipeline_id"] == "p-quiet"


def test_a_stage_that_raises_leaves_a_failed_run_with_what_it_logged_before(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.PIPELINE_ENV, "p-fail")
    params = tiny_params()
    with pytest.raises(ValueError, match="bad frame"):
        with tracking.stage_run(params.tracking, tmp_path, "broken", {}):
            tracking.log_metrics({"loss": 0.5, "skipped": None}, step=1)
            raise ValueError("bad frame")
    run = _stage(_runs(params, tmp_path), "broken")
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"loss": 0.5}
    from mlflow import active_run

    assert active_run() is None and tracking.active_run() is None  # nothing left open for the next stage


def test_the_run_starts_on_first_use_and_logging_outside_a_stage_starts_no_run(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.PIPELINE_ENV, "p-lazy")
    params = tiny_params()
    tracking.log_metrics({"loss": 1.0})  # no stage run: nothing logged, no stray run
    with tracking.stage_run(params.tracking, tmp_path, "lazy", {}) as current:
        assert current.run is None  # not started yet: the store warms up on its side thread
        seen: list = []
        other = threading.Thread(target=lambda: seen.append(tracking.active_run()))
        other.start()
        other.join()
        assert seen == [None]  # MLflow's active run is per thread: another thread never starts the stage's
        run = tracking.active_run()
        assert run is current.run and tracking.active_run() is run
    assert [r.data.tags["lfmcdm.stage"] for r in _runs(params, tmp_path)
            if r.data.tags.get("lfmcdm.role") == "stage"] == ["lazy"]


def test_a_store_that_fails_to_open_fails_the_stage_in_its_own_thread(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.PIPELINE_ENV, "p-broken-store")
    (tmp_path / "mlflow.db").write_text("not a database")
    params = tiny_params()
    with pytest.raises(Exception, match="(?i)database"):
        with tracking.stage_run(params.tracking, tmp_path, "doomed", {}):
            pass
    assert tracking.active_run() is None


def test_stage_runs_do_not_nest(tmp_path, monkeypatch):
    monkeypatch.setenv(tracking.PIPELINE_ENV, "p-nest")
    params = tiny_params()
    with tracking.stage_run(params.tracking, tmp_path, "outer", {}):
        with pytest.raises(RuntimeError, match="inside stage 'outer'"):
            with tracking.stage_run(params.tracking, tmp_path, "inner", {}):
                pass
    assert [r.data.tags["lfmcdm.stage"] for r in _runs(params, tmp_path)
            if r.data.tags.get("lfmcdm.role") == "stage"] == ["outer"]
