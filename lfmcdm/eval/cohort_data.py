"""Reading what evaluation compares: a synthetic cohort folder and the real videos' stored features."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lfmcdm.data.tables import load_array, read_videos
from lfmcdm.data.video_io import read_gray
from lfmcdm.layout import Layout


@dataclass
class Cohort:
    """``data/synthetic/<name>/``: its manifest rows (all samples) and FileList rows (privacy-passing).

    Only shipped rows have a video (``path``); a privacy-failing one is in the manifest alone.
    """

    name: str
    directory: Path
    manifest: list[dict]
    filelist: dict[str, dict]  # sample_id -> FileList.csv row (FileName, EF, Split, ...)

    @property
    def shipped(self) -> list[dict]:
        """Manifest rows whose video is in the cohort (privacy-passing)."""
        return [r for r in self.manifest if r.get("path")]

    def videos(self) -> Iterator[tuple[dict, np.ndarray]]:
        """(manifest row, uint8 ``(T, H, W)``) of the shipped videos, one at a time: a cohort never has to fit in memory."""
        for row in self.shipped:
            video, _ = read_gray(self.directory / row["path"])
            yield row, video


def load_cohort(directory: Path, max_videos: int | None = None) -> Cohort:
    """Read a cohort folder written by the synthesize stage (lfmcdm.synth.cohort)."""
    directory = Path(directory)
    manifest_path = directory / "manifest.parquet"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: not found; run `lfmcdm stage synthesize` first")
    manifest = pq.read_table(manifest_path).to_pylist()
    if max_videos is not None:
        manifest = manifest[:max_videos]
    return Cohort(directory.name, directory, manifest, read_filelist(directory / "FileList.csv"))


def read_filelist(path: Path) -> dict[str, dict]:
    """EchoNet FileList.csv rows by FileName, EF parsed (None when empty)."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["FileName"]: {**r, "EF": float(r["EF"]) if r.get("EF") not in (None, "") else None} for r in rows}


def real_rows(layout: Layout, splits: tuple[str, ...]) -> list[dict]:
    """Usable real videos of ``splits`` (rows of videos.parquet)."""
    return read_videos(layout, splits)


def reid_frames(layout: Layout, name: str) -> np.ndarray | None:
    """Stored per-frame ReID embeddings of a real video (None when pseudo_labels has not run)."""
    path = layout.reid / f"{name}.npy"
    return np.asarray(load_array(layout.reid, name), np.float32) if path.exists() else None


def motion_bank(layout: Layout) -> dict[str, np.ndarray]:
    """The motion bank by file name (empty when motion_bank has not run)."""
    return layout.read_motion_bank().vectors if layout.motion.exists() else {}
