"""A loader that reads a folder the way EchoNet-Dynamic's ``Echo`` dataset does (written here from its
documented behaviour, not copied): the rules a cohort must satisfy for EchoNet's own tools to read it.

- ``FileList.csv``: ``Split`` compared upper-case; ``FileName`` gets ``.avi`` appended *only* when it
  has no extension (others are silently dropped); every listed video must be in ``Videos/``
  (otherwise FileNotFoundError).
- ``VolumeTracings.csv``: the header is exactly ``FileName,X1,Y1,X2,Y2,Frame``; rows are keyed by
  FileName *with* ``.avi``; frames are recorded in file order; videos with fewer than two traced
  frames are dropped.
- Targets: ``EF`` from FileList; ``LargeIndex`` (ED) = the *last* traced frame, ``SmallIndex`` (ES) =
  the *first*; ``LargeTrace``/``SmallTrace`` = polygon through chord ends (first line, the long axis,
  skipped).
- Videos are decoded with OpenCV, as EchoNet's ``loadvideo`` does.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

TRACING_HEADER = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]


class EchoRules:
    def __init__(self, root: Path, split: str = "all") -> None:
        self.root = Path(root)
        self.split = split.upper()
        data = pd.read_csv(self.root / "FileList.csv")
        data["Split"] = data["Split"].map(lambda x: x.upper())
        if self.split != "ALL":
            data = data[data["Split"] == self.split]
        self.header = data.columns.tolist()
        self.listed = data["FileName"].tolist()
        self.fnames = [fn + ".avi" for fn in self.listed if os.path.splitext(fn)[1] == ""]
        self.outcome = data.values.tolist()
        missing = set(self.fnames) - set(os.listdir(self.root / "Videos"))
        if missing:
            raise FileNotFoundError(f"{len(missing)} videos could not be found in {self.root / 'Videos'}")
        self.frames: dict[str, list[int]] = collections.defaultdict(list)
        self.trace = collections.defaultdict(lambda: collections.defaultdict(list))
        with open(self.root / "VolumeTracings.csv") as f:
            header = f.readline().strip().split(",")
            assert header == TRACING_HEADER, header
            for line in f:
                filename, x1, y1, x2, y2, frame = line.strip().split(",")
                frame = int(frame)
                if frame not in self.trace[filename]:
                    self.frames[filename].append(frame)
                self.trace[filename][frame].append((float(x1), float(y1), float(x2), float(y2)))
        keep = [len(self.frames[f]) >= 2 for f in self.fnames]
        self.fnames = [f for f, k in zip(self.fnames, keep) if k]
        self.outcome = [o for o, k in zip(self.outcome, keep) if k]

    def __len__(self) -> int:
        return len(self.fnames)

    def targets(self, index: int) -> dict:
        key = self.fnames[index]
        large, small = self.frames[key][-1], self.frames[key][0]
        return {"FileName": key, "EF": float(self.outcome[index][self.header.index("EF")]),
                "LargeIndex": large, "SmallIndex": small,
                "LargeTrace": polygon_area(self.trace[key][large]), "SmallTrace": polygon_area(self.trace[key][small])}

    def video(self, index: int) -> tuple[np.ndarray, float]:
        """(frames ``(F, H, W, 3)``, FPS reported by the container) via OpenCV."""
        capture = cv2.VideoCapture(str(self.root / "Videos" / self.fnames[index]))
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
        capture.release()
        return np.stack(frames), fps


def polygon_area(lines: list[tuple[float, float, float, float]]) -> float:
    """Area of EchoNet's trace polygon: chord X1 ends, then X2 ends reversed (the long axis skipped)."""
    chords = np.asarray(lines[1:], np.float64)
    x = np.concatenate([chords[:, 0], chords[::-1, 2]])
    y = np.concatenate([chords[:, 1], chords[::-1, 3]])
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
