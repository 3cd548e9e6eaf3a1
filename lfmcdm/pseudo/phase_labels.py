"""The label-free phase as a pseudo label: ED/ES of every clip -> ``data/interim/phase.parquet``.

The cardiac phase is the first pseudo label the pipeline derives, and everything after it (flow at
ED/ES, MAFE pairs, motion-bank anchors, diffusion windows, cavity curves) depends on it. It used to
be estimated by ingest's workers; here, in stage ``pseudo_labels``, ingest does what EchoNet's own
loader does (decode, resample, store) at 2.6x its speed, and re-tuning the phase (``pseudo.phase``)
re-runs pseudo_labels and what follows instead of re-decoding every video (docs/benchmarks.md,
"Scale"). Reading a stored clip back costs ~1 ms against the estimate's ~30 ms.

Kept free of heavy imports (no pyarrow, pandas, GX, MLflow) so spawned workers start fast; the table's
schema and checks are in ``lfmcdm.stages.pseudo_labels`` and ``lfmcdm.data.validation``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lfmcdm.data.phase import estimate_phase
from lfmcdm.settings.pseudo import PhaseConfig


@dataclass(frozen=True)
class PhaseJob:
    """One clip's phase, estimated in a worker process (picklable; the worker reads the clip itself)."""

    file_name: str
    clip_path: str
    fps: float
    cfg: PhaseConfig


def phase_one(job: PhaseJob) -> dict:
    """Worker entry point: one ``phase.parquet`` row; a flagged clip keeps its row, the flag as status."""
    phase = estimate_phase(np.load(job.clip_path), job.fps, job.cfg)
    return {"file_name": job.file_name, "ed_frame": phase.ed, "es_frame": phase.es, "status": phase.status,
            "ed_frames": list(phase.eds) if phase.ok else [], "es_frames": list(phase.ess) if phase.ok else [],
            "phase_confidence": phase.confidence}
