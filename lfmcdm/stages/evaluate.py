"""Stage ``evaluate``: score a synthetic cohort and write the report a person looks at.

Inputs: ``data/synthetic/<cohort>/`` (synthesize), the real videos' stored features
(videos.parquet, clips, ReID embeddings, motion bank) and models (``models/reid``,
``models/mafe``). Outputs: ``metrics/eval.json`` (returned here, written by the stage runner)
and ``reports/<cohort>/`` (index.html, images, GIFs, DVC plot data), also logged to MLflow.
The evaluated model set is then registered as ``lfmcdm-generator`` (:mod:`lfmcdm.synth.publish`:
``champion`` moves only when this evaluation beats the champion's on a comparable measure).
Everything is recomputed from its inputs, so a re-run gives the same numbers.
"""

from __future__ import annotations

import time

from lfmcdm.eval.cohort_data import load_cohort
from lfmcdm.eval.cohort_eval import evaluate_cohort
from lfmcdm.eval.report.build import ReportInputs, clean_metrics, write_report
from lfmcdm.eval.report.training_curves import latest_curves
from lfmcdm.runtime import configure_threads, resolve_device, seed_everything

REPORT_ARTIFACTS = "report"  # MLflow artifact folder of the evaluate run


def cohort_name(params) -> str:
    return params.evaluate.cohort or params.synthesis.cohort


def run(ctx) -> dict:
    params, layout = ctx.params, ctx.layout
    cfg = params.evaluate
    name = cohort_name(params)
    cohort = load_cohort(layout.synthetic / name, cfg.max_synthetic_videos)
    configure_threads(params.train)
    seed_everything(params.seed + cfg.seed)
    start = time.perf_counter()
    evaluation = evaluate_cohort(params, layout, cohort, resolve_device(params.train), ctx.progress)
    metrics = clean_metrics(evaluation.metrics)
    training = latest_curves(cfg.report.training_stages)
    out = write_report(layout.reports / name, ReportInputs(cohort, evaluation, metrics, layout, cfg.report, training))
    _log_report(out, name, cfg.report.log_to_mlflow)
    _publish(params, layout, metrics)
    print(f"evaluate: cohort {name!r}: {metrics['synthetic_videos']} videos scored in "
          f"{time.perf_counter() - start:.1f} s; report {out / 'index.html'}")
    return metrics


def _log_report(folder, name: str, enabled: bool) -> None:
    """Attach the report folder to the active (stage) MLflow run."""
    import mlflow

    if enabled and mlflow.active_run() is not None:
        mlflow.log_artifacts(str(folder), artifact_path=f"{REPORT_ARTIFACTS}/{name}")


def _publish(params, layout, metrics: dict) -> None:
    """Register the generator the cohort came from (skipped without a trained MCDM or an MLflow run)."""
    import mlflow

    from lfmcdm.layout import GENERATOR_NAME
    from lfmcdm.models.pipeline import META_FILE
    from lfmcdm.synth.publish import publish_generator

    if mlflow.active_run() is None or not (layout.model_dir("mcdm") / META_FILE).exists():
        print(f"evaluate: {GENERATOR_NAME} not registered (no trained MCDM or no MLflow run)")
        return
    done = publish_generator(params, layout, metrics)
    print(f"evaluate: registered {GENERATOR_NAME} v{done.version}; champion "
          f"{'moved to it' if done.champion else 'unchanged'} ({done.reason})")
