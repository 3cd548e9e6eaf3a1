"""Stage ``motion_bank``: one MAFE motion vector per usable video -> ``data/processed/motion.parquet``.

A video's vector is its motion trajectory from the label-free end-diastole: the MAFE motion vectors
of (ED, ES) and of (ED, ED + t) for ``mafe.bank_times_s``, concatenated. One (ED, ES) pair alone
says how far the heart contracts but not when: a model conditioned on it cannot reproduce the
donor's heart rate (phantom quality profile: cavity-area r 0.54 with the pair, see docs/benchmarks.md).

The motion bank is what the diffusion model is conditioned on and what synthesis pairs with
appearances; every split is encoded (TRAIN conditions training, all of them can drive synthesis).
Re-running with the same model and videos is a no-op.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lfmcdm import tracking
from lfmcdm.atomic import write_parquet
from lfmcdm.data.pairs import PairRef, pair_refs
from lfmcdm.data.tables import load_clip, read_videos
from lfmcdm.layout import Layout
from lfmcdm.models.mafe import load_mafe, mafe_version
from lfmcdm.models.motion_vectors import motion_trajectories, trajectory_pairs
from lfmcdm.runtime import resolve_device

log = logging.getLogger(__name__)


TIMES_KEY = b"lfmcdm.bank_times_s"  # schema metadata: the trajectory the vectors were encoded with


def motion_schema(dim: int, times_s: tuple[float, ...] | None = None) -> pa.Schema:
    """The motion bank's contract (docs/design.md); ``times_s`` is recorded in the schema's metadata."""
    schema = pa.schema([("file_name", pa.string()), ("split", pa.string()),
                        ("motion", pa.list_(pa.float32(), dim)), ("mafe_version", pa.string())])
    return schema if times_s is None else schema.with_metadata({TIMES_KEY: json.dumps(list(times_s))})


def _up_to_date(path, names: list[str], version: str, dim: int, times_s: tuple[float, ...]) -> bool:
    if not path.exists():
        return False
    table = pq.read_table(path)
    recorded = (table.schema.metadata or {}).get(TIMES_KEY)
    return (table.schema.equals(motion_schema(dim)) and table.column("file_name").to_pylist() == names
            and set(table.column("mafe_version").to_pylist()) <= {version}
            and recorded is not None and json.loads(recorded) == list(times_s))


def _pairs_of(layout: Layout, refs: list[PairRef], fps: float, times_s: tuple[float, ...]):
    """Each video's trajectory pairs, read one clip at a time."""
    for ref in refs:
        yield trajectory_pairs(load_clip(layout, ref.file_name), ref.ed, ref.es, fps, times_s)


def run(ctx) -> dict:
    cfg = ctx.params.mafe
    model_dir = ctx.layout.model_dir("mafe")
    version = mafe_version(model_dir) if (model_dir / "config.json").exists() else None
    if version is None:
        raise FileNotFoundError(f"{model_dir}: no trained MAFE; run `lfmcdm stage train_mafe` first")
    refs, skipped = pair_refs(read_videos(ctx.layout), cfg.min_pair_gap)
    if skipped:
        log.warning("motion_bank: %d usable videos have no label-free ED/ES pair and get no motion vector", len(skipped))
    device = resolve_device(ctx.params.train)
    model = load_mafe(model_dir, device)
    times = cfg.bank_times_s
    dim = (1 + len(times)) * model.config.motion_dim  # = mafe.bank_dim for the model params.yaml describes
    names = [r.file_name for r in refs]
    if _up_to_date(ctx.layout.motion, names, version, dim, times):
        print(f"motion_bank: {ctx.layout.motion} is up to date ({version})")
        return {}
    fps = float(ctx.params.data.target_fps)  # every clip was resampled to it at ingest
    motion = motion_trajectories(model, _pairs_of(ctx.layout, refs, fps, times), len(refs), cfg.eval_batch_size,
                                 device, ctx.progress, "motion_bank")
    flat = pa.array(np.ascontiguousarray(motion, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.Table.from_arrays(
        [pa.array(names, pa.string()), pa.array([r.split for r in refs], pa.string()),
         pa.FixedSizeListArray.from_arrays(flat, dim), pa.array([version] * len(refs), pa.string())],
        schema=motion_schema(dim, times))
    write_parquet(ctx.layout.motion, table)
    tracking.log_metrics({"motion_bank_videos": len(refs), "motion_bank_skipped": len(skipped)})
    print(f"motion_bank: {len(refs)} motion vectors of dimension {dim} ({1 + len(times)} pairs each, {version})"
          f" -> {ctx.layout.motion}")
    return {}
