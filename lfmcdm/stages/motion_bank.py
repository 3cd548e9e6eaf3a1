"""Stage ``motion_bank``: one MAFE motion vector per usable video -> ``data/processed/motion.parquet``.

The motion bank is what the diffusion model is conditioned on and what synthesis pairs with
appearances; every split is encoded (TRAIN conditions training, all of them can drive synthesis).
Re-running with the same model and videos is a no-op.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lfmcdm import tracking
from lfmcdm.atomic import write_parquet
from lfmcdm.data.pairs import pair_refs
from lfmcdm.data.tables import read_videos
from lfmcdm.models.mafe import load_mafe, mafe_version
from lfmcdm.models.motion_vectors import encode_pairs
from lfmcdm.stages.train_mafe import MODEL_DIR
from lfmcdm.train.runtime import resolve_device

log = logging.getLogger(__name__)


def motion_schema(dim: int) -> pa.Schema:
    """The motion bank's contract (DESIGN.md)."""
    return pa.schema([("file_name", pa.string()), ("split", pa.string()),
                      ("motion", pa.list_(pa.float32(), dim)), ("mafe_version", pa.string())])


def _up_to_date(path, names: list[str], version: str, dim: int) -> bool:
    if not path.exists():
        return False
    table = pq.read_table(path)
    return (table.schema.equals(motion_schema(dim)) and table.column("file_name").to_pylist() == names
            and set(table.column("mafe_version").to_pylist()) <= {version})


def run(ctx) -> dict:
    cfg = ctx.params.mafe
    model_dir = ctx.layout.models / MODEL_DIR
    version = mafe_version(model_dir) if (model_dir / "config.json").exists() else None
    if version is None:
        raise FileNotFoundError(f"{model_dir}: no trained MAFE; run `lfmcdm stage train_mafe` first")
    refs, skipped = pair_refs(read_videos(ctx.layout), cfg.min_pair_gap)
    if skipped:
        log.warning("motion_bank: %d usable videos have no label-free ED/ES pair and get no motion vector", len(skipped))
    device = resolve_device(ctx.params.train)
    model = load_mafe(model_dir, device)
    dim = model.config.motion_dim
    names = [r.file_name for r in refs]
    if _up_to_date(ctx.layout.motion, names, version, dim):
        print(f"motion_bank: {ctx.layout.motion} is up to date ({version})")
        return {}
    motion, _ = encode_pairs(model, ctx.layout, refs, cfg.eval_batch_size, device, ctx.progress, "motion_bank")
    flat = pa.array(np.ascontiguousarray(motion, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.Table.from_arrays(
        [pa.array(names, pa.string()), pa.array([r.split for r in refs], pa.string()),
         pa.FixedSizeListArray.from_arrays(flat, dim), pa.array([version] * len(refs), pa.string())],
        schema=motion_schema(dim))
    write_parquet(ctx.layout.motion, table)
    tracking.log_metrics({"motion_bank_videos": len(refs), "motion_bank_skipped": len(skipped)})
    print(f"motion_bank: {len(refs)} motion vectors of dimension {dim} ({version}) -> {ctx.layout.motion}")
    return {}
