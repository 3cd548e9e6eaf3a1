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
    name: str
    sections: tuple[str, ...]
    help: str
    metrics: str | None = None  # metrics/<metrics>.json (docs/design.md's metrics contract); None = none

    @property
    def metrics_name(self) -> str:
        return self.metrics or self.name

    @property
    def module(self) -> str:
        return f"lfmcdm.stages.{self.name}"


#: In pipeline order. ``sections`` are the params.yaml sections a stage reads (logged to MLflow).
STAGES: dict[str, StageInfo] = {
    s.name: s
    for s in [
        StageInfo("phantom", ("phantom",), "Generate the phantom EchoNet dataset (when no real data is configured)."),
        StageInfo("ingest", ("data", "pseudo"), "Decode, resample and validate the source videos into clips + videos.parquet."),
        StageInfo("pseudo_labels", ("pseudo", "train"), "Label-free ED/ES phase, pseudo optical flow, self-supervised ReID."),
        StageInfo("train_mafe", ("mafe", "train"), "Train the motion and appearance feature extractor (MAFE).", "mafe"),
        StageInfo("motion_bank", ("mafe",), "Encode every video's motion vector into data/processed/motion.parquet."),
        StageInfo("train_vae", ("vae", "latents", "train", "data"), "Train the AutoencoderKL on echo frames.", "vae"),
        StageInfo("cache_latents", ("vae", "latents", "train"), "Encode every clip once into cached VAE latents."),
        StageInfo("train_diffusion", ("diffusion", "train", "data"), "Train the motion-conditioned video diffusion UNet.", "diffusion"),
        StageInfo("synthesize", ("synthesis",), "Sample a synthetic cohort: videos, FileList.csv, manifest.parquet.", "synthesis"),
        StageInfo("evaluate", ("evaluate", "synthesis"), "Evaluate the cohort and write the HTML report.", "eval"),
    ]
}


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


def _is_main_process() -> bool:
    """Rank 0 of a distributed launch (torchrun/accelerate set RANK), or a plain single process."""
    return os.environ.get("RANK", "0") == "0"


def run_stage(name: str, params: Params, root: str | Path = ".", progress: bool = True, **extra: Any) -> dict[str, Any]:
    """Run one stage by name inside an MLflow child run; write and return its metrics.

    ``extra`` reaches the stage as ``ctx.extra`` (e.g. the Prefect cohort flow's shard mapper).
    """
    from lfmcdm import tracking

    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    info = STAGES[name]
    ctx = StageContext(params=params, layout=Layout(Path(root)), progress=progress, extra=extra)
    module = importlib.import_module(info.module)
    section_params = {s: params.section(s).model_dump(mode="json") for s in info.sections}
    section_params["seed"] = params.seed
    if not _is_main_process():  # under `accelerate launch`, only rank 0 tracks and writes metrics
        return _clean(module.run(ctx) or {})
    preflight.run(name, params, ctx.layout)  # outputs writable, tracking store usable: one line if not
    with tracking.stage_run(params.tracking, ctx.root, name, section_params):
        start = time.perf_counter()
        metrics = _clean(module.run(ctx) or {})
        tracking.log_metrics({**metrics, f"{name}_wall_s": time.perf_counter() - start})
    if metrics:
        write_json(ctx.layout.metrics_file(info.metrics_name), metrics)
    return metrics
