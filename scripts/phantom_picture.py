"""Draw docs/phantom.png: frames of the ellipse phantom and the apical four-chamber phantom side by side.

Each row shows two videos of one kind at end-diastole and end-systole (phantom truth), so the
picture shows what changes over a beat as well as what a frame looks like.

    .venv/bin/python scripts/phantom_picture.py [--out docs/phantom.png] [--seed 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from lfmcdm.config import PhantomConfig
from lfmcdm.data import phantom

SCALE = 2  # upsampling of the 112 px frames, so the picture is readable on a page


def _tiles(kind: str, seed: int, videos: int) -> list[tuple[np.ndarray, str]]:
    cfg = PhantomConfig(kind=kind, n_videos=videos, n_frames={"low": 80, "high": 80})
    tiles = []
    for spec in phantom.sample_specs(cfg, seed):
        frames = phantom.render(spec)
        ed, es = phantom.traced_frames(spec)
        tiles += [(frames[ed], f"{kind} ED"), (frames[es], f"{kind} ES")]
    return tiles


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    big = cv2.resize(frame, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
    cv2.putText(big, text, (6, big.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
    return np.pad(big, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/phantom.png")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--videos", type=int, default=2, help="videos per kind (two frames each)")
    args = parser.parse_args()
    rows = [np.concatenate([_label(f, t) for f, t in _tiles(kind, args.seed, args.videos)], axis=1)
            for kind in ("ellipse", "a4c")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(rows, axis=0), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{out}: {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
