"""Planning a cohort: which appearance goes with which motion, under which seed.

The plan is computed up front and deterministically from params + seed, so every synthetic
video is reproducible from its manifest row and any shard can be (re)generated independently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from lfmcdm.settings.synthesis import SynthesisConfig


@dataclass(frozen=True)
class SampleSpec:
    sample_id: str
    appearance_source: str
    motion_source: str
    seed: int
    donor_ef: float | None
    split: str


class PlanError(ValueError):
    """No valid pairing exists (e.g. no donors in the requested EF range)."""


def _pick_splits(n: int, cfg: SynthesisConfig, rng: np.random.Generator) -> list[str]:
    counts = {s: int(round(n * getattr(cfg.splits, s))) for s in ("VAL", "TEST")}
    labels = ["VAL"] * counts["VAL"] + ["TEST"] * counts["TEST"]
    labels = (["TRAIN"] * max(0, n - len(labels)) + labels)[:n]
    return [labels[i] for i in rng.permutation(n)]


def plan_cohort(cfg: SynthesisConfig, videos: list[dict], motion_names: set[str], seed: int) -> list[SampleSpec]:
    """Pair appearances and motions by ``cfg.strategy``; ``videos`` are rows of videos.parquet."""
    rng = np.random.default_rng([seed, int.from_bytes(cfg.cohort.encode()[:8].ljust(8, b"\0"), "little")])
    appearances = [v for v in videos if v["split"] in cfg.appearance_splits]
    donors = [v for v in videos if v["split"] in cfg.motion_splits and v["file_name"] in motion_names]
    if cfg.strategy == "ef_targeted":
        if cfg.ef_range is None:
            raise PlanError("synthesis.strategy ef_targeted needs synthesis.ef_range")
        donors = [v for v in donors if v["ef"] is not None and cfg.ef_range.low <= v["ef"] <= cfg.ef_range.high]
    if cfg.strategy == "reconstruct":
        appearances = [v for v in appearances if v["file_name"] in motion_names]
        donors = appearances
    if not appearances or not donors:
        raise PlanError(
            f"no {'appearance' if not appearances else 'motion donor'} videos for strategy {cfg.strategy!r} "
            f"(appearance splits {list(cfg.appearance_splits)}, motion splits {list(cfg.motion_splits)})"
        )
    splits = _pick_splits(cfg.n_videos, cfg, rng)
    plan = []
    for i in range(cfg.n_videos):
        appearance = appearances[i % len(appearances)] if cfg.strategy == "reconstruct" else appearances[rng.integers(len(appearances))]
        if cfg.strategy == "reconstruct":
            donor = appearance
        else:
            others = [d for d in donors if d["file_name"] != appearance["file_name"]] or donors
            donor = others[rng.integers(len(others))]
        plan.append(SampleSpec(
            sample_id=f"{cfg.cohort}-{i:06d}",
            appearance_source=appearance["file_name"],
            motion_source=donor["file_name"],
            seed=int(rng.integers(0, 2**31 - 1)),
            donor_ef=donor["ef"],
            split=splits[i],
        ))
    return plan


def plan_hash(plan: list[SampleSpec], settings: dict) -> str:
    """Identity of a cohort's content: the plan plus everything that changes the pixels."""
    payload = json.dumps({"plan": [asdict(s) for s in plan], "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
