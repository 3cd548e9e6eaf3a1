"""motion_area_r: does a generated video beat like the donor whose motion vector it was given?

For a few held-out phantom videos, generate a video from the donor's own reference frame and its
own motion vector, then correlate the donor's cavity-area curve with the generated one (the same
:func:`lfmcdm.eval.cavity.cavity_areas` on both, over the donor's real frames of the window).
Windows start at the donor's label-free end-diastole (phase.parquet ed_frame; the phantom's first
true ED where it is unknown), as synthesis does, so the reference frame fixes the phase: from one
frame alone, "about to contract" and "about to fill" look alike.
"""

from __future__ import annotations

import numpy as np
import torch

from lfmcdm.data.tables import load_array, load_clip
from lfmcdm.data.video_windows import window_indices
from lfmcdm.eval.cavity import cavity_areas, pearson
from lfmcdm.layout import Layout
from lfmcdm.models.pipeline import MCDMPipeline
from lfmcdm.settings.diffusion import DiffusionConfig

MIN_REAL_FRAMES = 3  # a correlation needs at least this many points


def motion_area_r(pipe: MCDMPipeline, layout: Layout, rows: list[dict], motion: dict[str, np.ndarray],
                  truth: dict[str, dict], cfg: DiffusionConfig, clip_fps: float) -> tuple[float | None, list[float]]:
    """Mean donor-vs-generated cavity-area r over up to ``motion_eval.videos`` phantom videos.

    Returns (mean r, per-video r); mean is None without phantom truth (real data) or usable videos.
    """
    picks = donor_windows(layout, rows, motion, truth, cfg, clip_fps)
    if not picks:
        return None, []
    return score(layout, picks, generate(pipe, layout, picks, motion, cfg).frames, cfg)


def donor_windows(layout: Layout, rows: list[dict], motion: dict[str, np.ndarray], truth: dict[str, dict],
                  cfg: DiffusionConfig, clip_fps: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``motion_eval.videos`` (name, frame indices, real-frame mask) windows of usable phantom donors."""
    picks = []
    for row in rows:
        name = row["file_name"]
        if name not in truth or name not in motion or not (layout.latents / f"{name}.npy").exists():
            continue
        start = row.get("ed_frame")  # label-free ED, where synthesis starts too; else the phantom's first true ED
        if start is None:
            start = min(truth[name]["ed_frames"] or [0]) * clip_fps / float(truth[name]["fps"])  # source -> clip
        idx, mask = window_indices(int(row["n_frames"]), clip_fps, cfg.fps, cfg.n_frames, start)
        if mask.sum() >= MIN_REAL_FRAMES:
            picks.append((name, idx, mask))
        if len(picks) == cfg.motion_eval.videos:
            break
    return picks


def generate(pipe: MCDMPipeline, layout: Layout, picks: list, motion: dict[str, np.ndarray], cfg: DiffusionConfig):
    """Each donor's video from its own first window frame and motion vector (``motion_eval``'s sampler)."""
    ev = cfg.motion_eval
    refs = torch.from_numpy(np.stack([load_array(layout.latents, n)[idx[0]].astype(np.float32) for n, idx, _ in picks]))
    motions = np.stack([motion[n] for n, _, _ in picks])
    return pipe(refs, motions, seeds=[ev.seed + i for i in range(len(picks))], n_frames=cfg.n_frames,
                sampler=ev.sampler, steps=ev.steps, guidance=ev.guidance)


def score(layout: Layout, picks: list, frames: np.ndarray, cfg: DiffusionConfig) -> tuple[float | None, list[float]]:
    """(mean r, per-video r) of the donors' and the generated videos' cavity-area curves over real frames."""
    rs = []
    for (name, idx, mask), generated in zip(picks, frames):
        donor = np.asarray(load_clip(layout, name))[idx[mask]]
        r = pearson(cavity_areas(donor, cfg.motion_eval.cavity), cavity_areas(generated[mask], cfg.motion_eval.cavity))
        if r is not None:
            rs.append(r)
    return (float(np.mean(rs)) if rs else None), rs
