"""``evaluate`` section: cohort metrics (metrics/eval.json) and the HTML report.

Defaults are the tiny CPU demo: every part of the stage runs in well under a minute on 2 cores.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lfmcdm.config_base import Section

Split = Literal["TRAIN", "VAL", "TEST"]


class EfRegressorConfig(Section):
    """Downstream utility: a tiny CNN that reads EF from short, downsampled clips.

    Every video (real or synthetic, whatever its frame rate) is resampled to ``fps`` and
    ``size`` px, so the three training sets (real / synthetic / both) see the same input format.
    """

    fps: float = Field(16.0, gt=0, description="clips are resampled to this rate (the demo cohort's rate)")
    frames: int = Field(16, ge=2, description="frames per input window")
    size: int = Field(32, ge=8, description="frames are downsampled to size x size")
    channels: tuple[int, ...] = Field((8, 16, 32), min_length=1, description="per-frame conv widths, one stride-2 block each")
    change_gain: float = Field(4.0, gt=0, description="scale of the (frame - window mean) input channel")
    steps: int = Field(300, ge=1, description="optimiser steps per training")
    batch_size: int = Field(16, ge=1, description="windows per step")
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    test_windows: int = Field(4, ge=1, description="evenly spaced windows averaged per test video")
    repeats: int = Field(5, ge=1, description="regressors trained per training set (seeds seed, seed + 1, ...); their mean "
                         "prediction is scored: one tiny CNN on a few dozen videos moves R^2 by +/-0.3 with its seed alone")
    test_splits: tuple[Split, ...] = Field(("TEST",), min_length=1, description="real videos the regressors are scored on")
    min_test_videos: int = Field(12, ge=1, description="fewer test videos than this: VAL videos are added")
    train_splits: tuple[Split, ...] = Field(("TRAIN",), min_length=1, description="real videos of training set (a)")
    workers: int = Field(0, ge=0, description="processes training the regressors on the CPU, one thread each "
                         "when they fill the cores; 0 = one per core")


class ReportConfig(Section):
    """What the HTML report shows."""

    grid_videos: int = Field(4, ge=1, description="real and synthetic videos in the frame grid")
    grid_frames: int = Field(6, ge=1, description="frames per video in the grid (evenly spaced)")
    animated_samples: int = Field(3, ge=0, description="animated GIFs: appearance source | motion donor | generated")
    gif_scale: int = Field(2, ge=1, description="GIF upscaling factor")
    curve_samples: int = Field(6, ge=1, description="donor vs generated cavity-area panels")
    sample_rows: int = Field(50, ge=0, description="rows of the per-sample table")
    histogram_bins: int = Field(30, ge=2)
    dpi: int = Field(100, ge=50)
    training_stages: tuple[str, ...] = ("train_mafe", "train_vae", "train_diffusion")
    curves_per_stage: int = Field(4, ge=1, description="metric histories drawn per training stage (losses first)")
    log_to_mlflow: bool = Field(True, description="log the report folder as an artifact of the evaluate run")


class EvaluateConfig(Section):
    """Evaluation of one synthetic cohort against the real videos it was learned from."""

    cohort: str | None = Field(None, description="cohort under data/synthetic/; None = synthesis.cohort")
    reference_splits: tuple[Split, ...] = Field(("TRAIN",), min_length=1,
                                                description="real videos the cohort is compared with (the model's training set)")
    heldout_splits: tuple[Split, ...] = Field(("VAL", "TEST"), min_length=1,
                                              description="real videos scored like the cohort: the real-vs-real floor of each metric")
    max_synthetic_videos: int | None = Field(None, gt=0, description="evaluate at most this many cohort videos (None = all)")
    frechet_frames_per_video: int | None = Field(16, gt=0, description="evenly spaced frames per video in the ReID Fréchet "
                                                 "distance (real and synthetic alike; None = all)")
    frechet_eps: float = Field(1e-6, gt=0, description="diagonal offset retried when a covariance product is singular")
    anchor_tolerance_s: float = Field(0.04, ge=0, description="cavity-area curves are compared from where the donor's "
                                      "motion starts (its label-free ED) give or take this much")
    min_curve_frames: int = Field(8, ge=3, description="fewest overlapping frames for a cavity-area correlation")
    embed_batch: int = Field(64, ge=1, description="frames / pairs per encoder call")
    seed: int = Field(0, description="added to the global seed for the EF regressors and the shuffled baselines")
    ef: EfRegressorConfig = EfRegressorConfig()
    report: ReportConfig = ReportConfig()
