"""Stage ``ingest``: EchoNet folder -> validated clips + ``videos.parquet`` (+ quarantined rows).

Streams videos through a worker pool (each worker decodes one video and writes its clip), so
memory stays bounded by one video per core whatever the dataset size.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa

from lfmcdm.atomic import write_parquet
from lfmcdm.data import echonet, validation
from lfmcdm.data.clips import ClipJob, ClipResult, ingest_one
from lfmcdm.parallel import pmap

log = logging.getLogger(__name__)

VIDEOS_SCHEMA = pa.schema([
    ("file_name", pa.string()), ("split", pa.string()), ("source_fps", pa.float64()), ("fps", pa.float64()),
    ("n_frames", pa.int32()), ("height", pa.int32()), ("width", pa.int32()),
    ("ef", pa.float64()), ("esv", pa.float64()), ("edv", pa.float64()),
    ("ed_frame", pa.int32()), ("es_frame", pa.int32()), ("traced_ed", pa.int32()), ("traced_es", pa.int32()),
    ("sha256", pa.string()), ("status", pa.string()),
    ("ed_frames", pa.list_(pa.int32())), ("es_frames", pa.list_(pa.int32())), ("phase_confidence", pa.float64()),
])
REJECTED_SCHEMA = pa.schema([("file_name", pa.string()), ("reason", pa.string()), ("source", pa.string())])


def source_root(ctx) -> Path:
    """The EchoNet folder: ``data.echonet_root`` (relative to the repo) or the phantom."""
    configured = ctx.params.data.echonet_root
    return (ctx.root / configured) if configured else (ctx.root / ctx.params.phantom.out_dir)


def screen_rows(raw, tracings, filelist_path: Path, tracings_path: Path) -> tuple[list[echonet.FileRow], list[dict]]:
    """Row-level checks on the tables; returns the good rows and the quarantined ones with reasons."""
    good, rejected, seen = [], [], set()
    for record in raw.to_dict("records"):
        row, reason = echonet.parse_row(record)
        name = echonet.normalise_name(record["FileName"])
        if row is not None and row.file_name in seen:
            row, reason = None, "duplicate FileName"
        if row is None:
            rejected.append({"file_name": name, "reason": reason, "source": f"{filelist_path}:{record['_line']}"})
            continue
        seen.add(row.file_name)
        good.append(row)
    if tracings is not None:
        listed = {echonet.normalise_name(n) for n in raw["FileName"]}
        for name, group in tracings.groupby(tracings["FileName"].map(echonet.normalise_name), sort=False):
            if name not in listed:
                rejected.append({"file_name": name, "reason": "tracing for a file not in FileList.csv",
                                 "source": f"{tracings_path}:{int(group['_line'].iloc[0])}"})
    return good, rejected


def _record(row: echonet.FileRow, result: ClipResult, fps: float, size: int, traced) -> dict:
    """One videos.parquet row; a clip whose phase is flagged keeps its row with the flag as status."""
    to_clip = (lambda f: int(round(f * fps / row.fps))) if traced else None
    return {
        "file_name": row.file_name, "split": row.split, "source_fps": row.fps, "fps": fps, "n_frames": result.n_frames,
        "height": size, "width": size, "ef": row.ef, "esv": row.esv, "edv": row.edv,
        "ed_frame": result.ed_frame, "es_frame": result.es_frame,
        "traced_ed": to_clip(traced[0]) if traced else None, "traced_es": to_clip(traced[1]) if traced else None,
        "sha256": result.sha256, "status": result.phase_status,
        "ed_frames": list(result.ed_frames), "es_frames": list(result.es_frames),
        "phase_confidence": result.phase_confidence,
    }


def run(ctx) -> dict:
    cfg = ctx.params.data
    src = source_root(ctx)
    filelist_path, tracings_path = src / "FileList.csv", src / "VolumeTracings.csv"
    raw = echonet.read_filelist(src)
    tracings = echonet.read_tracings(src)
    report = validation.run_checks(
        "filelist", validation.typed_filelist(raw, echonet.NUMERIC_COLUMNS), validation.filelist_checks(echonet.FILELIST_COLUMNS)
    )
    validation.save_report(report, ctx.layout.reports / "validation")
    report.raise_for_schema(str(filelist_path))

    rows, rejected = screen_rows(raw, tracings, filelist_path, tracings_path)
    if cfg.max_videos:
        rows = rows[: cfg.max_videos]
    traced = echonet.traced_phase(tracings) if tracings is not None else {}
    jobs = [
        ClipJob(r.file_name, str(src / "Videos" / f"{r.file_name}.avi"), str(ctx.layout.clip(r.file_name)),
                r.fps, r.n_frames, cfg.target_fps, cfg.frame_size, cfg.min_frames, ctx.params.pseudo.phase)
        for r in rows
    ]
    ctx.layout.clips.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records = []
    for row, result in zip(rows, pmap(ingest_one, jobs, cfg.workers, "ingest", ctx.progress)):
        if result.reason:
            rejected.append({"file_name": row.file_name, "reason": result.reason, "source": f"{filelist_path}:{row.line}"})
        else:
            records.append(_record(row, result, cfg.target_fps, cfg.frame_size, traced.get(row.file_name)))
    elapsed = time.perf_counter() - start

    table = pa.Table.from_pylist(records, schema=VIDEOS_SCHEMA)
    manifest = validation.run_checks(
        "videos", table.to_pandas(), validation.manifest_checks(cfg.frame_size, cfg.target_fps, cfg.min_frames)
    )
    validation.save_report(manifest, ctx.layout.reports / "validation")
    manifest.raise_for_schema(str(ctx.layout.videos))
    write_parquet(ctx.layout.videos, table)
    write_parquet(ctx.layout.rejected, pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    print(f"ingest: kept {len(records)} videos, rejected {len(rejected)} (see {ctx.layout.rejected.relative_to(ctx.root)})")
    return {"videos_kept": len(records), "videos_rejected": len(rejected),
            "videos_per_s": len(jobs) / elapsed if elapsed > 0 else None}
