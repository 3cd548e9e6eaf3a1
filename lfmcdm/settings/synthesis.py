"""``synthesis`` section: bulk cohort sampling, privacy filter, sharding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from lfmcdm.config_base import Range, Section, SplitFractions
from lfmcdm.settings.distill import MAX_SAMPLE_STEPS

Split = Literal["TRAIN", "VAL", "TEST"]


class CohortSplits(SplitFractions):
    """Split labels written to the synthetic FileList.csv (downstream teams train/validate on them)."""

    TRAIN: float = Field(0.8, ge=0, le=1)
    VAL: float = Field(0.1, ge=0, le=1)
    TEST: float = Field(0.1, ge=0, le=1)


class SynthesisConfig(Section):
    # no dots: EchoNet's loader only appends ".avi" to FileNames without an extension (and drops the rest)
    cohort: str = Field("demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    n_videos: int = Field(64, gt=0)
    strategy: Literal["reconstruct", "cross", "ef_targeted"] = "cross"
    # motion from TRAIN patients, appearance from held-out VAL patients; a row is raised to its sources' most
    # held-out split (lfmcdm.synth.plan.safe_split), so no held-out patient reaches synthetic TRAIN
    appearance_splits: tuple[Split, ...] = ("VAL",)  # not the EF test split: its rows could not train the EF regressor
    motion_splits: tuple[Split, ...] = ("TRAIN",)
    ef_range: Range | None = None  # ef_targeted: donors whose EF lies in this range
    sampler: Literal["dpmsolver++", "ddim", "ddpm", "lcm"] = Field(
        "dpmsolver++", description="lcm: the distilled student (models/distill), 1-4 steps, unguided; the demo's "
        "40-step student shrinks the donor's stroke, so the teacher makes the default cohort (docs/benchmarks.md)")
    steps: int = Field(10, gt=0)
    guidance_scale: float = Field(1.5, ge=0)
    n_frames: int | None = Field(None, gt=0, description="None = the model's window; longer = overlapping windows")
    window_overlap: int = Field(4, ge=0)
    batch_size: int = Field(4, gt=0)
    shard_size: int = Field(8, gt=0)
    privacy_percentile: float = Field(95.0, gt=0, le=100)
    privacy_heldout_splits: tuple[Split, ...] = Field(
        ("VAL", "TEST"), min_length=1, description="real patients the privacy threshold is calibrated on "
        "(never TRAIN: those are the protected patients); synthesis and evaluation both read it")
    codec: Literal["mjpeg", "mpeg4", "libx264"] = "mjpeg"
    export_fps: float | None = Field(50.0, gt=0, description="written videos are resampled to this rate "
                                     "(EchoNet-Dynamic's ~50 fps, which its loaders' clip sampling assumes); None = the model's")
    source_licence: str | None = Field(None, description="licence terms of the source data for the data card; "
                                       "None = by source (the phantom, or EchoNet-Dynamic's Research Use Agreement)")
    splits: CohortSplits = CohortSplits()
    workers: int = Field(2, gt=0, description="shards processed at once (threads) by the stage; each video depends "
                         "only on its own seed, so any number gives the same cohort")
    dask_address: str | None = None  # Prefect cohort flow: scheduler address of a Dask cluster
    shard_retries: int = Field(2, ge=0, description="Prefect cohort flow: retries of a failed shard (idempotent)")

    @model_validator(mode="after")
    def _few_steps_for_lcm(self) -> "SynthesisConfig":
        if self.sampler == "lcm" and self.steps > MAX_SAMPLE_STEPS:
            raise ValueError(f"steps: the lcm sampler (the distilled student) takes 1-{MAX_SAMPLE_STEPS} steps, "
                             f"got {self.steps}")
        return self

    @field_validator("privacy_heldout_splits")
    @classmethod
    def _not_train(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "TRAIN" in value:
            raise ValueError("TRAIN is the protected split; the privacy threshold is calibrated on held-out patients")
        return value
