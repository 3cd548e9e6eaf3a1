"""Sampling throughput at a profile's scale (default: the paper profile), before anything is trained.

Builds the profile's MCDM and VAE with random weights and times ``MCDMPipeline`` (the code synthesis
runs) for DDPM at 128 steps, DPM-Solver++ at 25 and DDIM at 50, classifier-free guidance on, VAE
decoding included. Random weights say nothing about fidelity (use ``benchmarks/sampling.py`` on a
trained project for that); they do give videos/s and memory, which depend only on the shapes.

    python benchmarks/sampling_scale.py                     # paper profile, 8 videos of 64 frames
    python benchmarks/sampling_scale.py --profile quality   # CPU-sized
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lfmcdm.config import TrainConfig, load_params
from lfmcdm.models.pipeline import MCDMPipeline
from lfmcdm.models.unet import time_ids
from lfmcdm.models.vae import build_vae, latent_shape
from lfmcdm.runtime import resolve_device
from lfmcdm.train.diffusion import build_mcdm, make_noise_scheduler

SAMPLERS = (("ddpm", 128), ("dpmsolver++", 25), ("ddim", 50))
MOTION_BANK_SIZE = 64  # random motion vectors: only their statistics feed the conditioner


def random_pipeline(params, device: torch.device) -> MCDMPipeline:
    """The profile's MCDM + VAE, randomly initialised, as one sampling pipeline."""
    d, frame = params.diffusion, params.data.frame_size
    latent_size = params.vae.latent_size(frame)
    torch.manual_seed(params.seed)
    motions = np.random.default_rng(params.seed).standard_normal((MOTION_BANK_SIZE, params.mafe.bank_dim))
    model = build_mcdm(d, params.vae.latent_channels, latent_size, motions.astype(np.float32))
    meta = {"n_frames": d.n_frames, "fps": d.fps, "added_time_ids": time_ids(d)}
    return MCDMPipeline(model.unet, model.conditioner, build_vae(params.vae, frame), make_noise_scheduler(d).config,
                        meta).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--videos", type=int, default=8, help="videos per pipeline call (one batch)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    params = load_params(args.params, {"profile": args.profile})
    device = resolve_device(TrainConfig(device=args.device))
    pipe = random_pipeline(params, device)
    d = params.diffusion
    shape = latent_shape(pipe.vae)
    refs = torch.randn(args.videos, *shape, generator=torch.Generator().manual_seed(params.seed))
    motion = np.random.default_rng(params.seed + 1).standard_normal((args.videos, params.mafe.bank_dim))
    guidance = d.motion_eval.guidance
    pipe(refs[:1], motion[:1], seeds=[0], sampler="dpmsolver++", steps=2, guidance=guidance)  # warm-up, untimed
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}; profile {args.profile}: {args.videos} videos of {d.n_frames} "
          f"frames, UNet channels {d.block_out_channels}, CFG {guidance}, random weights")
    print("| sampler | steps | seconds | videos/s | peak GPU memory (GiB) |\n|---|---|---|---|---|")
    for sampler, steps in SAMPLERS:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        pipe(refs, motion, seeds=list(range(args.videos)), sampler=sampler, steps=steps, guidance=guidance)
        seconds = time.perf_counter() - start  # frames come back as uint8 numpy: the GPU has finished
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        print(f"| {sampler} | {steps} | {seconds:.1f} | {args.videos / seconds:.2f} | {peak:.1f} |", flush=True)


if __name__ == "__main__":
    main()
