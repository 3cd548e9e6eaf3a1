"""Stage ``pseudo_labels``: label-free phase, pseudo flow and self-supervised ReID for every clip, and their quality.

The phase (ED/ES of every beat) comes first: the flows are taken at its frames, and every later stage
reads it (``tables.read_videos`` joins it to ``videos.parquet``). Outputs (docs/design.md):
``data/interim/phase.parquet``, ``data/interim/flow/<name>.npy``, ``data/interim/reid/<name>.npy``,
``models/reid/`` (registered as ``lfmcdm-reid``). Output folders are replaced whole, so a video dropped
since the last run leaves no stale file behind.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from lfmcdm import tracking
from lfmcdm.atomic import atomic_dir, save_npy, write_parquet
from lfmcdm.data import phantom, tables, validation
from lfmcdm.layout import MODELS
from lfmcdm.models.reid import save_encoder
from lfmcdm.models.reid import embed_frames
from lfmcdm.parallel import pmap
from lfmcdm.pseudo import metrics
from lfmcdm.pseudo.flow import FlowJob, flow_one
from lfmcdm.pseudo.phase_labels import PhaseJob, phase_one
from lfmcdm.pseudo.reid import reid_top1, train_reid
from lfmcdm.runtime import configure_threads, resolve_device, seed_everything
from lfmcdm.settings.pseudo import ReidConfig

log = logging.getLogger(__name__)

REID_ALIAS = "champion"  # MLflow reserves "latest" (tracking.register_model's default), so name ours
STAGE = "pseudo_labels"
PHASE_SCHEMA = pa.schema([
    ("file_name", pa.string()), ("ed_frame", pa.int32()), ("es_frame", pa.int32()), ("status", pa.string()),
    ("ed_frames", pa.list_(pa.int32())), ("es_frames", pa.list_(pa.int32())), ("phase_confidence", pa.float64()),
])


def run(ctx) -> dict:
    write_phase(ctx)
    rows = tables.read_videos(ctx.layout)
    if not rows:
        raise FileNotFoundError(f"{ctx.layout.phase}: no clip with a label-free phase (status 'ok'); nothing to label")
    write_flows(ctx, rows)
    model = fit_reid(ctx, rows)
    embeddings = write_embeddings(ctx, rows, model)

    truth = phantom.load_truth(ctx.layout.source_root(ctx.params))
    all_rows = tables.read_videos(ctx.layout, usable_only=False)  # flagged clips count as phase misses
    cfg = ctx.params.pseudo.reid
    evaluated = [embeddings[r["file_name"]] for r in rows if r["file_name"] in embeddings]
    return {
        **metrics.phase_metrics(all_rows, truth),
        **metrics.flow_metrics(rows, truth, lambda name: tables.load_array(ctx.layout.flow, name)),
        "reid_top1": reid_top1(evaluated, cfg.eval_exclude_frames, cfg.eval_queries_per_video),
    }


def write_phase(ctx) -> None:
    """Label-free ED/ES of every ingested clip, estimated in worker processes -> ``phase.parquet``.

    A clip whose phase is flagged keeps its row, with the reason as its status (read_videos leaves it out).
    """
    jobs = [PhaseJob(r["file_name"], str(ctx.layout.clip(r["file_name"])), r["fps"], ctx.params.pseudo.phase)
            for r in tables.read_ingested(ctx.layout)]
    table = pa.Table.from_pylist(list(pmap(phase_one, jobs, ctx.params.pseudo.flow.workers, "phase", ctx.progress)),
                                 schema=PHASE_SCHEMA)
    report = validation.run_checks("phase", table.to_pandas(), validation.phase_checks())
    validation.save_report(report, ctx.layout.reports / "phase_validation")
    report.raise_for_schema(str(ctx.layout.phase))
    write_parquet(ctx.layout.phase, table)


def write_flows(ctx, rows: list[dict]) -> None:
    """The four contract flows of every video, computed in worker processes."""
    cfg = ctx.params.pseudo.flow
    with atomic_dir(ctx.layout.flow) as tmp:
        jobs = [FlowJob(str(ctx.layout.clip(r["file_name"])), str(tmp / f"{r['file_name']}.npy"),
                        r["ed_frame"], r["es_frame"], cfg) for r in rows]
        for _ in pmap(flow_one, jobs, cfg.workers, "flow", ctx.progress):
            pass


def _fingerprint(cfg: ReidConfig, seed: int, names: list[str]) -> str:
    """What the trained weights depend on: the training knobs, the seed and the training videos."""
    training = cfg.model_dump(mode="json", exclude={"embed_batch", "eval_exclude_frames", "eval_queries_per_video",
                                                     "eval_splits", "checkpoint_every"})
    blob = json.dumps({"cfg": training, "seed": seed, "videos": sorted(names)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fit_reid(ctx, rows: list[dict]) -> torch.nn.Module:
    """Train (or resume) the ReID encoder on TRAIN videos; save it to models/reid/ and register it."""
    cfg, seed = ctx.params.pseudo.reid, ctx.params.seed
    train_rows = [r for r in rows if r["split"] == "TRAIN"]
    if len(train_rows) < 2:  # contrastive training needs negatives; tiny datasets still get an encoder
        log.warning("only %d TRAIN videos: training ReID on all %d usable videos", len(train_rows), len(rows))
        train_rows = rows
    configure_threads(ctx.params.train)
    seed_everything(seed)
    device = resolve_device(ctx.params.train)
    names = [r["file_name"] for r in train_rows]
    fingerprint = _fingerprint(cfg, seed, names)
    clips = [tables.load_clip(ctx.layout, n) for n in names]
    model, info = train_reid(clips, cfg, seed, device, ctx.layout.checkpoints / STAGE / "reid", ctx.progress,
                             log=lambda m, step: tracking.log_metrics(m, step=step), fingerprint=fingerprint)
    out = ctx.layout.model_dir("reid")
    # only run-independent facts go beside the weights, so a resumed run saves a byte-identical folder
    save_encoder(model, out, extra={"seed": seed, "train_videos": len(names), "fingerprint": fingerprint,
                                    "steps": info["steps"], "final_loss": info["final_loss"]})
    tracking.register_model(MODELS["reid"].registry_name, out, aliases=(REID_ALIAS,))
    return model


def write_embeddings(ctx, rows: list[dict], model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Per-frame embeddings (float16 ``(T, D)``) of every usable video; those of the eval splits are returned."""
    cfg = ctx.params.pseudo.reid
    out = {}
    with atomic_dir(ctx.layout.reid) as tmp:
        for r in tqdm(rows, desc="reid embed", unit="video", disable=not ctx.progress):
            clip = tables.load_clip(ctx.layout, r["file_name"])
            emb = embed_frames(model, clip, cfg.embed_batch).astype(np.float16)
            save_npy(tmp / f"{r['file_name']}.npy", emb)
            if r["split"] in cfg.eval_splits:
                out[r["file_name"]] = emb
    return out
