"""The label-free (ED, ES) frame pair of each video and its middle frame: MAFE's unit of data.

``phase.parquet`` gives each video's label-free ``ed_frame``/``es_frame`` (pseudo_labels stage);
the middle frame ``mid = (ed + es) // 2`` is the interpolation target, and the flow contract's
entries 2 and 3 are the pseudo flows MID->ED and MID->ES.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lfmcdm.data.tables import load_array, load_clip
from lfmcdm.layout import Layout

FLOW_MID_TO_ED, FLOW_MID_TO_ES = 2, 3  # indices in data/interim/flow/<name>.npy (docs/design.md contract)


@dataclass(frozen=True)
class PairRef:
    file_name: str
    split: str
    ed: int
    es: int
    ef: float | None = None

    @property
    def mid(self) -> int:
        return (self.ed + self.es) // 2


def pair_refs(rows: list[dict], min_gap: int = 2) -> tuple[list[PairRef], list[str]]:
    """Pairs of the rows that have a usable ED/ES pair; also the names skipped (no phase, or too close)."""
    refs, skipped = [], []
    for row in rows:
        ed, es = row.get("ed_frame"), row.get("es_frame")
        if ed is None or es is None or abs(int(es) - int(ed)) < min_gap:
            skipped.append(row["file_name"])
            continue
        refs.append(PairRef(row["file_name"], row["split"], int(ed), int(es), row.get("ef")))
    return refs, skipped


def pair_frames(layout: Layout, ref: PairRef) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ED, ES and middle frame, uint8 (H, W) each."""
    clip = load_clip(layout, ref.file_name)
    return np.asarray(clip[ref.ed]), np.asarray(clip[ref.es]), np.asarray(clip[ref.mid])


def mid_flows(layout: Layout, ref: PairRef) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo flows MID->ED and MID->ES, float32 (H, W, 2) in pixels."""
    flow = load_array(layout.flow, ref.file_name)
    return np.asarray(flow[FLOW_MID_TO_ED], np.float32), np.asarray(flow[FLOW_MID_TO_ES], np.float32)


def mid_embedding(layout: Layout, ref: PairRef) -> np.ndarray:
    """Pseudo appearance (ReID) embedding of the middle frame, float32 (D,)."""
    return np.asarray(load_array(layout.reid, ref.file_name)[ref.mid], np.float32)


def missing_inputs(layout: Layout, refs: list[PairRef], flows: bool, reid: bool) -> list[str]:
    """Names whose pseudo flow / ReID file is needed but absent."""
    missing = []
    for ref in refs:
        if (flows and not (layout.flow / f"{ref.file_name}.npy").exists()) or \
           (reid and not (layout.reid / f"{ref.file_name}.npy").exists()):
            missing.append(ref.file_name)
    return missing
