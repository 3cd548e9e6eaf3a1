"""``phantom.a4c`` section: the EchoNet-like distributions of the apical four-chamber phantom.

Only what a user may want to change per dataset lives here (population statistics); the anatomy's
proportions are named constants in :mod:`lfmcdm.data.phantom_a4c`, next to the code they shape.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from lfmcdm.config_base import Range, Section


class A4cConfig(Section):
    """Population of the A4C phantom: EF, beat-to-beat variation, frame rate spread, atrial size."""

    ef_mean: float = Field(58.0, gt=0, lt=100, description="EF (%) of the normal population (EchoNet: ~55 +/- 12)")
    ef_std: float = Field(8.0, ge=0, description="EF spread (%) of the normal population")
    low_ef_share: float = Field(0.15, ge=0, le=1, description="share of videos drawn from the low-EF tail")
    low_ef: Range = Field(Range(low=15, high=40), description="EF (%) range of the low-EF tail (uniform)")
    fps_jitter: float = Field(0.06, ge=0, lt=0.5, description="per-video FPS = round(fps * (1 +/- this)), EchoNet-like")
    beat_jitter: float = Field(0.05, ge=0, lt=0.3, description="relative beat-to-beat spread of period and stroke")
    atria_scale: float = Field(1.0, gt=0.3, le=2.5, description="atrial size multiplier (1 = normal; >1 = enlarged)")
    size_jitter: float = Field(0.08, ge=0, lt=0.3, description="relative per-video spread of heart size")

    @model_validator(mode="after")
    def _tail_below_mean(self) -> "A4cConfig":
        if self.low_ef.high > self.ef_mean:
            raise ValueError(f"low_ef.high ({self.low_ef.high}) must be <= ef_mean ({self.ef_mean})")
        return self
