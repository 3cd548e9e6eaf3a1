"""Training throughput and memory of the MCDM at a profile's scale (default: the paper profile).

Runs the real training loop (``lfmcdm.train.diffusion.train_mcdm``: accelerate, v-prediction loss,
AdamW, gradient clipping, EMA update) on random latent windows of the profile's shape, once per
precision, and reports steps/s, videos/s and peak GPU memory. Steps are timed between consecutive
batch draws; every step ends with ``loss.item()``, which waits for the GPU, so the times are real.

    python benchmarks/diffusion_train.py                        # paper profile, fp32 and bf16
    python benchmarks/diffusion_train.py --profile quality --steps 5 --precisions no   # CPU smoke run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lfmcdm.config import TrainConfig, load_params
from lfmcdm.runtime import resolve_device
from lfmcdm.train.diffusion import train_mcdm

MOTION_BANK_SIZE = 64  # random motion vectors: only their statistics feed the conditioner


class RandomWindows:
    """Stands in for ``LatentWindows``: same batch layout (motion vectors of the bank's size), random
    values, and a clock per draw."""

    def __init__(self, n_frames: int, channels: int, size: int, motion_dim: int, seed: int):
        self.shape = (n_frames, channels, size, size)
        self.motions = np.random.default_rng(seed).standard_normal((MOTION_BANK_SIZE, motion_dim)).astype(np.float32)
        self.draw_times: list[float] = []

    def __len__(self) -> int:
        return len(self.motions)

    def sample(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        self.draw_times.append(time.perf_counter())
        n_frames, c, h, w = self.shape
        return {"latents": torch.from_numpy(rng.standard_normal((batch, *self.shape), dtype=np.float32)),
                "reference": torch.from_numpy(rng.standard_normal((batch, c, h, w), dtype=np.float32)),
                "mask": torch.ones(batch, n_frames, dtype=torch.bool),
                "motion": torch.from_numpy(self.motions[rng.integers(len(self.motions), size=batch)])}


def run(params, precision: str, steps: int, warmup: int, device: str, batch_size: int | None = None) -> dict:
    """Train ``warmup + steps`` steps in ``precision``; time the last ``steps``."""
    cfg = params.diffusion.model_copy(update={"steps": warmup + steps, "checkpoint_every": 10**9, "log_every": 10**9,
                                              "batch_size": batch_size or params.diffusion.batch_size})
    latent_size = params.vae.latent_size(params.data.frame_size)
    data = RandomWindows(cfg.n_frames, params.vae.latent_channels, latent_size, params.mafe.bank_dim, params.seed)
    train_cfg = TrainConfig(device=device, mixed_precision=precision)
    on_cuda = resolve_device(train_cfg).type == "cuda"
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as ckpt:
        result = train_mcdm(cfg, train_cfg, data, Path(ckpt), params.seed, params.vae.latent_channels, latent_size,
                            progress=False)
        end = time.perf_counter()  # the final checkpoint write is outside the timed steps
    times = data.draw_times[warmup:] + [end]
    seconds = float(np.median(np.diff(times)))
    n_params = sum(p.numel() for p in result.model.parameters())
    return {"precision": precision, "params_m": n_params / 1e6, "step_s": seconds, "steps_per_s": 1 / seconds,
            "videos_per_s": cfg.batch_size / seconds, "loss": result.loss,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_cuda else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator, kernels)")
    parser.add_argument("--precisions", nargs="+", default=["no", "bf16"], choices=["no", "fp16", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per step (default: the profile's)")
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)  # one precision, table row only
    args = parser.parse_args()
    params = load_params(args.params, {"profile": args.profile})
    if args.row:  # accelerate's state is per process: each precision runs in its own
        (precision,) = args.precisions
        r = run(params, precision, args.steps, args.warmup, args.device, args.batch_size)
        label = "fp32" if precision == "no" else precision
        print(f"| {label} | {r['params_m']:.1f} | {r['step_s']:.3f} | {r['steps_per_s']:.2f} | "
              f"{r['videos_per_s']:.1f} | {r['peak_gib']:.1f} |", flush=True)
        return
    d = params.diffusion
    device = resolve_device(TrainConfig(device=args.device))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}; profile {args.profile}: {args.batch_size or d.batch_size} windows x "
          f"{d.n_frames} frames, channels {d.block_out_channels}, layers {d.layers_per_block}; "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print("| precision | params (M) | s/step | steps/s | videos/s | peak GPU memory (GiB) |\n|---|---|---|---|---|---|",
          flush=True)
    for precision in args.precisions:
        subprocess.run([sys.executable, __file__, "--row", "--params", args.params, "--profile", args.profile,
                        "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
                        "--precisions", precision] + (["--batch-size", str(args.batch_size)] if args.batch_size else []),
                       check=True)


if __name__ == "__main__":
    main()
