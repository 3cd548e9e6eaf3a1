"""The on-disk data contract (docs/design.md), defined once: every stage, test and flow asks here.

Paths are relative to the repository (or test) root so the same code serves the demo, CI's
temporary folders and a cluster checkout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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

    def clip(self, file_name: str) -> Path:
        return self.clips / f"{file_name}.npy"

    def metrics_file(self, stage: str) -> Path:
        return self.metrics / f"{stage}.json"
