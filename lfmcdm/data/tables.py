"""Reading the pipeline's own tables and arrays (the data contracts of docs/design.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lfmcdm.layout import Layout


def read_videos(layout: Layout, splits: tuple[str, ...] | None = None, usable_only: bool = True) -> list[dict]:
    """Rows of ``videos.parquet`` (optionally only some splits, and only rows with status ``ok``)."""
    if not layout.videos.exists():
        raise FileNotFoundError(f"{layout.videos}: not found; run `lfmcdm stage ingest` first")
    rows = pq.read_table(layout.videos).to_pylist()
    if usable_only:
        rows = [r for r in rows if r["status"] == "ok"]
    if splits:
        rows = [r for r in rows if r["split"] in splits]
    return rows


def load_clip(layout: Layout, file_name: str, mmap: bool = True) -> np.ndarray:
    """A clip ``(T, H, W)`` uint8; memory-mapped by default so datasets never load whole."""
    return np.load(layout.clip(file_name), mmap_mode="r" if mmap else None)


def load_array(directory: Path, file_name: str, mmap: bool = True) -> np.ndarray:
    """``<directory>/<file_name>.npy`` (flow, reid embeddings, latents)."""
    return np.load(Path(directory) / f"{file_name}.npy", mmap_mode="r" if mmap else None)
