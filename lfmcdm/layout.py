"""The on-disk data contract (docs/design.md), defined once: every stage, test and flow asks here.

Paths are relative to the repository (or test) root so the same code serves the demo, CI's
temporary folders and a cluster checkout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lfmcdm.config import Params


@dataclass(frozen=True)
class ModelSpec:
    """A trained model: its folder under ``models/``, its MLflow registry name and the stage that writes it."""

    key: str
    folder: str
    registry_name: str
    stage: str


#: Every trained model, once (docs/design.md, "Model registry"): folders, registry names, producing stage.
MODELS: dict[str, ModelSpec] = {
    m.key: m
    for m in [
        ModelSpec("reid", "reid", "lfmcdm-reid", "pseudo_labels"),
        ModelSpec("mafe", "mafe", "lfmcdm-mafe", "train_mafe"),
        ModelSpec("vae", "vae", "lfmcdm-vae", "train_vae"),
        ModelSpec("mcdm", "mcdm", "lfmcdm-mcdm", "train_diffusion"),
        ModelSpec("distill", "distill", "lfmcdm-mcdm-distilled", "distill"),  # few-step student of mcdm
    ]
}
GENERATOR_NAME = "lfmcdm-generator"  # the MLflow pyfunc that bundles all four (stage evaluate)


@dataclass(frozen=True)
class MotionBank:
    """``data/processed/motion.parquet`` read back: one MAFE motion vector per video."""

    vectors: dict[str, np.ndarray]  # file_name -> float32 vector
    mafe_versions: frozenset[str]  # the MAFE content versions that encoded the bank (one, when current)

    @property
    def mafe_version(self) -> str | None:
        """The bank's MAFE version as manifests and ``mcdm.json`` record it (comma-joined; None when empty)."""
        return ",".join(sorted(self.mafe_versions)) if self.mafe_versions else None


@dataclass(frozen=True)
class Layout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    # data/interim: ingest and pseudo labels
    @property
    def videos(self) -> Path:
        return self.root / "data/interim/videos.parquet"

    @property
    def phase(self) -> Path:
        """Label-free ED/ES of every clip (stage pseudo_labels)."""
        return self.root / "data/interim/phase.parquet"

    @property
    def rejected(self) -> Path:
        return self.root / "data/interim/rejected.parquet"

    @property
    def clips(self) -> Path:
        return self.root / "data/interim/clips"

    @property
    def flow(self) -> Path:
        return self.root / "data/interim/flow"

    @property
    def reid(self) -> Path:
        return self.root / "data/interim/reid"

    # data/processed: motion bank and latents
    @property
    def motion(self) -> Path:
        return self.root / "data/processed/motion.parquet"

    @property
    def latents(self) -> Path:
        return self.root / "data/processed/latents"

    @property
    def synthetic(self) -> Path:
        return self.root / "data/synthetic"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def model_dir(self, key: str) -> Path:
        """``models/<folder>`` of a trained model (keys of :data:`MODELS`)."""
        return self.models / MODELS[key].folder

    def source_root(self, params: Params) -> Path:
        """The EchoNet folder: ``data.echonet_root`` (relative to the repo) or the phantom's ``phantom.out_dir``."""
        configured = params.data.echonet_root
        return (self.root / configured) if configured else (self.root / params.phantom.out_dir)

    def read_motion_bank(self) -> MotionBank:
        """The motion bank written by stage ``motion_bank`` (the one reader: training, synthesis, evaluation)."""
        import pyarrow.parquet as pq

        if not self.motion.exists():
            raise FileNotFoundError(f"{self.motion}: no motion bank; run `lfmcdm stage motion_bank` first")
        rows = pq.read_table(self.motion).to_pylist()
        return MotionBank({r["file_name"]: np.asarray(r["motion"], dtype=np.float32) for r in rows},
                          frozenset(str(r.get("mafe_version")) for r in rows))

    def clip(self, file_name: str) -> Path:
        return self.clips / f"{file_name}.npy"

    def metrics_file(self, stage: str) -> Path:
        return self.metrics / f"{stage}.json"
