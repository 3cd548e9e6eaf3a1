"""Reading the EchoNet-Dynamic tables (``FileList.csv``, ``VolumeTracings.csv``) defensively.

Real downloads contain surprises; the rule is: a malformed *file* (wrong header) is a clear
error naming the file and the expected columns, a malformed *row* is quarantined with a reason.
"""

from __future__ import annotations

import math
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lfmcdm.data.csv_safe import BadRow, CsvTable, parse, read_bytes
from lfmcdm.data.csv_safe import CsvFormatError as EchoNetFormatError  # noqa: F401 - the name callers catch

FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
SPLITS = ("TRAIN", "VAL", "TEST")
NUMERIC_COLUMNS = ["EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames"]

#: Longest FileName (UTF-8 bytes). Files are named after it with a prefix and suffix of up to ~30
#: bytes (``.<name>.npy.<random>.tmp``, ``<name>.avi``) and a name component may hold 255 bytes.
MAX_NAME_BYTES = 200
INT32_MAX = 2**31 - 1  # frame counts, sizes and indices are stored as int32 (videos.parquet)
MAX_FPS = 1000.0  # no echo machine records faster; larger values are unit errors
MAX_COORDINATE = 1e6  # tracing coordinates are pixels; beyond this the row is garbage, not a frame


def normalise_name(name: str) -> str:
    """EchoNet's FileList omits ``.avi`` while VolumeTracings includes it; compare without it."""
    name = str(name).strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a file under Videos/ (checked before any filesystem call), or None."""
    if not name:
        return "empty FileName"
    if len(name.encode("utf-8", errors="surrogateescape")) > MAX_NAME_BYTES:
        return f"FileName is {len(name.encode('utf-8', errors='surrogateescape'))} bytes long (limit {MAX_NAME_BYTES})"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        return f"unsafe FileName {name!r}: control characters are not allowed"
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        return f"unsafe FileName {name!r}: path components are not allowed"
    return None


def _read(path: Path, expected: list[str], max_bytes: int) -> CsvTable:
    if not path.exists():
        raise EchoNetFormatError(f"{path}: file not found")
    if path.is_symlink():
        target, root = os.path.realpath(path), os.path.realpath(path.parent)
        if os.path.commonpath([target, root]) != root:
            raise EchoNetFormatError(f"{path}: symlink leaves the dataset folder (-> {target})")
    return parse(path, read_bytes(path, max_bytes), expected)


def read_filelist(root: str | Path, max_bytes: int) -> CsvTable:
    """FileList.csv split into well-formed rows (text, with line numbers) and bad ones; see :func:`parse_row`."""
    return _read(Path(root) / "FileList.csv", FILELIST_COLUMNS, max_bytes)


def read_tracings(root: str | Path, max_bytes: int) -> CsvTable | None:
    """VolumeTracings.csv (optional in our contract: a dataset without tracings is still usable)."""
    path = Path(root) / "VolumeTracings.csv"
    if not path.exists() and not path.is_symlink():
        return None
    return _read(path, TRACING_COLUMNS, max_bytes)


def as_frame(table: CsvTable) -> pd.DataFrame:
    """The well-formed rows as a string DataFrame with a ``_line`` column (for the GX checks)."""
    frame = pd.DataFrame([values for _, values in table.rows], columns=table.header, dtype=str)
    frame["_line"] = [line for line, _ in table.rows]
    return frame


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


def number(text: str, low: float, high: float, integer: bool = False) -> tuple[float | None, str | None]:
    """Parse ``text`` as a finite number in ``[low, high]`` (a whole one if ``integer``), or say why not.

    The range is checked on the float before any ``int()`` so ``inf`` / ``1e400`` / ``1e10`` are
    refused here instead of overflowing a conversion or an int32 column later.
    """
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None, f"is not a number ({text!r})"
    if math.isnan(x):
        return None, f"is not a number ({text!r})"
    if math.isinf(x):
        return None, f"is not finite ({text!r})"
    if not low <= x <= high:
        return None, f"{x:g} outside [{low:g}, {high:g}]"
    if integer and x != int(x):
        return None, f"{x:g} is not a whole number"
    return x, None


#: FileList's numbers: (low, high, whole number, required).
FILELIST_BOUNDS = {
    "EF": (0.0, 100.0, False, True),
    "ESV": (0.0, 1e6, False, False),
    "EDV": (0.0, 1e6, False, False),
    "FrameHeight": (1, INT32_MAX, True, True),
    "FrameWidth": (1, INT32_MAX, True, True),
    "FPS": (1e-3, MAX_FPS, False, True),
    "NumberOfFrames": (1, INT32_MAX, True, True),
}


def parse_row(row: dict, line: int) -> tuple[FileRow | None, str | None]:
    """Validate one FileList row; return the row or the reason it is quarantined."""
    name = normalise_name(row["FileName"])
    problem = name_problem(name)
    if problem:
        return None, problem
    values: dict[str, float | None] = {}
    for col, (low, high, integer, required) in FILELIST_BOUNDS.items():
        text = row[col].strip()
        if not required and text.lower() in ("", "nan", "na", "n/a"):
            values[col] = None
            continue
        values[col], why = number(text, low, high, integer)
        if why:
            return None, f"{col} {why}"
    split = str(row["Split"]).strip().upper()
    if split not in SPLITS:
        return None, f"Split {row['Split']!r} not one of {', '.join(SPLITS)}"
    return FileRow(
        file_name=name, split=split, ef=values["EF"], esv=values["ESV"], edv=values["EDV"],
        height=int(values["FrameHeight"]), width=int(values["FrameWidth"]), fps=float(values["FPS"]),
        n_frames=int(values["NumberOfFrames"]), line=line,
    ), None


@dataclass(frozen=True)
class TracingRow:
    """One validated VolumeTracings row (a chord of the traced left ventricle in one frame)."""

    file_name: str
    x1: float
    y1: float
    x2: float
    y2: float
    frame: int
    line: int


def parse_tracing(row: dict, line: int) -> tuple[TracingRow | None, str | None]:
    """Validate one tracing row: numeric, finite coordinates and a whole, non-negative Frame."""
    name = normalise_name(row["FileName"])
    problem = name_problem(name)
    if problem:
        return None, problem
    coords = {}
    for col in ("X1", "Y1", "X2", "Y2"):
        coords[col], why = number(row[col], -MAX_COORDINATE, MAX_COORDINATE)
        if why:
            return None, f"tracing {col} {why}"
    frame, why = number(row["Frame"], 0, INT32_MAX, integer=True)
    if why:
        return None, f"tracing Frame {why}"
    return TracingRow(name, coords["X1"], coords["Y1"], coords["X2"], coords["Y2"], int(frame), line), None


def bad_row_reason(bad: BadRow) -> str:
    """A malformed row's reason as written to rejected.parquet."""
    return f"malformed row: {bad.reason}"


def traced_phase(tracings: list[TracingRow]) -> dict[str, tuple[int, int]]:
    """Traced (ED, ES) source-frame indices per file: of the two traced frames, the larger cavity is ED.

    Cavity size is approximated by the summed chord lengths (EchoNet's first line per frame is the
    long axis, the rest are chords), which orders the two frames exactly like the traced area.
    """
    chords: dict[str, dict[int, list[float]]] = {}
    for t in tracings:
        chords.setdefault(t.file_name, {}).setdefault(t.frame, []).append(math.hypot(t.x2 - t.x1, t.y2 - t.y1))
    out: dict[str, tuple[int, int]] = {}
    for name, frames in chords.items():
        sizes = {frame: float(sum(lengths[1:])) for frame, lengths in frames.items()}
        if len(sizes) >= 2:
            ordered = sorted(sizes, key=sizes.get)
            out[name] = (ordered[-1], ordered[0])
    return out
