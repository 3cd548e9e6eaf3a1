"""Ingestion throughput and peak memory: our PyAV + worker-pool ingest vs an OpenCV VideoCapture loop.

The baseline is the loader EchoNet-Dynamic's own code uses (``echonet.utils.loadvideo``:
``cv2.VideoCapture``, read frame by frame, convert colour, keep a 3-channel array). Each method
runs in a fresh subprocess on the same phantom videos so peak RSS is measured cleanly.

    python benchmarks/ingest.py --videos 200          # prints a Markdown table row per method
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("opencv_loop", "pyav_single", "lfmcdm_ingest")


def _opencv_loop(src: Path, out: Path) -> int:
    import cv2
    import numpy as np

    n = 0
    for path in sorted((src / "Videos").glob("*.avi")):
        capture = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
        video = np.stack(frames).transpose(3, 0, 1, 2)  # (C, T, H, W) as EchoNet's loadvideo returns
        np.save(out / f"{path.stem}.npy", video[0])
        n += 1
    return n


def _pyav_single(src: Path, out: Path) -> int:
    import numpy as np

    from lfmcdm.data.video_io import read_gray

    n = 0
    for path in sorted((src / "Videos").glob("*.avi")):
        frames, _ = read_gray(path)
        np.save(out / f"{path.stem}.npy", frames)
        n += 1
    return n


def _lfmcdm_ingest(src: Path, out: Path) -> int:
    from lfmcdm.config import parse_params
    from lfmcdm.layout import Layout
    from lfmcdm.stages import StageContext, ingest

    params = parse_params({"data": {"echonet_root": str(src)}})
    metrics = ingest.run(StageContext(params=params, layout=Layout(out), progress=False))
    return int(metrics["videos_kept"])


def _child(method: str, src: str, out: str) -> None:
    fn = {"opencv_loop": _opencv_loop, "pyav_single": _pyav_single, "lfmcdm_ingest": _lfmcdm_ingest}[method]
    start = time.perf_counter()
    n = fn(Path(src), Path(out))
    elapsed = time.perf_counter() - start
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"method": method, "videos": n, "seconds": elapsed, "videos_per_s": n / elapsed,
                      "peak_rss_mb": max(peak_self, peak_children) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--frames", type=int, default=175, help="frames per video (EchoNet averages ~175)")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    from lfmcdm.config import parse_params
    from lfmcdm.data import phantom

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "echonet"
        cfg = parse_params({"phantom": {"n_videos": args.videos, "n_frames": {"low": args.frames, "high": args.frames}}})
        phantom.write_dataset(cfg.phantom, src, seed=0)
        print(f"| method | videos | seconds | videos/s | peak RSS (MB) |\n|---|---|---|---|---|")
        for method in METHODS:
            out = Path(tmp) / method
            out.mkdir()
            proc = subprocess.run([sys.executable, __file__, "--child", method, str(src), str(out)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"| {r['method']} | {r['videos']} | {r['seconds']:.1f} | {r['videos_per_s']:.1f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
