"""Shared base classes for config sections (kept apart from config.py to avoid import cycles)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, objects are immutable, numbers are finite.

    ``.inf``/``.nan`` (or ``1e400``) are refused everywhere: no knob means "unbounded" by infinity, and an
    infinite rate or size only overflows later, far from the line that set it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def non_empty_path(value: str) -> str:
    """A configured path may not be empty: ``""`` would silently mean the current folder (or the phantom)."""
    if not value.strip():
        raise ValueError("must be a path (use null for none), not an empty string")
    return value


class Range(Section):
    """A closed interval ``[low, high]``."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class SplitFractions(Section):
    """Shares of TRAIN / VAL / TEST (must sum to 1)."""

    TRAIN: float = Field(0.75, ge=0, le=1)
    VAL: float = Field(0.125, ge=0, le=1)
    TEST: float = Field(0.125, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitFractions":
        total = self.TRAIN + self.VAL + self.TEST
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:.4f}")
        return self
