"""Sampler throughput vs motion fidelity on one trained MCDM: DDPM (128 steps, as the authors sample)
vs DPM-Solver++ (25 steps) vs DDIM (50 steps), and the distilled student (``lcm``, 1-4 steps, stage
``distill``) when ``models/distill`` exists.

Each sampler generates the same held-out phantom videos from their own reference frame and motion
vector (same seeds); we report videos/s and the donor-vs-generated cavity-area correlation
(``motion_area_r``, the same measurement the train_diffusion stage reports).

    python benchmarks/sampling.py --root . --videos 8       # after `dvc repro` (or the quality profile)
    python benchmarks/sampling.py --root . --videos 8 --samplers lcm:4 lcm:2 dpmsolver++:25 ddpm:128
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
from lfmcdm.eval.motion_area import donor_windows, generate, score
from lfmcdm.layout import Layout
from lfmcdm.models.pipeline import DISTILLED_SAMPLER, MCDMPipeline
from lfmcdm.runtime import resolve_device

SAMPLERS = ("ddpm:128", "dpmsolver++:25", "ddim:50", "lcm:4")  # lcm: the distilled student (skipped without one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), help="sampler:steps, in the order to run")
    args = parser.parse_args()
    root = Path(args.root)
    params = load_params(root / args.params)
    layout = Layout(root)
    device = resolve_device(params.train)
    pipes = {"mcdm": MCDMPipeline.from_pretrained(layout.models, device=device)}
    if layout.model_dir("distill").is_dir():
        pipes["distill"] = MCDMPipeline.from_pretrained(layout.models, device=device, model="distill")
    pipe = pipes["mcdm"]
    motion = layout.read_motion_bank().vectors
    truth = load_truth(layout.source_root(params))
    rows = read_videos(layout, ("VAL", "TEST")) + read_videos(layout, ("TRAIN",))
    clip_fps = float(params.data.target_fps)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch threads {torch.get_num_threads()}, {args.videos} videos of {params.diffusion.n_frames} frames")
    picks = donor_windows(layout, rows, motion, truth, params.diffusion.model_copy(
        update={"motion_eval": params.diffusion.motion_eval.model_copy(update={"videos": args.videos})}), clip_fps)
    warm = params.diffusion.model_copy(update={"motion_eval": params.diffusion.motion_eval.model_copy(
        update={"steps": 2})})  # kernels, allocator: untimed
    generate(pipe, layout, picks[:1], motion, warm)
    print("| sampler | steps | UNet calls / video | generation s | videos/s | motion_area_r |\n|---|---|---|---|---|---|")
    for spec in args.samplers:
        sampler, steps = spec.split(":")[0], int(spec.split(":")[1])
        model = "distill" if sampler == DISTILLED_SAMPLER else "mcdm"
        if model not in pipes:
            print(f"| {sampler} | {steps} | no models/distill: run `lfmcdm stage distill` | | | |")
            continue
        ev = params.diffusion.motion_eval.model_copy(update={"sampler": sampler, "steps": steps})
        cfg = params.diffusion.model_copy(update={"motion_eval": ev})
        start = time.perf_counter()  # generation (UNet steps + VAE decoding) only; the cavity scoring is not timed
        frames = generate(pipes[model], layout, picks, motion, cfg).frames
        elapsed = time.perf_counter() - start
        r, _ = score(layout, picks, frames, cfg)
        calls = steps * (2 if sampler != DISTILLED_SAMPLER and ev.guidance != 1.0 else 1)
        r_text = f"{r:.3f}" if r is not None else "n/a"
        print(f"| {sampler} | {steps} | {calls} | {elapsed:.1f} | {len(picks) / elapsed:.3f} | {r_text} |", flush=True)


if __name__ == "__main__":
    main()
