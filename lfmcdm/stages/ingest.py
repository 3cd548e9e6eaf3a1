"""Stage ``ingest``: EchoNet folder -> validated clips + ``videos.parquet`` (+ quarantined rows).

Streams videos through a worker pool (each worker decodes one video and writes its clip), so
memory stays bounded by one video per core whatever the dataset size.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from lfmcdm.atomic import write_parquet
from lfmcdm.data import echonet, validation
from lfmcdm.data.clips import ClipJob, ClipResult, ingest_one
from lfmcdm.data.csv_safe import CsvTable
from lfmcdm.parallel import pmap

log = logging.getLogger(__name__)

VIDEOS_SCHEMA = pa.schema([
    ("file_name", pa.string()), ("split", pa.string()), ("source_fps", pa.float64()), ("fps", pa.float64()),
    ("n_frames", pa.int32()), ("height", pa.int32()), ("width", pa.int32()),
    ("ef", pa.float64()), ("esv", pa.float64()), ("edv", pa.float64()),
    ("traced_ed", pa.int32()), ("traced_es", pa.int32()), ("sha256", pa.string()),
])
REJECTED_SCHEMA = pa.schema([("file_name", pa.string()), ("reason", pa.string()), ("source", pa.string())])


class NothingKept(ValueError):
    """Every row was rejected: an empty videos.parquet would only fail later stages obscurely."""


def _rejection(name: str, reason: str, path: Path, line: int) -> dict:
    return {"file_name": name, "reason": reason, "source": f"{path}:{line}"}


def screen_rows(filelist: CsvTable) -> tuple[list[echonet.FileRow], list[dict]]:
    """Row-level checks on FileList.csv; returns the good rows and the quarantined ones with reasons."""
    rejected = [_rejection(b.first_field, echonet.bad_row_reason(b), filelist.path, b.line) for b in filelist.bad]
    good, seen = [], set()
    for line, record in filelist.rows:
        row, reason = echonet.parse_row(record, line)
        if row is not None and row.file_name in seen:
            row, reason = None, "duplicate FileName"
        if row is None:
            rejected.append(_rejection(echonet.normalise_name(record["FileName"]), reason, filelist.path, line))
            continue
        seen.add(row.file_name)
        good.append(row)
    return good, rejected


def screen_tracings(tracings: CsvTable | None, listed: set[str], good: dict[str, echonet.FileRow]
                    ) -> tuple[list[echonet.TracingRow], list[dict]]:
    """Row-level checks on VolumeTracings.csv: bad rows and tracings of unknown files are reported, not dropped.

    ``listed``: every name FileList.csv holds; ``good``: its rows that passed (a tracing of a quarantined
    row is skipped: its file is reported already).
    """
    if tracings is None:
        return [], []
    rejected = [_rejection(b.first_field, echonet.bad_row_reason(b), tracings.path, b.line) for b in tracings.bad]
    rows, unknown = [], set()
    for line, record in tracings.rows:
        row, reason = echonet.parse_tracing(record, line)
        if row is not None and row.file_name not in listed:
            if row.file_name in unknown:
                continue  # one report per unknown file, at its first line
            unknown.add(row.file_name)
            row, reason = None, "tracing for a file not in FileList.csv"
        elif row is not None and row.file_name not in good:
            continue
        elif row is not None and row.frame >= good[row.file_name].n_frames:
            row, reason = None, f"tracing Frame {row.frame} beyond NumberOfFrames {good[row.file_name].n_frames}"
        if row is None:
            rejected.append(_rejection(echonet.normalise_name(record["FileName"]), reason, tracings.path, line))
            continue
        rows.append(row)
    return rows, rejected


def summary(rejected: list[dict], shown: int = 5) -> str:
    """``3 x video file missing; 1 x EF is not a number ('x')`` - the commonest reasons first."""
    counts = Counter(r["reason"] for r in rejected)
    text = "; ".join(f"{n} x {reason} (first at {next(r['source'] for r in rejected if r['reason'] == reason)})"
                     for reason, n in counts.most_common(shown))
    return text + (f"; and {len(counts) - shown} other reasons" if len(counts) > shown else "")


def _remove_stale_clips(clips: Path, kept: set[str]) -> int:
    """Delete clips of earlier runs that this run did not keep, and temp files killed runs left behind."""
    removed = 0
    for path in clips.iterdir() if clips.is_dir() else ():
        stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
        if stale_tmp or (path.suffix == ".npy" and path.stem not in kept):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _record(row: echonet.FileRow, result: ClipResult, fps: float, size: int, traced) -> dict:
    """One videos.parquet row (the label-free phase is stage pseudo_labels' phase.parquet)."""
    to_clip = (lambda f: int(round(f * fps / row.fps))) if traced else None
    return {
        "file_name": row.file_name, "split": row.split, "source_fps": row.fps, "fps": fps, "n_frames": result.n_frames,
        "height": size, "width": size, "ef": row.ef, "esv": row.esv, "edv": row.edv,
        "traced_ed": to_clip(traced[0]) if traced else None, "traced_es": to_clip(traced[1]) if traced else None,
        "sha256": result.sha256,
    }


def _jobs(ctx, src: Path, rows: list[echonet.FileRow]) -> list[ClipJob]:
    cfg = ctx.params.data
    return [
        ClipJob(r.file_name, str(src / "Videos" / f"{r.file_name}.avi"), str(ctx.layout.clip(r.file_name)),
                r.fps, r.n_frames, cfg.target_fps, cfg.frame_size, cfg.min_frames, dataset_root=str(src),
                max_bytes=cfg.max_video_mb << 20, max_frames=cfg.max_frames, fps_tolerance=cfg.fps_tolerance)
        for r in rows
    ]


def run(ctx) -> dict:
    cfg = ctx.params.data
    src = ctx.layout.source_root(ctx.params)
    filelist = echonet.read_filelist(src, cfg.max_table_mb << 20)
    tracings = echonet.read_tracings(src, cfg.max_table_mb << 20)
    raw = echonet.as_frame(filelist)
    report = validation.run_checks(
        "filelist", validation.typed_filelist(raw, echonet.NUMERIC_COLUMNS), validation.filelist_checks(echonet.FILELIST_COLUMNS)
    )
    validation.save_report(report, ctx.layout.reports / "validation")
    report.raise_for_schema(str(filelist.path))

    rows, rejected = screen_rows(filelist)
    listed = {echonet.normalise_name(values["FileName"]) for _, values in filelist.rows}
    listed |= {echonet.normalise_name(bad.first_field) for bad in filelist.bad}
    traced_rows, bad_tracings = screen_tracings(tracings, listed, {r.file_name: r for r in rows})
    rejected += bad_tracings
    if cfg.max_videos:
        rows = rows[: cfg.max_videos]
    traced = echonet.traced_phase(traced_rows)
    jobs = _jobs(ctx, src, rows)
    ctx.layout.clips.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records = []
    for row, result in zip(rows, pmap(ingest_one, jobs, cfg.workers, "ingest", ctx.progress)):
        if result.reason:
            rejected.append(_rejection(row.file_name, result.reason, filelist.path, row.line))
        else:
            records.append(_record(row, result, cfg.target_fps, cfg.frame_size, traced.get(row.file_name)))
    elapsed = time.perf_counter() - start

    write_parquet(ctx.layout.rejected, pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    if not records:
        _remove_stale_clips(ctx.layout.clips, set())
        ctx.layout.videos.unlink(missing_ok=True)
        raise NothingKept(f"{filelist.path}: ingest kept 0 videos, rejected {len(rejected)}: "
                          f"{summary(rejected) or 'the table has no rows'}")
    table = pa.Table.from_pylist(records, schema=VIDEOS_SCHEMA)
    manifest = validation.run_checks(
        "videos", table.to_pandas(), validation.manifest_checks(cfg.frame_size, cfg.target_fps, cfg.min_frames)
    )
    validation.save_report(manifest, ctx.layout.reports / "validation")
    manifest.raise_for_schema(str(ctx.layout.videos))
    write_parquet(ctx.layout.videos, table)
    stale = _remove_stale_clips(ctx.layout.clips, {r["file_name"] for r in records})
    print(f"ingest: kept {len(records)} videos, rejected {len(rejected)} (see {ctx.layout.rejected.relative_to(ctx.root)})"
          + (f"; removed {stale} stale clip/temp files" if stale else ""))
    return {"videos_kept": len(records), "videos_rejected": len(rejected),
            "videos_per_s": len(jobs) / elapsed if elapsed > 0 else None}
