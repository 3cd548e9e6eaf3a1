"""Static figures of the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lfmcdm.atomic import atomic_path  # noqa: E402
from lfmcdm.eval.motion_fidelity import CurveMatch  # noqa: E402

COLORS = {"real": "#1f77b4", "synthetic": "#d62728", "both": "#9467bd", "donor": "#1f77b4",
          "generated": "#d62728", "shuffled": "#7f7f7f", "heldout": "#2ca02c"}
FRAME_INCHES = 1.3  # size of one video frame in the grids
LOG_RANGE = 100.0  # a curve spanning more than this factor (all positive) is drawn on a log axis
BOOKKEEPING = ("epoch", "lr", "learning_rate", "step")  # logged histories that say nothing about training quality


def _save(fig, path: Path, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / max(float(x.std()), 1e-12)


def frame_grid(videos: list[tuple[str, np.ndarray, float]], n_frames: int, title: str, path: Path, dpi: int) -> Path:
    """One row per video (label, uint8 (T, H, W), fps), ``n_frames`` evenly spaced frames with their time."""
    rows = max(1, len(videos))
    fig, axes = plt.subplots(rows, n_frames, figsize=(n_frames * FRAME_INCHES, rows * FRAME_INCHES + 0.4), squeeze=False)
    for r, (label, video, fps) in enumerate(videos):
        picks = np.linspace(0, len(video) - 1, n_frames).round().astype(int)
        for c, t in enumerate(picks):
            ax = axes[r, c]
            ax.imshow(video[t], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{t / fps:.2f} s", fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center")
    for ax in axes[len(videos):].ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


def cavity_curves(matches: list[tuple[str, CurveMatch, CurveMatch | None]], path: Path, dpi: int) -> Path:
    """Donor (from its ED, resampled) vs generated cavity area, z-scored, one panel per sample."""
    cols = min(3, max(1, len(matches)))
    rows = -(-len(matches) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (sample_id, own, other) in zip(axes.ravel(), matches):
        ax.plot(own.times, _zscore(own.donor), color=COLORS["donor"], label=f"donor (from {own.lag_s:.2f} s)")
        ax.plot(own.times, _zscore(own.generated), color=COLORS["generated"], label="generated")
        if other is not None and len(other.times):
            ax.plot(other.times, _zscore(other.donor), color=COLORS["shuffled"], ls=":", label="another donor")
        r_other = f", other r = {other.r:.2f}" if other is not None and np.isfinite(other.r) else ""
        ax.set_title(f"{sample_id}: r = {own.r:.2f}{r_other}", fontsize=8)
        ax.set_xlabel("time in generated video (s)", fontsize=7)
        ax.set_ylabel("cavity area (z-score)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right")
    for ax in axes.ravel()[len(matches):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, dpi)


def privacy_histogram(synthetic: np.ndarray, heldout: np.ndarray | None, threshold: float | None, bins: int,
                      path: Path, dpi: int) -> Path:
    """Nearest-training-video similarity of synthetic videos (and held-out real ones), with the threshold."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    values = [np.asarray(v, np.float64) for v in (synthetic, heldout) if v is not None and len(v)]
    edges = np.histogram_bin_edges(np.concatenate(values), bins=bins) if values else bins
    if synthetic is not None and len(synthetic):
        ax.hist(synthetic, bins=edges, color=COLORS["synthetic"], alpha=0.6, label=f"synthetic (n={len(synthetic)})")
    if heldout is not None and len(heldout):
        ax.hist(heldout, bins=edges, color=COLORS["heldout"], alpha=0.5, label=f"held-out real (n={len(heldout)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine similarity to the nearest training video (ReID)")
    ax.set_ylabel("videos")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)


def ef_scatter(truth: np.ndarray, predictions: dict[str, np.ndarray | None], path: Path, dpi: int) -> Path:
    """Predicted vs true EF on the real test videos, one colour per training set."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    lo, hi = (float(np.min(truth)), float(np.max(truth))) if len(truth) else (0.0, 100.0)
    for name, pred in predictions.items():
        if pred is not None:
            ax.scatter(truth, pred, s=18, color=COLORS.get(name), alpha=0.75, label=f"trained on {name}")
            lo, hi = min(lo, float(np.min(pred))), max(hi, float(np.max(pred)))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="perfect")
    ax.set_xlabel("true EF (%)")
    ax.set_ylabel("predicted EF (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def _curve_order(key: str) -> tuple[int, str]:
    """Losses first, then other quality metrics, bookkeeping (epoch, lr) last."""
    name = key.lower()
    return (0 if "loss" in name else 2 if name.split(".")[-1] in BOOKKEEPING else 1, name)


def training_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path, dpi: int,
                    max_metrics: int) -> Path:
    """One row per training stage, one panel per logged metric (its history over steps), losses first."""
    stages = [s for s, metrics in curves.items() if metrics]
    cols = max(1, min(max_metrics, max(len(curves[s]) for s in stages)))
    fig, axes = plt.subplots(len(stages), cols, figsize=(3.4 * cols, 2.5 * len(stages)), squeeze=False)
    for r, stage in enumerate(stages):
        items = sorted(curves[stage].items(), key=lambda kv: _curve_order(kv[0]))[:cols]
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(items):
                ax.axis("off")
                continue
            key, points = items[c]
            steps, values = zip(*points)
            ax.plot(steps, values, lw=1.2)
            positive = np.asarray(values) > 0
            if positive.all() and max(values) / max(min(values), 1e-12) > LOG_RANGE:
                ax.set_yscale("log")
            ax.set_title(f"{stage}: {key}", fontsize=8)
            ax.set_xlabel("step", fontsize=7)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)
