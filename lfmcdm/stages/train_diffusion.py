"""Stage ``train_diffusion``: train the motion-conditioned video diffusion model (MCDM).

Inputs: cached latents (``data/processed/latents``), the motion bank (``data/processed/motion.parquet``),
``models/vae``. Outputs: ``models/mcdm/`` (EMA weights; see :mod:`lfmcdm.models.pipeline`), MLflow
model ``lfmcdm-mcdm`` (a new version every run, ``@latest`` resolves to it; alias ``champion`` moves
to it when its validation loss beats the previous champion's), metrics train_loss and
motion_area_r (null unless the source is the phantom). Resumable from ``checkpoints/train_diffusion/``;
``accelerate launch -m lfmcdm.cli stage train_diffusion`` spreads training over GPUs.
"""

from __future__ import annotations

import hashlib

from accelerate import PartialState

from lfmcdm import tracking
from lfmcdm.data.phantom import load_truth
from lfmcdm.data.tables import read_videos
from lfmcdm.data.video_windows import LatentWindows
from lfmcdm.eval.motion_area import motion_area_r
from lfmcdm.fingerprint import folder_hash
from lfmcdm.layout import MODELS
from lfmcdm.models.pipeline import MCDMPipeline, save_mcdm
from lfmcdm.models.unet import time_ids
from lfmcdm.models.vae import latent_shape, load_vae
from lfmcdm.runtime import resolve_device, seed_everything
from lfmcdm.stages import format_metric
from lfmcdm.train.accel import fingerprint, log_curve
from lfmcdm.train.diffusion import make_noise_scheduler, train_mcdm, validation_loss

CHAMPION = "champion"
VAL_LOSS_TAG = "val_loss"


def promote_if_better(name: str, version: str, val_loss: float | None) -> bool:
    """Tag the new version with its validation loss; move ``champion`` to it if it beats the holder's."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    if val_loss is not None:
        client.set_model_version_tag(name, version, VAL_LOSS_TAG, repr(val_loss))
    try:
        holder = client.get_model_version_by_alias(name, CHAMPION)
        previous = float(holder.tags.get(VAL_LOSS_TAG, "inf"))
    except MlflowException:
        previous = None
    better = previous is None or (val_loss is not None and val_loss < previous)
    if better:
        client.set_registered_model_alias(name, CHAMPION, version)
    return better


def run(ctx) -> dict:
    cfg, layout, params = ctx.params.diffusion, ctx.layout, ctx.params
    vae_dir = layout.model_dir("vae")
    if not (vae_dir / "config.json").exists():
        raise FileNotFoundError(f"{vae_dir}: no trained VAE; run `lfmcdm stage train_vae` first")
    channels, size, _ = latent_shape(load_vae(vae_dir))
    bank = layout.read_motion_bank()
    motion, mafe_version = bank.vectors, bank.mafe_version
    clip_fps = params.data.target_fps

    def windows(splits: tuple[str, ...]) -> LatentWindows:
        return LatentWindows.from_rows(layout.latents, read_videos(layout, splits), motion, clip_fps, cfg.fps,
                                       cfg.n_frames, cfg.reference, cfg.window_start)

    train = windows(("TRAIN",))
    val = windows(("VAL",)) or windows(("TEST",))  # validation loss (champion selection)
    vae_hash = folder_hash(vae_dir)
    data_key = fingerprint({"videos": train.names, "vae": vae_hash,
                            "motion": hashlib.sha256(train.motions).hexdigest()})
    seed_everything(params.seed)
    result = train_mcdm(cfg, params.train, train, layout.checkpoints / "train_diffusion", params.seed, channels, size,
                        progress=ctx.progress, data_key=data_key)
    state = PartialState()
    if state.num_processes > 1:  # under `accelerate launch`: every process says what it trained
        print(f"train_diffusion: process {state.process_index} of {state.num_processes} trained steps "
              f"{result.start_step}->{result.end_step}")
    if not state.is_main_process:  # rank 0 alone saves, measures, tracks and registers
        return {}
    noise_sched = make_noise_scheduler(cfg)
    device = resolve_device(params.train)
    val_loss = validation_loss(result.model.to(device), noise_sched, val, cfg, params.seed, device)
    meta = {"n_frames": cfg.n_frames, "fps": cfg.fps, "clip_fps": clip_fps,
            "added_time_ids": time_ids(cfg), "reference": cfg.reference, "window_start": cfg.window_start,
            "motion_dim": int(train.motions.shape[1]), "mafe_version": mafe_version, "vae_hash": vae_hash,
            "step": result.end_step, "processes": state.num_processes, "train_loss": result.loss, "val_loss": val_loss}
    out = layout.model_dir("mcdm")
    save_mcdm(result.model.cpu(), noise_sched, meta, out)

    truth = load_truth(layout.source_root(params)) if params.data.echonet_root is None else {}
    r, per_video = None, []
    if truth:
        pipe = MCDMPipeline.from_pretrained(layout.models, device)
        r, per_video = motion_area_r(pipe, layout, read_videos(layout, ("VAL", "TEST")), motion, truth, cfg, clip_fps)
    log_curve({"val_loss": val_loss, "motion_area_r": r})
    version = tracking.register_model(MODELS["mcdm"].registry_name, out, aliases=())  # "@latest" is implicit in MLflow 3
    champion = promote_if_better(MODELS["mcdm"].registry_name, version, val_loss) if version else False
    print(f"train_diffusion: steps {result.start_step}->{result.end_step}, train_loss {format_metric(result.loss)}, "
          f"val_loss {format_metric(val_loss)}, motion_area_r {format_metric(r)} {[round(v, 3) for v in per_video]}"
          + (f", registered v{version}{' (champion)' if champion else ''}" if version else ""))
    return {"train_loss": result.loss, "motion_area_r": r}
