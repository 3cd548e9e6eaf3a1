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


#: How far a split is held out of training: a synthetic row is never less held out than its sources.
HELD_OUT_RANK = {"TRAIN": 0, "VAL": 1, "TEST": 2}


def safe_split(drawn: str, *source_splits: str) -> str:
    """The row's split: the drawn one, raised to the most held-out split of the real sources.

    Why: a downstream team mixes synthetic TRAIN rows into its training set. A synthetic video made
    from a real VAL/TEST patient's appearance or motion carries that patient into training and leaks
    the evaluation set; it has to stay in (at least) that patient's own held-out split.
    """
    return max((drawn, *source_splits), key=HELD_OUT_RANK.__getitem__)


def _pick_splits(n: int, cfg: SynthesisConfig, rng: np.random.Generator) -> list[str]:
    counts = {s: int(round(n * getattr(cfg.splits, s))) for s in ("VAL", "TEST")}
    labels = ["VAL"] * counts["VAL"] + ["TEST"] * counts["TEST"]
    labels = (["TRAIN"] * max(0, n - len(labels)) + labels)[:n]
    return [labels[i] for i in rng.permutation(n)]


def cohort_rng(cohort: str, seed: int) -> np.random.Generator:
    """The plan's generator: seeded by the global seed and a hash of the *whole* cohort name.

    Why the whole name: daily cohorts differ only at the end of their names (``demo-20261130`` vs
    ``demo-20261201``); a prefix of the name would give every day the same pairs and seeds.
    """
    digest = hashlib.sha256(cohort.encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, len(digest), 4)]
    return np.random.default_rng([seed, *words])


class _Deck:
    """Draws every video once, in a shuffled order, before any video is drawn again.

    Why not independent draws: 48 draws with replacement from 40 donors used only 31 of them (one five
    times), and the cohort's EF spread is its donors' (a low-EF donor left out is a range the cohort
    never shows); a deck uses all 40 and repeats 8. Appearances likewise.
    """

    def __init__(self, videos: list[dict], rng: np.random.Generator) -> None:
        self.videos, self.rng, self.order = videos, rng, []

    def draw(self, avoid: str | None = None) -> dict:
        """The next video of the deck, skipping ``avoid`` (a sample's own appearance) where another is left."""
        pick = self._find(avoid)
        if pick is None:  # the deck is empty, or holds only ``avoid``: shuffle in a fresh one
            self.order += [self.videos[i] for i in self.rng.permutation(len(self.videos))]
            pick = self._find(avoid)
        return self.order.pop(0 if pick is None else pick)  # None: ``avoid`` is the only video there is

    def _find(self, avoid: str | None) -> int | None:
        return next((k for k, v in enumerate(self.order) if v["file_name"] != avoid), None)


def plan_cohort(cfg: SynthesisConfig, videos: list[dict], motion_names: set[str], seed: int) -> list[SampleSpec]:
    """Pair appearances and motions by ``cfg.strategy``; ``videos`` are rows of videos.parquet."""
    rng = cohort_rng(cfg.cohort, seed)
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
    appearance_deck, donor_deck = _Deck(appearances, rng), _Deck(donors, rng)
    plan = []
    for i in range(cfg.n_videos):
        if cfg.strategy == "reconstruct":
            appearance = donor = appearances[i % len(appearances)]
        else:
            appearance = appearance_deck.draw()
            donor = donor_deck.draw(avoid=appearance["file_name"])
        plan.append(SampleSpec(
            sample_id=f"{cfg.cohort}-{i:06d}",
            appearance_source=appearance["file_name"],
            motion_source=donor["file_name"],
            seed=int(rng.integers(0, 2**31 - 1)),
            donor_ef=donor["ef"],
            split=safe_split(splits[i], appearance["split"], donor["split"]),
        ))
    return plan


def plan_hash(plan: list[SampleSpec], settings: dict) -> str:
    """Identity of a cohort's content: the plan plus everything that changes the pixels."""
    payload = json.dumps({"plan": [asdict(s) for s in plan], "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
