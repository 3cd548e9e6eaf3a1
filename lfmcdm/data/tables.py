"""Reading the pipeline's own tables and arrays (the data contracts of docs/design.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lfmcdm.layout import Layout


def read_videos(layout: Layout, splits: tuple[str, ...] | None = None, usable_only: bool = True) -> list[dict]:
    """Rows of ``videos.parquet`` with their label-free phase from ``phase.parquet`` (optionally only some
    splits, and only rows with status ``ok``: a phase was found)."""
    ingested = read_ingested(layout, splits)
    if not layout.phase.exists():
        raise FileNotFoundError(f"{layout.phase}: not found; run `lfmcdm stage pseudo_labels` first")
    phase = {r["file_name"]: r for r in pq.read_table(layout.phase).to_pylist()}
    missing = [row["file_name"] for row in ingested if row["file_name"] not in phase]
    if missing:
        raise ValueError(f"{layout.phase}: no phase for {len(missing)} ingested videos (first: {missing[0]}); "
                         "it is older than videos.parquet: run `lfmcdm stage pseudo_labels`")
    rows = [{**row, **phase[row["file_name"]]} for row in ingested]
    return [r for r in rows if r["status"] == "ok"] if usable_only else rows


def read_ingested(layout: Layout, splits: tuple[str, ...] | None = None) -> list[dict]:
    """Rows of ``videos.parquet`` as ingest wrote them (no phase yet)."""
    if not layout.videos.exists():
        raise FileNotFoundError(f"{layout.videos}: not found; run `lfmcdm stage ingest` first")
    rows = pq.read_table(layout.videos).to_pylist()
    return [r for r in rows if r["split"] in splits] if splits else rows


def load_clip(layout: Layout, file_name: str, mmap: bool = True) -> np.ndarray:
    """A clip ``(T, H, W)`` uint8; memory-mapped by default so datasets never load whole."""
    return np.load(layout.clip(file_name), mmap_mode="r" if mmap else None)


def load_array(directory: Path, file_name: str, mmap: bool = True) -> np.ndarray:
    """``<directory>/<file_name>.npy`` (flow, reid embeddings, latents)."""
    return np.load(Path(directory) / f"{file_name}.npy", mmap_mode="r" if mmap else None)
