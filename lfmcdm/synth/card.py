"""The data card of a synthetic cohort: ``README.md`` for people, the same facts in the manifest's Parquet metadata.

A cohort leaves the team that made it; the card travels inside the folder and says what a
recipient needs before using it: what it is and how many videos each split holds, exactly which
models, sampler and seeds made it, what the privacy filter means and how many videos it kept
out, which labels are *pseudo* (estimated without any human), the true frame rate, the source
data's licence terms that carry over, and what the cohort is (not) meant for.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

from lfmcdm.layout import MODELS

if TYPE_CHECKING:
    from lfmcdm.synth.cohort import CohortJob

README = "README.md"
METADATA_KEY = b"lfmcdm.data_card"  # manifest.parquet schema metadata: the card as JSON
CARD_FORMAT = "lfmcdm-cohort-card/1"
SPLITS = ("TRAIN", "VAL", "TEST")

PHANTOM_LICENCE = ("The source videos are a generated phantom (lfmcdm.data.phantom): no patient data, "
                   "no licence terms carry over.")
ECHONET_LICENCE = (
    "Derived from EchoNet-Dynamic (Stanford AIMI), which is released under the Stanford University School of "
    "Medicine EchoNet-Dynamic Dataset Research Use Agreement. Its terms carry over to this derived data: "
    "non-commercial research use only; no attempt to identify any individual; sharing only as the agreement "
    "permits (recipients bound by the same terms); cite Ouyang et al., Nature 2020. Read the agreement itself "
    "before sharing this cohort.")
PRIVACY_RULE = (
    "Each generated video's identity (mean ReID embedding of its frames) is compared with every real TRAIN "
    "patient's. A video closer to its nearest training patient than the {percentile:g}th percentile of how close "
    "unseen real patients (VAL/TEST) come to the training set (threshold {threshold:.4f}) is treated as a copy "
    "of a patient: it is not shipped (not in Videos/, FileList.csv or VolumeTracings.csv) and is listed in "
    "manifest.parquet with its score and no path.")
PSEUDO_LABELS = {
    "VolumeTracings.csv": (
        "PSEUDO labels, no human traced these videos: ED and ES frames from the label-free phase estimator "
        "(lfmcdm.data.phase), LV outline (long axis + 20 chords, EchoNet's format) from the label-free cavity "
        "estimate (lfmcdm.eval.cavity) at those frames. ES rows come first, ED rows last, as EchoNet's loader "
        "expects. Videos where either estimate failed have no tracing (see manifest column pseudo_tracing)."),
    "EF": ("The motion donor's EF (a real video's label, propagated): the motion comes from that video; the "
           "synthetic video itself was not measured. ESV and EDV are empty."),
    "Split": ("Drawn at the configured shares, then raised to the most held-out split of the row's real "
              "sources: no VAL/TEST patient's appearance or motion is ever in synthetic TRAIN."),
}
INTENDED_USE = [
    "Research on machine learning for echocardiography: pretraining, data augmentation, studying synthetic data.",
    "Any model trained on it is validated on real held-out videos before any conclusion is drawn.",
]
NOT_INTENDED_USE = [
    "Clinical use, diagnosis, or any decision about a patient.",
    "As ground truth for segmentation or phase detection: the tracings are pseudo labels.",
    "Attempting to identify the real patients whose appearance or motion the videos were made from.",
    "Evaluating a model on real VAL/TEST data after training on rows whose sources were in those splits.",
]


def source_licence(job: "CohortJob") -> str:
    if job.cfg.source_licence:
        return job.cfg.source_licence
    return PHANTOM_LICENCE if job.params.data.echonet_root is None else ECHONET_LICENCE


def build(job: "CohortJob", rows: list[dict]) -> dict:
    """The card as plain data (also the Parquet metadata), from the job and every manifest row."""
    cfg = job.cfg
    shipped = [r for r in rows if r["privacy_pass"]]
    traced = [r for r in shipped if r["pseudo_tracing"] == "ok"]
    created = sorted(r["created_at"].isoformat() for r in rows if r.get("created_at"))
    return {
        "format": CARD_FORMAT,
        "cohort": cfg.cohort,
        "what": ("Synthetic echocardiography videos (apical four-chamber, grayscale, EchoNet-Dynamic layout) "
                 "made by a label-free motion-conditioned diffusion model (arXiv 2512.09418): appearance from "
                 "one real video's end-diastolic frame, motion from another real video's MAFE motion vector."),
        "counts": {
            "planned": len(rows), "shipped": len(shipped), "not_shipped_privacy": len(rows) - len(shipped),
            "pseudo_traced": len(traced), "shipped_per_split": _per_split(shipped),
            "pseudo_traced_per_split": _per_split(traced),
        },
        "generation": {
            "strategy": cfg.strategy, "sampler": cfg.sampler, "steps": cfg.steps, "guidance": cfg.guidance_scale,
            "n_frames": cfg.n_frames, "window_overlap": cfg.window_overlap, "codec": cfg.codec,
            "appearance_splits": list(cfg.appearance_splits), "motion_splits": list(cfg.motion_splits),
            "models": {name: {"registry_name": MODELS[name].registry_name, "version": job.versions.get(name),
                              "sha256": job.hashes.get(name)} for name in ("mcdm", "vae", "mafe", "reid")},
            "motion_bank_sha256": job.hashes.get("motion_bank"),
            "global_seed": job.params.seed, "plan_hash": job.key,
            "per_video_seed": "manifest.parquet column seed (with appearance_source, motion_source)",
            "created": {"first": created[0] if created else None, "last": created[-1] if created else None},
        },
        "privacy": {
            "rule": PRIVACY_RULE.format(percentile=cfg.privacy_percentile, threshold=job.threshold),
            "percentile": cfg.privacy_percentile, "threshold": job.threshold,
            "pass_share": len(shipped) / len(rows) if rows else None,
        },
        "pseudo_labels": PSEUDO_LABELS,
        "frame_rate": {"fps": job.export_fps, "model_fps": job.fps,
                       "resampling": "nearest frame in time" if job.export_fps != job.fps else "none"},
        "source": {"data": job.params.data.echonet_root or "phantom", "licence": source_licence(job)},
        "intended_use": INTENDED_USE,
        "not_intended_use": NOT_INTENDED_USE,
    }


def _per_split(rows: list[dict]) -> dict[str, int]:
    counts = Counter(r["split"] for r in rows)
    return {s: counts.get(s, 0) for s in SPLITS}


def parquet_metadata(card: dict) -> dict[bytes, bytes]:
    return {METADATA_KEY: json.dumps(card, sort_keys=True).encode()}


def read_card(manifest_path) -> dict:
    """The machine-readable card of a cohort, from its manifest's Parquet metadata."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(manifest_path).metadata or {}
    if METADATA_KEY not in metadata:
        raise KeyError(f"{manifest_path}: no data card in the Parquet metadata")
    return json.loads(metadata[METADATA_KEY])


def _code(text: str | None) -> str:
    return f"`{text}`" if text else ""


def render(card: dict) -> str:
    """README.md of the cohort folder."""
    c, g, p, f = card["counts"], card["generation"], card["privacy"], card["frame_rate"]
    split_rows = "\n".join(f"| {s} | {c['shipped_per_split'][s]} | {c['pseudo_traced_per_split'][s]} |" for s in SPLITS)
    model_rows = "\n".join(f"| {m['registry_name']} | {m['version']} | "
                           f"{_code(m['sha256']) or ('via the motion bank' if name == 'mafe' else 'unknown')} |"
                           for name, m in g["models"].items())
    labels = "\n".join(f"- **{name}**: {text}" for name, text in card["pseudo_labels"].items())
    return f"""# Synthetic cohort `{card['cohort']}`

{card['what']}

Files: `Videos/<FileName>.avi`, `FileList.csv` and `VolumeTracings.csv` (EchoNet-Dynamic format),
`manifest.parquet` (one row per generated video, shipped or not: provenance, privacy score, pseudo
ED/ES), `synthetic_manifest.json` (Great Expectations validation). This card, as JSON, is in the
Parquet metadata of `manifest.parquet` (key `{METADATA_KEY.decode()}`).

## Contents

{c['shipped']} videos shipped of {c['planned']} generated; {c['not_shipped_privacy']} kept out by the privacy filter;
{c['pseudo_traced']} shipped videos have pseudo tracings (EchoNet's loader keeps only those).

| Split | videos | with pseudo tracings |
|---|---|---|
{split_rows}

## How it was made

Strategy `{g['strategy']}`, sampler `{g['sampler']}`, {g['steps']} steps, guidance {g['guidance']},
frames {g['n_frames'] or "the model's window"} (window overlap {g['window_overlap']}), codec `{g['codec']}`.
Appearance from real {', '.join(g['appearance_splits'])} videos, motion from real {', '.join(g['motion_splits'])} videos.
Global seed {g['global_seed']}, plan hash `{g['plan_hash']}`; every video's own seed and sources are in
`manifest.parquet`, so each video can be regenerated. Generated {g['created']['first']} to {g['created']['last']}.

| model (MLflow registry) | version | sha256 of its files |
|---|---|---|
{model_rows}

MAFE is used through its motion bank (`data/processed/motion.parquet`, sha256 {_code(g['motion_bank_sha256']) or 'unknown'}).

## Frame rate

FileList `FPS` is the true rate of the files: {f['fps']:g} fps. The model generates at {f['model_fps']:g} fps;
videos were resampled ({f['resampling']}) so EchoNet-style loaders sample them as they sample real videos.

## Privacy

{p['rule']} Pass share: {p['pass_share'] if p['pass_share'] is None else f"{p['pass_share']:.3f}"}.

## Labels (read before training on them)

{labels}

## Licence of the source data

{card['source']['licence']}

## Intended use

{chr(10).join(f"- {x}" for x in card['intended_use'])}

## Not intended for

{chr(10).join(f"- {x}" for x in card['not_intended_use'])}
"""
