"""Sampler throughput vs motion fidelity on one trained MCDM: DDPM (128 steps, as the authors sample)
vs DPM-Solver++ (25 steps) vs DDIM (50 steps).

Each sampler generates the same held-out phantom videos from their own reference frame and motion
vector (same seeds); we report videos/s and the donor-vs-generated cavity-area correlation
(``motion_area_r``, the same measurement the train_diffusion stage reports).

    python benchmarks/sampling.py --root . --videos 8       # after `dvc repro` (or the quality profile)
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from lfmcdm.config import load_params
from lfmcdm.data.phantom import load_truth
from lfmcdm.data.tables import read_videos
from lfmcdm.eval.motion_area import motion_area_r
from lfmcdm.layout import Layout
from lfmcdm.models.pipeline import MCDMPipeline
from lfmcdm.runtime import resolve_device

SAMPLERS = (("ddpm", 128), ("dpmsolver++", 25), ("ddim", 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--videos", type=int, default=8)
    args = parser.parse_args()
    root = Path(args.root)
    params = load_params(root / args.params)
    layout = Layout(root)
    device = resolve_device(params.train)
    pipe = MCDMPipeline.from_pretrained(layout.models, device=device)
    motion = layout.read_motion_bank().vectors
    truth = load_truth(layout.source_root(params))
    rows = read_videos(layout, ("VAL", "TEST")) + read_videos(layout, ("TRAIN",))
    clip_fps = float(params.data.target_fps)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch threads {torch.get_num_threads()}, {args.videos} videos of {params.diffusion.n_frames} frames")
    warm = params.diffusion.motion_eval.model_copy(update={"steps": 2, "videos": 1})  # kernels, allocator: untimed
    motion_area_r(pipe, layout, rows, motion, truth, params.diffusion.model_copy(update={"motion_eval": warm}), clip_fps)
    print("| sampler | steps | seconds | videos/s | motion_area_r |\n|---|---|---|---|---|")
    for sampler, steps in SAMPLERS:
        ev = params.diffusion.motion_eval.model_copy(update={"sampler": sampler, "steps": steps, "videos": args.videos})
        cfg = params.diffusion.model_copy(update={"motion_eval": ev})
        start = time.perf_counter()
        r, per_video = motion_area_r(pipe, layout, rows, motion, truth, cfg, clip_fps)
        elapsed = time.perf_counter() - start
        r_text = f"{r:.3f}" if r is not None else "n/a"
        print(f"| {sampler} | {steps} | {elapsed:.1f} | {args.videos / elapsed:.3f} | {r_text} |")


if __name__ == "__main__":
    main()
