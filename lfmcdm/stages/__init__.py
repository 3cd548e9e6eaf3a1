"""The pipeline stages: one implementation each, shared by the CLI, ``dvc.yaml`` and Prefect.

A stage module exposes ``run(ctx) -> dict`` returning its metrics; :func:`run_stage` wraps it in
an MLflow child run and writes ``metrics/<stage>.json`` atomically (keys that cannot be computed
on the data at hand are written as ``null``, never omitted).
"""

from __future__ import annotations

import importlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfmcdm import preflight
from lfmcdm.atomic import write_json
from lfmcdm.config import Params
from lfmcdm.layout import Layout


@dataclass(frozen=True)
class StageInfo:
    """What a stage is and what it reads, declared once (docs/design.md, "How to add a stage").

    ``params`` are the params.yaml keys the stage reads, dotted as dvc.yaml names them (a whole section
    or one key); they are logged to MLflow. ``inputs`` are the data and model paths it reads, relative to
    the root as dvc.yaml's ``deps`` write them. tests/test_stage_contract.py holds dvc.yaml to both.
    """

    name: str
    help: str
    params: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    metrics: str | None = None  # metrics/<metrics>.json (docs/design.md's metrics contract); None = none

    @property
    def metrics_name(self) -> str:
        return self.metrics or self.name

    @property
    def module(self) -> str:
        return f"lfmcdm.stages.{self.name}"


_INGESTED = ("data/interim/videos.parquet", "data/interim/clips")
_CLIPS = (*_INGESTED, "data/interim/phase.parquet")  # clips with their label-free phase (pseudo_labels)
_PHANTOM_TRUTH = "data/raw/phantom"  # only its truth.parquet (phantom.out_dir), to measure label-free estimates
_SYNTH_KEYS = tuple(f"synthesis.{k}" for k in (  # what evaluate reads of synthesis: the yardstick and the generator
    "cohort", "n_videos", "strategy", "appearance_splits", "motion_splits", "ef_range", "n_frames", "sampler", "steps",
    "guidance_scale", "privacy_percentile", "privacy_heldout_splits"))

#: In pipeline order.
STAGES: dict[str, StageInfo] = {
    s.name: s
    for s in [
        StageInfo("phantom", "Generate the phantom EchoNet dataset (when no real data is configured).",
                  ("seed", "phantom", "data.echonet_root")),
        StageInfo("ingest", "Decode, resample and validate the source videos into clips + videos.parquet.",
                  ("data",), ("data/raw",)),
        StageInfo("pseudo_labels", "Label-free ED/ES phase, pseudo optical flow, self-supervised ReID.",
                  ("seed", "pseudo.phase", "pseudo.flow", "pseudo.reid", "train", "data.echonet_root", "phantom.out_dir"),
                  (*_INGESTED, _PHANTOM_TRUTH)),
        StageInfo("train_mafe", "Train the motion and appearance feature extractor (MAFE).",
                  ("seed", "mafe", "train"), (*_CLIPS, "data/interim/flow", "data/interim/reid"), "mafe"),
        StageInfo("motion_bank", "Encode every video's motion vector into data/processed/motion.parquet.",
                  ("mafe", "train.device", "data.target_fps"), ("models/mafe", *_CLIPS)),
        StageInfo("train_vae", "Train the AutoencoderKL on echo frames.",
                  ("seed", "vae", "latents.batch_size", "data.frame_size", "train"), _CLIPS, "vae"),
        StageInfo("cache_latents", "Encode every clip once into cached VAE latents.",
                  ("latents", "train"), ("models/vae", *_CLIPS)),
        StageInfo("train_diffusion", "Train the motion-conditioned video diffusion UNet.",
                  ("seed", "diffusion", "data.target_fps", "data.echonet_root", "phantom.out_dir", "train"),
                  ("data/processed/latents", "data/processed/motion.parquet", *_CLIPS, _PHANTOM_TRUTH, "models/vae"),
                  "diffusion"),
        StageInfo("distill", "Distil the MCDM into a few-step (1-4) student: synthesis.sampler lcm.",
                  ("seed", "distill", "diffusion.motion_eval", "data.echonet_root", "phantom.out_dir", "train"),
                  ("models/mcdm", "models/vae", "data/processed/latents", "data/processed/motion.parquet", *_CLIPS,
                   _PHANTOM_TRUTH), "distill"),
        StageInfo("synthesize", "Sample a synthetic cohort: videos, FileList.csv, manifest.parquet.",
                  ("seed", "synthesis", "pseudo.phase", "diffusion.motion_eval.cavity", "data.echonet_root", "train"),
                  ("models/mcdm", "models/distill", "models/vae", "models/reid", "data/processed/motion.parquet", "data/processed/latents",
                   "data/interim/reid", "data/interim/videos.parquet", "data/interim/phase.parquet"), "synthesis"),
        StageInfo("evaluate", "Evaluate the cohort and write the HTML report.",
                  ("seed", "evaluate", *_SYNTH_KEYS, "pseudo.phase", "diffusion.motion_eval.cavity", "data.echonet_root",
                   "data.target_fps", "data.frame_size", "mafe.bank_times_s", "phantom.out_dir", "train"),
                  ("data/synthetic/${synthesis.cohort}", _PHANTOM_TRUTH, *_CLIPS, "data/interim/reid",
                   "data/processed/motion.parquet", "models/reid", "models/mafe", "models/mcdm", "models/distill", "models/vae"),
                  "eval"),
    ]
}


def declared_params(params: Params, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of the dotted ``keys`` (a section or one key), JSON-ready: what a stage run logs to MLflow."""
    out: dict[str, Any] = {}
    for key in keys:
        value: Any = params
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return out


@dataclass
class StageContext:
    """What a stage gets: validated params, the data layout, and whether to draw progress bars."""

    params: Params
    layout: Layout
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.layout.root


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf -> None so the JSON stays valid and 'not computable' reads as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def format_metric(value: float | None) -> str:
    """A metric for a stage's one-line summary: 4 decimals, ``n/a`` when missing or not finite."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _is_main_process() -> bool:
    """Rank 0 of a distributed launch (torchrun/accelerate set RANK), or a plain single process."""
    return os.environ.get("RANK", "0") == "0"


def run_stage(name: str, params: Params, root: str | Path = ".", progress: bool = True,
              metrics_path: Path | None = None, **extra: Any) -> dict[str, Any]:
    """Run one stage by name inside an MLflow child run; write and return its metrics.

    The metrics go to ``metrics/<stage>.json`` (DVC's metrics output), or to ``metrics_path`` for a run
    that is not the pipeline's (another cohort: DVC's record of the pipeline's own cohort must not change).
    ``extra`` reaches the stage as ``ctx.extra`` (e.g. the Prefect cohort flow's shard mapper).
    """
    from lfmcdm import tracking

    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    from lfmcdm.runtime import configure_allocator

    info = STAGES[name]
    configure_allocator(params.train.malloc_cache_mb)
    ctx = StageContext(params=params, layout=Layout(Path(root)), progress=progress, extra=extra)
    module = importlib.import_module(info.module)
    section_params = declared_params(params, info.params)
    if not _is_main_process():  # under `accelerate launch`, only rank 0 tracks and writes metrics
        return _clean(module.run(ctx) or {})
    preflight.run(name, params, ctx.layout)  # outputs writable, tracking store usable: one line if not
    with tracking.stage_run(params.tracking, ctx.root, name, section_params):
        start = time.perf_counter()
        metrics = _clean(module.run(ctx) or {})
        tracking.log_metrics({**metrics, f"{name}_wall_s": time.perf_counter() - start})
    if metrics:
        write_json(metrics_path or ctx.layout.metrics_file(info.metrics_name), metrics)
    return metrics
