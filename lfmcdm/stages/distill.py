"""Stage ``distill``: distil the trained MCDM into a student that samples in 1-4 steps (``synthesis.sampler: lcm``).

Inputs: ``models/mcdm`` (the teacher), ``models/vae``, cached latents and the motion bank (the teacher's
training windows). Outputs: ``models/distill/`` (the MCDM folder layout: ``unet/``, ``conditioner/``,
``scheduler/`` = an ``LCMScheduler`` config, ``mcdm.json`` with ``distilled`` set), MLflow model
``lfmcdm-mcdm-distilled`` (a new version every run) and ``metrics/distill.json``: train_loss, the latent
distance to the teacher's DPM-Solver++ reference of the student's and the undistilled weights' one-step
videos and of the teacher's few-step ones (``student_gap``, ``untrained_gap``, ``teacher_few_step_gap``:
:func:`lfmcdm.eval.few_step.teacher_gaps`) and motion_area_r of the student (phantom only).
Resumable from ``checkpoints/distill/``; runs under ``accelerate launch`` like ``train_diffusion``.
"""

from __future__ import annotations

import hashlib

from accelerate import PartialState

from lfmcdm import tracking
from lfmcdm.data.phantom import load_truth
from lfmcdm.data.tables import read_videos
from lfmcdm.data.video_windows import LatentWindows
from lfmcdm.eval.few_step import teacher_gaps
from lfmcdm.eval.motion_area import motion_area_r
from lfmcdm.fingerprint import folder_hash
from lfmcdm.layout import MODELS
from lfmcdm.models.pipeline import DISTILLED_SAMPLER, MCDMPipeline, save_mcdm
from lfmcdm.runtime import resolve_device, seed_everything
from lfmcdm.stages import format_metric
from lfmcdm.train.accel import fingerprint
from lfmcdm.train.distill import distill_mcdm, lcm_scheduler


def run(ctx) -> dict:
    params, layout = ctx.params, ctx.layout
    cfg, dcfg = params.distill, params.diffusion
    teacher_pipe = MCDMPipeline.from_pretrained(layout.models)  # raises a clear error without a trained MCDM
    meta = teacher_pipe.meta
    bank = layout.read_motion_bank()
    train = _teacher_windows(layout, read_videos(layout, ("TRAIN",)), bank.vectors, meta)
    teacher_hash = folder_hash(layout.model_dir("mcdm"))
    data_key = fingerprint({"videos": train.names, "motion": hashlib.sha256(train.motions).hexdigest()})
    seed_everything(params.seed)
    result = distill_mcdm(cfg, params.train, teacher_pipe.model, teacher_pipe.scheduler_config, meta, train,
                          layout.checkpoints / "distill", params.seed, teacher_hash, data_key, progress=ctx.progress)
    state = PartialState()
    if not state.is_main_process:  # rank 0 alone saves, measures, tracks and registers
        return {}
    out = layout.model_dir("distill")
    sched = lcm_scheduler(teacher_pipe.scheduler_config, cfg)
    distilled = {"method": "latent consistency distillation", "teacher_hash": teacher_hash, "step": result.end_step,
                 "teacher_guidance": cfg.teacher_guidance, "ddim_timesteps": cfg.ddim_timesteps,
                 "sample_steps": cfg.sample_steps, "processes": state.num_processes}
    save_mcdm(result.model, sched, {**meta, "distilled": distilled, "train_loss": result.loss}, out)

    device = resolve_device(params.train)
    student = MCDMPipeline.from_pretrained(layout.models, device, model="distill")
    val_rows = read_videos(layout, ("VAL", "TEST"))
    val = _teacher_windows(layout, val_rows, bank.vectors, meta)
    gaps = teacher_gaps(teacher_pipe.to(device), student, val, cfg, dcfg.motion_eval.seed, sched.config)
    metrics = {"train_loss": result.loss, **gaps}
    truth = load_truth(layout.source_root(params)) if params.data.echonet_root is None else {}
    r = None
    if truth:
        ev = dcfg.motion_eval.model_copy(update={"sampler": DISTILLED_SAMPLER, "steps": cfg.sample_steps,
                                                 "guidance": 1.0})
        r, _ = motion_area_r(student, layout, val_rows, bank.vectors, truth,
                             dcfg.model_copy(update={"motion_eval": ev, "n_frames": int(meta["n_frames"]),
                                                     "fps": float(meta["fps"])}), float(meta["clip_fps"]))
    metrics["motion_area_r"] = r
    version = tracking.register_model(MODELS["distill"].registry_name, out, aliases=())
    print(f"distill: steps {result.start_step}->{result.end_step}, train_loss {format_metric(result.loss)}, "
          + ", ".join(f"{k} {format_metric(v)}" for k, v in metrics.items() if k != "train_loss")
          + (f", registered v{version}" if version else ""))
    return metrics


def _teacher_windows(layout, rows: list[dict], motion: dict, meta: dict) -> LatentWindows:
    """Windows as the teacher was trained on them: its recorded settings (``mcdm.json``), which may differ
    from today's params.yaml."""
    return LatentWindows.from_rows(layout.latents, rows, motion, float(meta["clip_fps"]), float(meta["fps"]),
                                   int(meta["n_frames"]), meta["reference"], meta["window_start"])
