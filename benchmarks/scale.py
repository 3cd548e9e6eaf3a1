"""Scale: ingest -> pseudo_labels -> cache_latents on N EchoNet-length phantom videos, and EchoNet's OpenCV loop.

Issue 14, part 2. Builds a scratch DVC project (the repo's ``dvc.yaml`` cut to the five stages up to
``cache_latents``, ``params.yaml`` plus the overrides below, ``lfmcdm/`` linked in) and runs the real
stages with the CLI, each followed by ``dvc commit`` (DVC's hashing and caching, timed apart from the
stage). Measured per stage: wall, peak RSS of the process tree (sampled) and of its largest process,
and disk per video. Then a no-op ``dvc status`` and ``dvc repro`` (twice each), and the reference:
EchoNet-Dynamic's ``echonet.utils.loadvideo`` loop (``cv2.VideoCapture``, every frame, BGR -> RGB
into a preallocated ``(F, H, W, 3)`` array) over the same videos, one process, plus our decoder alone.

Steady state: every stage also runs on a small project (``--small`` videos); the steady-state rate is
``(N - n) / (T_N - T_n)`` and the fixed start-up ``T_n - n / rate`` (process start, imports, worker
spawn, GX validations, ReID training, VAE loading...). The projection to EchoNet-Dynamic (10,030
videos) is ``start-up + videos / rate``, with the rate scaled linearly by cores (16 / 2 = 8x on a
16-core box): an upper bound on speed for stages that do not parallelise over videos.

    python benchmarks/scale.py --videos 1000              # ~1 h on 2 shared cores; JSON + Markdown out
    python benchmarks/scale.py --videos 200 --small 20    # quick iteration
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("phantom", "ingest", "pseudo_labels", "train_vae", "cache_latents")
MEASURED = ("ingest", "pseudo_labels", "cache_latents")
ECHONET_VIDEOS = 10_030
SAMPLE_S = 0.2  # RSS sampling period
#: Outputs whose size per video is reported (relative to the project root).
DISK = {"source videos": "data/raw/phantom/Videos", "clips": "data/interim/clips", "flow": "data/interim/flow",
        "reid": "data/interim/reid", "latents": "data/processed/latents", "dvc cache": ".dvc/cache"}


def overrides(args: argparse.Namespace, n_videos: int) -> dict:
    """params.yaml changes: n EchoNet-length videos; a VAE trained a few steps (encoding cost depends on
    the architecture, the demo profile's, not on the weights); torch on one thread per process (the rate
    of one core, which the projection multiplies by cores; on a shared machine two spinning torch
    threads ran train_vae ~20x slower)."""
    reid = {"steps": args.reid_steps} if args.reid_steps else {}
    return {
        "phantom": {"n_videos": min(n_videos, args.unique or n_videos), "n_frames": {"low": args.frames[0], "high": args.frames[1]},
                    "workers": args.workers},
        "data": {"workers": args.workers},
        "pseudo": {"flow": {"workers": args.workers}, "reid": reid},
        "vae": {"steps": args.vae_steps, "checkpoint_every": args.vae_steps, "log_every": args.vae_steps,
                "val_frames": 64, "scale_frames": 128},
        "train": {"torch_threads": args.torch_threads},
    }


def make_project(root: Path, params: dict, stages: tuple[str, ...] = STAGES) -> Path:
    from lfmcdm.config import _deep_merge

    root.mkdir(parents=True)
    for name in ("lfmcdm", "flows"):
        (root / name).symlink_to(REPO / name)
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    pipeline = {"stages": {k: v for k, v in pipeline["stages"].items() if k in stages}}
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    merged = _deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), params, "scale")
    (root / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    run(["dvc", "init", "--no-scm", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    return root


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LFMCDM_PIPELINE_ID")}
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out['PATH']}"
    out.update(CI="1", GX_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    return out


def run(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd``; wall and CPU seconds (all its processes: on a shared machine CPU time is the steadier
    number), peak RSS of its process tree (sum, sampled) and of its largest process."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"tree": 0, "single": 0}

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                rss = []
                for p in [root, *root.children(recursive=True)]:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                peak["tree"], peak["single"] = max(peak["tree"], sum(rss)), max(peak["single"], max(rss, default=0))
                time.sleep(SAMPLE_S)
        except psutil.Error:
            pass

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    watcher.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-4000:]}")
    return {"seconds": wall, "cpu_seconds": cpu, "peak_tree_mb": peak["tree"] / 2**20, "peak_process_mb": peak["single"] / 2**20,
            "output": output}


def disk(root: Path) -> dict[str, dict]:
    """Bytes on disk and file count of each output folder."""
    out = {}
    for label, rel in DISK.items():
        files = [p for p in (root / rel).rglob("*") if p.is_file()] if (root / rel).exists() else []
        out[label] = {"bytes": sum(p.stat().st_blocks * 512 for p in files), "files": len(files)}
    return out


def replicate(folder: Path, n_videos: int) -> float:
    """Grow a phantom folder to ``n_videos`` with copies of its videos under new names (seconds taken).

    A copy is remuxed, not re-encoded: the same frames (so the same truth), but its own bytes (a
    metadata comment), so DVC's content-addressed cache stores it apart like a real video. For runs
    where rendering every phantom (~1 s each on one core) would take longer than the pipeline.
    """
    import csv
    import hashlib

    import av
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    with open(folder / "FileList.csv", newline="") as f:
        filelist = list(csv.reader(f))
    with open(folder / "VolumeTracings.csv", newline="") as f:
        tracings = list(csv.reader(f))
    truth = pq.read_table(folder / "truth.parquet").to_pylist()
    header, rows = filelist[0], filelist[1:]
    by_video = {}
    for line in tracings[1:]:
        by_video.setdefault(line[0], []).append(line)
    extra_rows, extra_lines, extra_truth = [], [], []
    for i in range(n_videos - len(rows)):
        row, facts = rows[i % len(rows)], truth[i % len(rows)]
        name = "0X" + hashlib.sha256(f"{row[0]}:{i}".encode()).hexdigest()[:16].upper()
        with av.open(str(folder / "Videos" / f"{row[0]}.avi")) as src, \
                av.open(str(folder / "Videos" / f"{name}.avi"), "w", format="avi") as dst:
            dst.metadata["comment"] = f"copy {i} of {row[0]}"
            stream = dst.add_stream_from_template(src.streams.video[0])
            for packet in src.demux(src.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = stream
                    dst.mux(packet)
        extra_rows.append([name, *row[1:]])
        extra_lines += [[f"{name}.avi", *line[1:]] for line in by_video.get(f"{row[0]}.avi", [])]
        extra_truth.append({**facts, "name": name})
    for path, table in (("FileList.csv", [header, *rows, *extra_rows]), ("VolumeTracings.csv", tracings + extra_lines)):
        with open(folder / path, "w", newline="") as f:
            csv.writer(f).writerows(table)
    pq.write_table(pa.Table.from_pylist(truth + extra_truth), folder / "truth.parquet")
    return time.perf_counter() - start


def pipeline(root: Path, n_videos: int, stages: tuple[str, ...] = STAGES) -> dict:
    """Every stage by the CLI, then ``dvc commit`` of it; then no-op ``dvc status`` / ``dvc repro``."""
    result = {}
    for stage in stages:
        print(f"  {root.name}: {stage} ...", flush=True)
        ran = run(["lfmcdm", "stage", stage], root)
        (root / "logs").mkdir(exist_ok=True)
        (root / "logs" / f"{stage}.log").write_text(ran["output"])
        if stage == "phantom":
            result["replicate_seconds"] = replicate(root / "data/raw/phantom", n_videos)
        commit = run(["dvc", "commit", "-f", "-q", stage], root)
        result[stage] = {k: v for k, v in ran.items() if k != "output"}
        result[stage]["dvc_commit_seconds"] = commit["seconds"]
    metrics = json.loads((root / "metrics/ingest.json").read_text())
    result["ingest"]["stage_videos_per_s"] = metrics["videos_per_s"]
    for cmd in ("status", "repro"):
        times = []
        for _ in range(2):
            r = run(["dvc", cmd], root)
            if "up to date" not in r["output"] and "didn't change" not in r["output"]:
                raise RuntimeError(f"dvc {cmd} is not a no-op:\n{r['output'][-3000:]}")
            times.append(r["seconds"])
        result[f"dvc_{cmd}_noop_seconds"] = times
    result["disk"] = disk(root)
    return result


def _loadvideo(path: str):
    """echonet.utils.loadvideo, as EchoNet-Dynamic ships it (minus the file-exists check)."""
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(path)
    frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frame_width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    frame_height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    v = np.zeros((frame_count, frame_height, frame_width, 3), np.uint8)
    for count in range(frame_count):
        ret, frame = capture.read()
        if not ret:
            raise ValueError(f"Failed to load frame #{count} of {path}.")
        v[count, :, :] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return v.transpose((3, 0, 1, 2))


def _read_gray(path: str):
    from lfmcdm.data.video_io import read_gray

    return read_gray(path)[0]


def reference_child(method: str, videos: str) -> None:
    """One process over every video: videos/s and CPU seconds (printed as JSON)."""
    import resource

    fn = {"opencv_loadvideo": _loadvideo, "lfmcdm_read_gray": _read_gray}[method]
    paths = sorted(str(p) for p in Path(videos).glob("*.avi"))
    fn(paths[0])  # imports and first-call set-up are not the loop's
    start, cpu = time.perf_counter(), time.process_time()
    frames = sum(len(fn(p)[0]) if method == "opencv_loadvideo" else len(fn(p)) for p in paths)
    wall = time.perf_counter() - start
    print(json.dumps({"method": method, "videos": len(paths), "frames": frames, "seconds": wall,
                      "cpu_seconds": time.process_time() - cpu, "videos_per_s": len(paths) / wall,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def reference(videos: Path) -> dict:
    out = {}
    for method in ("opencv_loadvideo", "lfmcdm_read_gray"):
        r = run([sys.executable, __file__, "--child", method, str(videos)], REPO)
        out[method] = json.loads(r["output"].strip().splitlines()[-1])
    return out


def steady(big: dict, small: dict, n_big: int, n_small: int, unique_big: int, unique_small: int) -> dict:
    """Steady-state videos/s and fixed start-up of each stage from the two project sizes."""
    out = {}
    for stage in [s for s in (*MEASURED, "phantom") if s in big]:
        t_big, t_small = big[stage]["seconds"], small[stage]["seconds"]
        # the phantom stage renders only the unique videos
        nb, ns = (unique_big, unique_small) if stage == "phantom" else (n_big, n_small)
        rate = (nb - ns) / (t_big - t_small) if t_big > t_small else None
        startup = max(0.0, t_small - ns / rate) if rate else None
        out[stage] = {"videos_per_s": rate, "startup_s": startup, "wall_s": t_big, "overall_videos_per_s": nb / t_big,
                      "dvc_commit_s": big[stage]["dvc_commit_seconds"],
                      "cpu_ms_per_video": (big[stage]["cpu_seconds"] - small[stage]["cpu_seconds"]) / (nb - ns) * 1000
                      if nb > ns else None,
                      "peak_tree_mb": big[stage]["peak_tree_mb"], "peak_tree_mb_small": small[stage]["peak_tree_mb"],
                      "peak_process_mb": big[stage]["peak_process_mb"]}
    return out


def projection(rates: dict, cores: int, measured_cores: int) -> dict:
    """Seconds for EchoNet-Dynamic's 10,030 videos: start-up + videos / (rate * cores / measured cores)."""
    out = {}
    for stage in [s for s in MEASURED if s in rates]:
        r = rates[stage]
        if r["videos_per_s"]:
            out[stage] = r["startup_s"] + ECHONET_VIDEOS / (r["videos_per_s"] * cores / measured_cores)
    out["total"] = sum(out.values())
    return out


def markdown(report: dict) -> str:
    n, rates, ref = report["videos"], report["steady"], report["reference"]
    lines = [f"N = {n} phantom videos ({report['frames'][0]}-{report['frames'][1]} frames, mean "
             f"{report['mean_frames']:.0f}); small project {report['small_videos']} videos; {report['cores']} cores; "
             f"{report['date']}; load average at start {report['load_at_start']}.", "",
             "| stage | steady videos/s | fixed start-up (s) | CPU ms / video | wall at N (s) | overall videos/s "
             "| dvc commit (s) | peak RSS tree at N / small (MB) | largest process (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for stage in [s for s in ("phantom", *MEASURED) if s in rates]:
        r = rates[stage]
        rate = f"{r['videos_per_s']:.1f}" if r["videos_per_s"] else "-"
        start = f"{r['startup_s']:.1f}" if r["startup_s"] is not None else "-"
        cpu = f"{r['cpu_ms_per_video']:.0f}" if r.get("cpu_ms_per_video") else "-"
        lines.append(f"| {stage} | {rate} | {start} | {cpu} | {r['wall_s']:.1f} | {r['overall_videos_per_s']:.1f} | "
                     f"{r['dvc_commit_s']:.1f} | {r['peak_tree_mb']:.0f} / {r['peak_tree_mb_small']:.0f} | "
                     f"{r['peak_process_mb']:.0f} |")
    lines += ["", "| reference, one process | videos/s | CPU s / video | peak RSS (MB) |", "|---|---|---|---|"]
    for method, r in ref.items():
        lines.append(f"| {method} | {r['videos_per_s']:.1f} | {r['cpu_seconds'] / r['videos'] * 1000:.1f} ms | "
                     f"{r['peak_rss_mb']:.0f} |")
    ingest = rates["ingest"]["videos_per_s"] or 0.0
    lines += ["", f"ingest steady state / OpenCV loop: **{ingest / ref['opencv_loadvideo']['videos_per_s']:.2f}x** "
              f"(whole stage incl. start-up: {rates['ingest']['overall_videos_per_s'] / ref['opencv_loadvideo']['videos_per_s']:.2f}x)"]
    if rates["ingest"].get("cpu_ms_per_video"):  # load-independent: CPU time per video, ingest on all cores
        opencv_ms = ref["opencv_loadvideo"]["cpu_seconds"] / ref["opencv_loadvideo"]["videos"] * 1000
        lines.append(f"by CPU time per video (ingest on {report['cores']} dedicated cores vs the loop on one): "
                     f"**{report['cores'] * opencv_ms / rates['ingest']['cpu_ms_per_video']:.2f}x**")
    lines.append("")
    big = report["big"]
    lines += [f"no-op `dvc status`: {', '.join(f'{t:.1f}' for t in big['dvc_status_noop_seconds'])} s; no-op `dvc repro`: "
              f"{', '.join(f'{t:.1f}' for t in big['dvc_repro_noop_seconds'])} s", "",
              "| output | MB per video | files |", "|---|---|---|"]
    for label, d in big["disk"].items():
        lines.append(f"| {label} | {d['bytes'] / n / 2**20:.3f} | {d['files']} |")
    lines += ["", f"Projection to {ECHONET_VIDEOS:,} videos (start-up + videos / rate; rate x cores / {report['cores']}):",
              "", "| stage | 2 cores (min) | 16 cores (min) |", "|---|---|---|"]
    for stage in [s for s in (*MEASURED, "total") if s in report["projection"]["2"]]:
        lines.append(f"| {stage} | {report['projection']['2'][stage] / 60:.1f} | {report['projection']['16'][stage] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--small", type=int, default=50, help="videos of the small project (start-up estimate)")
    parser.add_argument("--frames", type=int, nargs=2, default=(112, 240), metavar=("LOW", "HIGH"),
                        help="frames per video, uniform (EchoNet-Dynamic: ~175 on average at ~50 fps)")
    parser.add_argument("--vae-steps", type=int, default=20, help="train_vae steps (cache_latents only needs a VAE)")
    parser.add_argument("--until", choices=STAGES, default=STAGES[-1], help="last stage run")
    parser.add_argument("--unique", type=int, help="render only this many phantoms; the rest are copies (replicate())")
    parser.add_argument("--reid-steps", type=int, help="pseudo.reid.steps (default: params.yaml's)")
    parser.add_argument("--torch-threads", type=int, default=1, help="train.torch_threads")
    parser.add_argument("--workers", type=int, default=0, help="data.workers etc. (0 = one per core)")
    parser.add_argument("--root", type=Path, help="scratch folder (default: a new temp folder, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("scale.json"))
    parser.add_argument("--markdown", type=Path, default=Path("scale.md"))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        reference_child(*args.child)
        return
    root = args.root or Path(tempfile.mkdtemp(prefix="lfmcdm-scale-"))
    frames = tuple(args.frames)
    report = {"videos": args.videos, "small_videos": args.small, "frames": frames, "cores": len(os.sched_getaffinity(0)),
              "mean_frames": sum(frames) / 2, "machine": f"{platform.processor() or platform.machine()}, "
              f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "load_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        for label, n in (("small", args.small), ("big", args.videos)):
            stages = STAGES[: STAGES.index(args.until) + 1]
            project = make_project(root / label, overrides(args, n), stages)
            report[label] = pipeline(project, n, stages)
        report["reference"] = reference(root / "big/data/raw/phantom/Videos")
        u = args.unique or args.videos
        report["steady"] = steady(report["big"], report["small"], args.videos, args.small, min(u, args.videos),
                                  min(u, args.small))
        report["unique_videos"] = min(u, args.videos)
        report["projection"] = {str(c): projection(report["steady"], c, report["cores"]) for c in (2, 16)}
        report["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if not args.keep and not args.root:
            shutil.rmtree(root, ignore_errors=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    args.markdown.write_text(markdown(report))
    print(args.markdown.read_text())


if __name__ == "__main__":
    main()
