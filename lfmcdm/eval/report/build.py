"""Assemble ``reports/<cohort>/``: index.html, images/, gifs/, plots/ (DVC plot data), metrics.json.

The folder is written whole into a temporary sibling and swapped in atomically, so a browser or
``dvc plots`` never sees half a report. Metric numbers on the page come from the very dict that
becomes ``metrics/eval.json`` (a copy sits beside index.html).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lfmcdm.atomic import atomic_dir, write_json, write_text
from lfmcdm.data.tables import load_clip
from lfmcdm.eval.cohort_data import Cohort
from lfmcdm.eval.cohort_eval import Evaluation
from lfmcdm.eval.report import animation, figures, plot_data
from lfmcdm.eval.report.html import Figure, ReportPage, fmt, render
from lfmcdm.layout import Layout
from lfmcdm.settings.evaluate import ReportConfig

IMAGES, GIFS, PLOTS = "images", "gifs", "plots"
METRICS_COPY = "metrics.json"
VERSION_COLUMNS = ("mcdm_version", "vae_version", "mafe_version", "reid_version")


def clean_metrics(metrics: dict) -> dict:
    """Plain Python numbers, NaN/inf -> None (the stage runner's rule), so page and JSON agree exactly."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (bool, np.bool_)):
            value = bool(value)
        elif isinstance(value, (int, np.integer)):
            value = int(value)
        elif isinstance(value, (float, np.floating)):
            value = float(value) if math.isfinite(float(value)) else None
        out[key] = value
    return out


@dataclass
class ReportInputs:
    cohort: Cohort
    evaluation: Evaluation
    metrics: dict  # cleaned
    layout: Layout
    cfg: ReportConfig
    training: dict[str, dict[str, list[tuple[int, float]]]]


def _real_clip(layout: Layout, name: str, rows: dict[str, dict]) -> tuple[np.ndarray, float] | None:
    if name not in rows or not layout.clip(name).exists():
        return None
    return np.asarray(load_clip(layout, name)), float(rows[name]["fps"])


def _frame_grids(inp: ReportInputs, folder: Path, real_rows: dict[str, dict]) -> list[Figure]:
    ev, cfg = inp.evaluation, inp.cfg
    by_id = {s.sample_id: s.row for s in ev.samples}
    ids = list(ev.examples)[: cfg.grid_videos]
    if not ids:
        return []
    synthetic = [(i, ev.examples[i], float(by_id[i]["fps"])) for i in ids]
    real = []
    for i in ids:
        found = _real_clip(inp.layout, by_id[i]["appearance_source"], real_rows)
        if found is not None:  # the same time span as the generated video, so the rows compare like for like
            clip, fps = found
            span = int(round(len(ev.examples[i]) / float(by_id[i]["fps"]) * fps))
            real.append((by_id[i]["appearance_source"], clip[: max(1, span)], fps))
    out = []
    if real:
        figures.frame_grid(real, cfg.grid_frames, "Real: the appearance sources", folder / IMAGES / "real_frames.png", cfg.dpi)
        out.append(Figure(f"{IMAGES}/real_frames.png", "Real videos (held-out appearance sources of the samples on the right)"))
    figures.frame_grid(synthetic, cfg.grid_frames, "Synthetic", folder / IMAGES / "synthetic_frames.png", cfg.dpi)
    out.append(Figure(f"{IMAGES}/synthetic_frames.png", "Generated videos, same rows: appearance from the left, motion from a donor"))
    return out


def _gifs(inp: ReportInputs, folder: Path, real_rows: dict[str, dict]) -> list[Figure]:
    ev, cfg = inp.evaluation, inp.cfg
    by_id = {s.sample_id: s.row for s in ev.samples}
    lags = {sid: own.lag_s for sid, own, _ in ev.curves}
    out = []
    for sid in list(ev.examples)[: cfg.animated_samples]:
        row, video = by_id[sid], ev.examples[sid]
        fps = float(row["fps"])
        panels = [("generated", video, fps, 0.0)]
        donor = _real_clip(inp.layout, row["motion_source"], real_rows)
        if donor is not None:
            panels.insert(0, ("motion donor", *donor, lags.get(sid, 0.0)))
        appearance = _real_clip(inp.layout, row["appearance_source"], real_rows)
        if appearance is not None:
            panels.insert(0, ("appearance", *appearance, 0.0))
        animation.side_by_side_gif(panels, fps, len(video), cfg.gif_scale, folder / GIFS / f"{sid}.gif")
        ef = f", donor EF {row['donor_ef']:.1f}%" if row.get("donor_ef") is not None else ""
        out.append(Figure(f"{GIFS}/{sid}.gif", f"{sid}: appearance {row['appearance_source']}, "
                                               f"motion {row['motion_source']}{ef}"))
    return out


def _sample_table(ev: Evaluation, rows_max: int) -> tuple[list[str], list[list[str]]]:
    r_by_id = {sid: (own.r, None if other is None else other.r) for sid, own, other in ev.curves}
    header = ["sample", "appearance source", "motion donor", "donor EF", "privacy score", "passes",
              "motion cos (own / other)", "cavity r (own / other)"]
    rows = []
    for s in ev.samples[:rows_max]:
        cos = ev.motion_cosines.get(s.sample_id)
        r = r_by_id.get(s.sample_id)
        rows.append([s.sample_id, s.row["appearance_source"], s.row["motion_source"], fmt(s.row.get("donor_ef")),
                     fmt(s.row.get("privacy_score")), fmt(s.row.get("privacy_pass")),
                     f"{fmt(cos[0])} / {fmt(cos[1])}" if cos else "n/a",
                     f"{fmt(_finite(r[0]))} / {fmt(_finite(r[1]))}" if r else "n/a"])
    return header, rows


def _finite(x) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _subtitle(inp: ReportInputs) -> list[str]:
    rows = inp.cohort.manifest
    first = rows[0] if rows else {}
    versions = ", ".join(f"{c.split('_')[0]} {sorted({str(r.get(c)) for r in rows})[0]}" for c in VERSION_COLUMNS
                         if rows and len({r.get(c) for r in rows}) == 1 and first.get(c))
    settings = (f"strategy {first.get('strategy')}, sampler {first.get('sampler')}, {first.get('steps')} steps, "
                f"guidance {first.get('guidance')}, {first.get('fps')} fps" if rows else "empty cohort")
    return [f"{len(inp.cohort.shipped)} videos shipped ({len(rows) - len(inp.cohort.shipped)} kept out by the privacy filter) "
            f"in {inp.cohort.directory} · {settings}",
            f"models: {versions or 'mixed / unknown versions'}",
            f"evaluated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"]


def _cards(m: dict) -> list[tuple[str, str, str]]:
    return [
        ("privacy: share passing", "privacy_pass_share", f"threshold {fmt(m.get('privacy_threshold'))}, "
                                                         f"max score {fmt(m.get('privacy_score_max'))}"),
        ("Fréchet ReID: synthetic vs real", "frechet_reid_frame_distance",
         f"held-out real: {fmt(m.get('frechet_reid_frame_distance_heldout_real'))} (lower is better)"),
        ("motion cosine to own donor", "motion_vector_cosine_donor",
         f"to another donor: {fmt(m.get('motion_vector_cosine_shuffled_donor'))}"),
        ("cavity-area r with own donor", "cavity_area_r_donor",
         f"with another donor: {fmt(m.get('cavity_area_r_shuffled_donor'))}"),
        ("EF R² trained on synthetic", "ef_r2_synthetic",
         f"on real: {fmt(m.get('ef_r2_real'))}, on both: {fmt(m.get('ef_r2_both'))}"),
        ("diversity (ReID) synthetic", "diversity_reid_synthetic", f"held-out real: {fmt(m.get('diversity_reid_real'))}"),
    ]


NOTES = {
    "summary": "Each headline number with the reference that makes it readable: a real-vs-real floor or a "
               "shuffled-donor baseline.",
    "metrics": "The numbers of metrics/eval.json (written from the same values). Fréchet distances use the "
               "project's own encoders (ReID frames, MAFE motion), not Inception/I3D: they compare cohorts of this "
               "pipeline, not published FID/FVD values.",
    "frames": "Frames at evenly spaced times; rows pair each generated video with its real appearance source.",
    "animations": "Appearance source | motion donor (from its ED, where its motion starts) | generated, "
                  "played at the generated frame rate.",
    "motion": "Cavity area of the donor (from its ED, resampled to the generated frame times) and of the generated "
              "video, z-scored; dotted: another donor, from its own ED.",
    "privacy": "ReID similarity of each video to its nearest training video. Synthetic videos above the threshold "
               "are kept out of FileList.csv; held-out real patients show what a different person scores.",
    "downstream": "A tiny CNN trained on (a) real training videos, (b) privacy-passing synthetic videos labelled "
                  "with donor EF, (c) both - scored on the same real test videos.",
    "training": "Metric histories of the latest runs of the training stages, read from MLflow.",
}


def write_report(out_dir: Path, inp: ReportInputs) -> Path:
    """Write the report folder atomically; returns ``out_dir``."""
    ev, cfg, m = inp.evaluation, inp.cfg, inp.metrics
    real_rows = {r["file_name"]: r for r in _all_real_rows(inp.layout)}
    with atomic_dir(out_dir) as tmp:
        for sub in (IMAGES, GIFS, PLOTS):
            (tmp / sub).mkdir()
        page = ReportPage(title=f"Synthetic cohort '{inp.cohort.name}'", subtitle=_subtitle(inp), metrics=m,
                          cards=_cards(m), notes=dict(NOTES))
        page.frames = _frame_grids(inp, tmp, real_rows)
        page.gifs = _gifs(inp, tmp, real_rows)
        _motion(page, inp, tmp)
        _privacy(page, inp, tmp)
        _downstream(page, inp, tmp)
        _training(page, inp, tmp)
        for sid, figs in (("frames", page.frames), ("animations", page.gifs)):
            if not figs:
                page.missing[sid] = "No synthetic videos to show."
        write_json(tmp / METRICS_COPY, m)
        page.links = [(METRICS_COPY, "metrics.json"), *[(f"{PLOTS}/{f}", f) for f in sorted(p.name for p in (tmp / PLOTS).iterdir())]]
        write_text(tmp / "index.html", render(page))
    return out_dir


def _all_real_rows(layout: Layout) -> list[dict]:
    from lfmcdm.data.tables import read_videos

    return read_videos(layout) if layout.videos.exists() else []


def _motion(page: ReportPage, inp: ReportInputs, folder: Path) -> None:
    ev, cfg = inp.evaluation, inp.cfg
    plot_data.write_cavity_curves(folder / PLOTS, ev.curves)
    shown = [c for c in ev.curves if len(c[1].times)][: cfg.curve_samples]
    if shown:
        figures.cavity_curves(shown, folder / IMAGES / "cavity_curves.png", cfg.dpi)
        page.motion.append(Figure(f"{IMAGES}/cavity_curves.png", f"Donor curves: {ev.curve_source}; generated: measured"))
    else:
        page.missing["motion"] = ("No cavity-area curves: the cavity measurement (lfmcdm.eval.cavity) or the donors' "
                                  "curves are not available.")
    if ev.samples:
        page.sample_table = _sample_table(ev, cfg.sample_rows)


def _privacy(page: ReportPage, inp: ReportInputs, folder: Path) -> None:
    cfg = inp.cfg
    scores = np.asarray([r["privacy_score"] for r in inp.cohort.manifest if r["privacy_score"] is not None], np.float64)
    plot_data.write_privacy_histogram(folder / PLOTS, scores, inp.evaluation.privacy_heldout_scores, cfg.histogram_bins)
    if len(scores):
        figures.privacy_histogram(scores, inp.evaluation.privacy_heldout_scores, inp.metrics.get("privacy_threshold"),
                                  cfg.histogram_bins, folder / IMAGES / "privacy_histogram.png", cfg.dpi)
        page.privacy.append(Figure(f"{IMAGES}/privacy_histogram.png", "Nearest-training-video similarity"))
    else:
        page.missing["privacy"] = "The manifest holds no privacy scores."


def _downstream(page: ReportPage, inp: ReportInputs, folder: Path) -> None:
    ev, cfg = inp.evaluation, inp.cfg
    truth = np.array([v.ef for v in ev.ef_test])
    predictions = {name: res.predictions for name, res in ev.ef_results.items()}
    plot_data.write_ef_predictions(folder / PLOTS, [v.name for v in ev.ef_test], truth, predictions)
    if len(truth) and any(p is not None for p in predictions.values()):
        figures.ef_scatter(truth, predictions, folder / IMAGES / "ef_scatter.png", cfg.dpi)
        page.downstream.append(Figure(f"{IMAGES}/ef_scatter.png", f"Predicted vs true EF on {len(truth)} real test videos"))
    else:
        page.missing["downstream"] = "No EF regressor could be trained and scored (missing EF labels or test videos)."


def _training(page: ReportPage, inp: ReportInputs, folder: Path) -> None:
    cfg = inp.cfg
    found = {s: c for s, c in inp.training.items() if c}
    absent = [s for s in cfg.training_stages if s not in found]
    if found:
        figures.training_curves(found, folder / IMAGES / "training_curves.png", cfg.dpi, cfg.curves_per_stage)
        page.training.append(Figure(f"{IMAGES}/training_curves.png", "Logged metrics over optimiser steps"))
    if absent:
        page.missing["training"] = f"No MLflow metric history found for: {', '.join(absent)}."
