"""Reading the EchoNet-Dynamic tables (``FileList.csv``, ``VolumeTracings.csv``) defensively.

Real downloads contain surprises; the rule is: a malformed *file* (wrong header) is a clear
error naming the file and the expected columns, a malformed *row* is quarantined with a reason.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
SPLITS = ("TRAIN", "VAL", "TEST")
NUMERIC_COLUMNS = ["EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames"]


class EchoNetFormatError(ValueError):
    """A table whose structure (not just one row) is wrong."""


def normalise_name(name: str) -> str:
    """EchoNet's FileList omits ``.avi`` while VolumeTracings includes it; compare without it."""
    name = str(name).strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def _read_table(path: Path, expected: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise EchoNetFormatError(f"{path}: file not found")
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if header is None:
        raise EchoNetFormatError(f"{path}:1: empty file; expected a header with columns {', '.join(expected)}")
    header = [h.strip() for h in header]
    missing = [c for c in expected if c not in header]
    if missing:
        raise EchoNetFormatError(
            f"{path}:1: malformed header {header}; missing column(s) {', '.join(missing)}; "
            f"expected columns: {', '.join(expected)}"
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    frame["_line"] = range(2, len(frame) + 2)  # 1-based, after the header, for error messages
    return frame


def read_filelist(root: str | Path) -> pd.DataFrame:
    """FileList.csv as strings plus a ``_line`` column; numeric parsing happens per row in :func:`row_problems`."""
    return _read_table(Path(root) / "FileList.csv", FILELIST_COLUMNS)


def read_tracings(root: str | Path) -> pd.DataFrame | None:
    """VolumeTracings.csv (optional in our contract: a dataset without tracings is still usable)."""
    path = Path(root) / "VolumeTracings.csv"
    if not path.exists():
        return None
    return _read_table(path, TRACING_COLUMNS)


@dataclass(frozen=True)
class FileRow:
    """One validated FileList row."""

    file_name: str
    split: str
    ef: float | None
    esv: float | None
    edv: float | None
    height: int
    width: int
    fps: float
    n_frames: int
    line: int


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def parse_row(row: dict) -> tuple[FileRow | None, str | None]:
    """Validate one FileList row; return the row or the reason it is quarantined."""
    name = normalise_name(row["FileName"])
    if not name:
        return None, "empty FileName"
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        return None, f"unsafe FileName {name!r}: path components are not allowed"
    values = {c: _number(row[c]) for c in NUMERIC_COLUMNS}
    ef = values["EF"]
    if ef is None:
        return None, f"EF is not a number ({row['EF']!r})"
    if not 0 <= ef <= 100:
        return None, f"EF {ef} outside [0, 100]"
    if values["FPS"] is None or values["FPS"] <= 0:
        return None, f"FPS must be > 0 (got {row['FPS']!r})"
    for col in ("FrameHeight", "FrameWidth", "NumberOfFrames"):
        if values[col] is None or values[col] <= 0:
            return None, f"{col} must be a positive number (got {row[col]!r})"
    split = str(row["Split"]).strip().upper()
    if split not in SPLITS:
        return None, f"Split {row['Split']!r} not one of {', '.join(SPLITS)}"
    return FileRow(
        file_name=name, split=split, ef=ef, esv=values["ESV"], edv=values["EDV"],
        height=int(values["FrameHeight"]), width=int(values["FrameWidth"]), fps=float(values["FPS"]),
        n_frames=int(values["NumberOfFrames"]), line=int(row["_line"]),
    ), None


def traced_phase(tracings: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Traced (ED, ES) source-frame indices per file: of the two traced frames, the larger cavity is ED.

    Cavity size is approximated by the summed chord lengths (EchoNet's first line per frame is the
    long axis, the rest are chords), which orders the two frames exactly like the traced area.
    """
    out: dict[str, tuple[int, int]] = {}
    df = tracings.copy()
    for col in ("X1", "Y1", "X2", "Y2", "Frame"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df = df.dropna(subset=["X1", "Y1", "X2", "Y2", "Frame"])
    df["name"] = df["FileName"].map(normalise_name)
    df["length"] = ((df.X2 - df.X1) ** 2 + (df.Y2 - df.Y1) ** 2) ** 0.5
    for name, group in df.groupby("name", sort=False):
        sizes = {}
        for frame, lines in group.groupby("Frame", sort=False):
            sizes[int(frame)] = float(lines["length"].iloc[1:].sum())
        if len(sizes) >= 2:
            ordered = sorted(sizes, key=sizes.get)
            out[name] = (ordered[-1], ordered[0])
    return out
