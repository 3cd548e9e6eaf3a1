"""Producing one synthetic cohort in idempotent, resumable shards.

Work happens in ``checkpoints/synthesize/<cohort>/<plan-hash>/``: each shard writes its videos and
then, atomically, its manifest part. A shard whose part exists is done and is skipped; a shard
killed midway is simply redone (its sample ids and seeds are fixed by the plan, so the same files
are rewritten, never duplicated). Only when every shard is done is the cohort folder
``data/synthetic/<cohort>/`` assembled, atomically, and validated with Great Expectations.

What is shipped is what passes the privacy filter: a failing video is written to the work folder's
``quarantine/`` (never part of the cohort) and appears in the manifest only, with its score and no
path. Shipped videos are resampled to ``synthesis.export_fps`` and get label-free pseudo
VolumeTracings (lfmcdm.synth.tracings), so EchoNet-Dynamic's own loaders read the cohort.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lfmcdm.atomic import atomic_dir, atomic_path, write_parquet
from lfmcdm.config import Params
from lfmcdm.data import validation
from lfmcdm.data.clips import sha256_file
from lfmcdm.data.echonet import FILELIST_COLUMNS
from lfmcdm.data.tables import read_videos
from lfmcdm.data.video_io import resample_indices, write_gray
from lfmcdm.eval.privacy import PrivacyFilter
from lfmcdm.layout import Layout
from lfmcdm.synth import card
from lfmcdm.synth.plan import SampleSpec, plan_cohort, plan_hash
from lfmcdm.synth.tracings import pseudo_tracing, write_tracings

VIDEOS, QUARANTINE = "Videos", "quarantine"
LINES = "tracing_lines"  # shard parts only: the pseudo tracing rows, published as VolumeTracings.csv

MANIFEST_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("path", pa.string()), ("split", pa.string()),
    ("appearance_source", pa.string()), ("motion_source", pa.string()), ("seed", pa.int64()),
    ("strategy", pa.string()), ("sampler", pa.string()), ("steps", pa.int32()), ("guidance", pa.float64()),
    ("mcdm_version", pa.string()), ("vae_version", pa.string()), ("mafe_version", pa.string()),
    ("reid_version", pa.string()), ("privacy_score", pa.float64()), ("privacy_pass", pa.bool_()),
    ("donor_ef", pa.float64()), ("n_frames", pa.int32()), ("fps", pa.float64()), ("model_fps", pa.float64()),
    ("height", pa.int32()), ("width", pa.int32()), ("sha256", pa.string()),
    ("pseudo_ed_frame", pa.int32()), ("pseudo_es_frame", pa.int32()), ("pseudo_tracing", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
])
PART_SCHEMA = MANIFEST_SCHEMA.append(pa.field(LINES, pa.list_(pa.list_(pa.float64()))))


class CohortModels(Protocol):
    """What a cohort needs from the trained models (see lfmcdm/synth/generator.py)."""

    versions: dict[str, str]
    hashes: dict[str, str]  # content hash of each model's files (the data card names exactly what made the videos)
    fps: float

    def generate(self, specs: list[SampleSpec]) -> np.ndarray:
        """uint8 videos ``(B, T, H, W)`` for the given plan rows."""

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """ReID embedding per frame ``(T, D)``."""


@dataclass
class CohortJob:
    """Everything a shard needs; picklable so shards can run on Dask workers."""

    params: Params
    root: Path
    plan: list[SampleSpec]
    key: str
    versions: dict[str, str]
    hashes: dict[str, str]
    fps: float
    privacy: PrivacyFilter = field(repr=False)

    @property
    def threshold(self) -> float:
        return self.privacy.threshold

    @property
    def cfg(self):
        return self.params.synthesis

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def work(self) -> Path:
        return self.layout.checkpoints / "synthesize" / self.cfg.cohort / self.key

    @property
    def out(self) -> Path:
        return self.layout.synthetic / self.cfg.cohort

    @property
    def n_shards(self) -> int:
        return -(-len(self.plan) // self.cfg.shard_size)

    def shard(self, k: int) -> list[SampleSpec]:
        return self.plan[k * self.cfg.shard_size : (k + 1) * self.cfg.shard_size]

    def shard_part(self, k: int) -> Path:
        return self.work / "shards" / f"{k:05d}.parquet"

    def pending(self) -> list[int]:
        return [k for k in range(self.n_shards) if not self.shard_part(k).exists()]

    @property
    def export_fps(self) -> float:
        """The frame rate videos are written at: ``synthesis.export_fps``, or the model's own."""
        return float(self.cfg.export_fps or self.fps)


def prepare(params: Params, root: Path, models: CohortModels) -> CohortJob:
    """Plan the cohort and fix its identity (plan + sampler + model versions)."""
    layout = Layout(root)
    cfg = params.synthesis
    motion_names = set(layout.read_motion_bank().vectors)
    plan = plan_cohort(cfg, read_videos(layout), motion_names, params.seed)
    key = plan_hash(plan, {**shard_settings(params), **models.versions})
    return CohortJob(params=params, root=Path(root), plan=plan, key=key, versions=dict(models.versions),
                     hashes=dict(models.hashes), fps=models.fps, privacy=PrivacyFilter.from_layout(layout, cfg))


def shard_settings(params: Params) -> dict:
    """Every setting that changes what a shard writes (not how fast): part of the work folder's key."""
    cfg = params.synthesis
    settings = {k: v for k, v in cfg.model_dump(mode="json").items()
                if k not in ("workers", "dask_address", "batch_size", "source_licence")}
    return {**settings, "pseudo_phase": params.pseudo.phase.model_dump(mode="json"),
            "cavity": params.diffusion.motion_eval.cavity.model_dump(mode="json")}


def run_shard(job: CohortJob, k: int, models: CohortModels) -> Path:
    """Generate shard ``k`` unless it is already complete; returns its manifest part."""
    part = job.shard_part(k)
    if part.exists():
        return part
    cfg = job.cfg
    rows = []
    specs = job.shard(k)
    for start in range(0, len(specs), cfg.batch_size):
        batch = specs[start : start + cfg.batch_size]
        for spec, video in zip(batch, models.generate(batch)):
            rows.append(_write_sample(job, spec, video, models))
    write_parquet(part, pa.Table.from_pylist(rows, schema=PART_SCHEMA))
    return part


def _write_sample(job: CohortJob, spec: SampleSpec, video: np.ndarray, models: CohortModels) -> dict:
    """Score the generated video, then write it: shipped (resampled, pseudo-traced) or quarantined."""
    score = job.privacy.score(models.embed(video))
    passed = job.privacy.passes(score)
    fps = job.export_fps
    video = video[resample_indices(len(video), job.fps, fps)]
    path = job.work / (VIDEOS if passed else QUARANTINE) / f"{spec.sample_id}.avi"
    write_gray(path, video, fps, codec=job.cfg.codec)
    params = job.params
    tracing = pseudo_tracing(video, fps, params.pseudo.phase, params.diffusion.motion_eval.cavity) if passed else None
    return {
        **asdict(spec), "path": f"{VIDEOS}/{spec.sample_id}.avi" if passed else None,
        "strategy": job.cfg.strategy, "sampler": job.cfg.sampler, "steps": job.cfg.steps, "guidance": job.cfg.guidance_scale,
        **{f"{name}_version": job.versions.get(name) for name in ("mcdm", "vae", "mafe", "reid")},
        "privacy_score": score, "privacy_pass": passed, "n_frames": int(video.shape[0]),
        "fps": fps, "model_fps": job.fps, "height": int(video.shape[1]), "width": int(video.shape[2]),
        "sha256": sha256_file(path),
        "pseudo_ed_frame": tracing.ed if tracing else None, "pseudo_es_frame": tracing.es if tracing else None,
        "pseudo_tracing": tracing.status if tracing else "not shipped (privacy)",
        "created_at": datetime.now(timezone.utc),
        LINES: [list(r) for r in tracing.rows] if tracing else [],
    }


def assemble(job: CohortJob) -> dict:
    """Build ``data/synthetic/<cohort>/`` from the finished shards; validate; return metrics."""
    missing = job.pending()
    if missing:
        raise RuntimeError(f"cannot assemble cohort {job.cfg.cohort!r}: shards {missing} not finished")
    parts = pa.concat_tables([pq.read_table(job.shard_part(k)) for k in range(job.n_shards)])
    rows = parts.to_pylist()
    shipped = [r for r in rows if r["privacy_pass"]]
    data_card = card.build(job, rows)
    manifest = parts.drop_columns([LINES]).cast(MANIFEST_SCHEMA).replace_schema_metadata(card.parquet_metadata(data_card))
    with atomic_dir(job.out) as tmp:
        (tmp / VIDEOS).mkdir()
        for row in shipped:
            _link(job.work / row["path"], tmp / row["path"])
        write_parquet(tmp / "manifest.parquet", manifest)
        write_filelist(tmp / "FileList.csv", shipped)
        write_tracings(tmp / "VolumeTracings.csv", [(r["sample_id"], r[LINES]) for r in shipped if r[LINES]])
        (tmp / card.README).write_text(card.render(data_card))
        report = validation.run_checks("synthetic_manifest", manifest_frame(tmp, manifest), validation_checks())
        validation.save_report(report, tmp)  # beside the data it describes: synthetic_manifest.json
        report.raise_for_schema(str(job.out / "manifest.parquet"))
    return {"videos": len(rows), "privacy_pass_share": len(shipped) / len(rows) if rows else None,
            "privacy_threshold": job.threshold, "videos_shipped": len(shipped),
            "videos_pseudo_traced": sum(bool(r[LINES]) for r in shipped)}


def _link(src: Path, dst: Path) -> None:
    """Hard-link when possible (same filesystem, no copy), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_filelist(path: Path, rows: list[dict]) -> None:
    """EchoNet-format FileList.csv: donor EF propagated, volumes unknown (empty)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FILELIST_COLUMNS)
        for r in rows:
            ef = "" if r["donor_ef"] is None else round(r["donor_ef"], 4)
            writer.writerow([r["sample_id"], ef, "", "", r["height"], r["width"], r["fps"], r["n_frames"], r["split"]])


def manifest_frame(cohort_dir: Path, manifest: pa.Table):
    """The manifest plus one fact GX checks per row: a passing video is shipped whole (file present,
    checksum matching), a failing one is not shipped at all (no path, no file in Videos/)."""
    frame = manifest.to_pandas()
    shipped = {p.name for p in (cohort_dir / VIDEOS).iterdir()} if (cohort_dir / VIDEOS).is_dir() else set()
    frame["file_ok"] = [_file_ok(cohort_dir, row, shipped) for row in manifest.to_pylist()]  # None stays None
    return frame


def _file_ok(cohort_dir: Path, row: dict, shipped: set[str]) -> bool:
    if not row["privacy_pass"]:
        return row["path"] is None and f"{row['sample_id']}.avi" not in shipped
    path = cohort_dir / str(row["path"])
    return path.exists() and sha256_file(path) == row["sha256"]


def validation_checks() -> list[validation.Check]:
    between = "ExpectColumnValuesToBeBetween"
    Check = validation.Check
    return [
        Check("ExpectColumnValuesToBeUnique", {"column": "sample_id"}),
        Check("ExpectColumnValuesToBeInSet", {"column": "file_ok", "value_set": [True]}),
        Check("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": ["TRAIN", "VAL", "TEST"]}),
        Check(between, {"column": "privacy_score", "min_value": -1.0001, "max_value": 1.0001}),
        Check(between, {"column": "n_frames", "min_value": 1}),
        Check(between, {"column": "fps", "min_value": 0, "strict_min": True}),
        Check(between, {"column": "pseudo_ed_frame", "min_value": 0}),
        Check(between, {"column": "pseudo_es_frame", "min_value": 0}),
        Check(between, {"column": "donor_ef", "min_value": 0, "max_value": 100}),
        Check(between, {"column": "steps", "min_value": 1}),
        Check("ExpectColumnValuesToNotBeNull", {"column": "seed"}),
    ]
