"""Training curves of the model stages, read back from MLflow (tolerant: no runs, no curves)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

SEARCH_RUNS = 20  # recent runs of a stage inspected for one that logged curves (re-runs may log none)


def latest_curves(stages: tuple[str, ...]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """For each stage, the metric histories (> 1 point) of its most recent MLflow run that has any.

    Looks in the experiment of the active (evaluate stage) run, i.e. the store the stage runner
    configured; runs are found by the ``lfmcdm.stage`` tag it sets. Without an active run, or on
    any MLflow problem, the result is empty and the report says the curves are missing.
    """
    empty: dict[str, dict[str, list[tuple[int, float]]]] = {stage: {} for stage in stages}
    try:
        import mlflow
        from mlflow.tracking import MlflowClient

        active = mlflow.active_run()
        if active is None:
            return empty
        client = MlflowClient()
        return {stage: _stage_curves(client, [active.info.experiment_id], stage) for stage in stages}
    except Exception as err:  # noqa: BLE001 - the report must not fail for want of history
        log.warning("training curves unavailable: %s", err)
        return empty


def _stage_curves(client, experiment_ids: list[str], stage: str) -> dict[str, list[tuple[int, float]]]:
    runs = client.search_runs(experiment_ids, filter_string=f"tags.`lfmcdm.stage` = '{stage}'",
                              order_by=["attributes.start_time DESC"], max_results=SEARCH_RUNS)
    for run in runs:
        curves = {}
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            if len(history) > 1:
                curves[key] = sorted((int(m.step), float(m.value)) for m in history)
        if curves:
            return curves
    return {}
