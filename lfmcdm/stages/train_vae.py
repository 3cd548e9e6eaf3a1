"""Stage ``train_vae``: train the frame AutoencoderKL, fix its latent scale, save + register it.

Outputs: ``models/vae/`` (diffusers ``save_pretrained``; ``scaling_factor`` in its config.json),
MLflow model ``lfmcdm-vae`` (``@latest`` resolves to the newest version), metrics val_psnr / val_ssim on VAL frames.
Resumable from ``checkpoints/train_vae/``; re-running a finished stage only re-measures and re-saves.
"""

from __future__ import annotations

from accelerate import PartialState

from lfmcdm import tracking
from lfmcdm.atomic import atomic_dir
from lfmcdm.data.tables import read_videos
from lfmcdm.layout import MODELS
from lfmcdm.runtime import seed_everything
from lfmcdm.train.accel import fingerprint
from lfmcdm.train.vae import FrameSource, compute_scaling_factor, evaluate_vae, train_vae



def eval_rows(layout) -> list[dict]:
    """VAL videos, or TEST when a dataset has no VAL split."""
    return read_videos(layout, ("VAL",)) or read_videos(layout, ("TEST",))


def run(ctx) -> dict:
    cfg, layout = ctx.params.vae, ctx.layout
    train_rows = read_videos(layout, ("TRAIN",))
    if not train_rows:
        raise FileNotFoundError(f"{layout.videos}: no usable TRAIN videos to train the VAE on")
    seed_everything(ctx.params.seed)
    source = FrameSource.from_rows(layout, train_rows)
    data_key = fingerprint({"videos": [(r["file_name"], r["sha256"]) for r in train_rows]})
    result = train_vae(cfg, ctx.params.train, source, layout.checkpoints / "train_vae", ctx.params.seed,
                       ctx.params.data.frame_size, progress=ctx.progress, data_key=data_key)
    vae = result.vae
    batch = ctx.params.latents.batch_size
    vae.register_to_config(scaling_factor=compute_scaling_factor(vae, source.spread(cfg.scale_frames), batch))
    metrics = evaluate_vae(vae, FrameSource.from_rows(layout, eval_rows(layout) or train_rows).spread(cfg.val_frames),
                           batch)
    if PartialState().is_main_process:
        out = layout.model_dir("vae")
        with atomic_dir(out) as tmp:
            vae.save_pretrained(tmp)
        tracking.register_model(MODELS["vae"].registry_name, out, aliases=())  # "latest" is implicit (reserved) in MLflow 3
        print(f"train_vae: steps {result.start_step}->{result.end_step}, scaling_factor "
              f"{vae.config.scaling_factor:.4f}, val_psnr {metrics['val_psnr']:.2f} dB, "
              f"val_ssim {metrics['val_ssim']:.3f}")
    return metrics
