"""Latent consistency distillation (LCD) of the MCDM into a student that samples in 1-4 steps.

The recipe of Luo et al. 2023 ("Latent Consistency Models") as diffusers'
``examples/consistency_distillation/train_lcm_distill_sd_wds.py`` implements it, on our video UNet:

1. draw a training window, noise and a point ``t_n`` of the ``ddim_timesteps``-step DDIM grid; noise the
   window to ``t_n``;
2. the frozen teacher, with classifier-free guidance ``teacher_guidance`` (motion vs null token), takes one
   DDIM step ``t_n -> t_{n-k}``;
3. the *target* network (an EMA of the student, decay ``target_ema``) maps that point to its clean
   estimate; the student, from ``t_n``, must agree with it (pseudo-Huber loss on the real frames).

Both outputs use LCM's boundary-condition parametrisation ``c_skip(t) x_t + c_out(t) x0(t)``, the same
that ``LCMScheduler.step`` applies at sampling time. The student is conditional only (the teacher's
guidance is baked in), so sampling it costs one UNet call per step where the teacher costs two.

Runs under ``accelerate`` like the MCDM trainer: step-seeded RNG per process, rank 0 checkpoints, and
:func:`lfmcdm.checkpoint.resume`'s fingerprint rule (raising ``steps`` continues a finished run; lowering it
trains afresh).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, LCMScheduler
from diffusers.optimization import get_scheduler

from lfmcdm.checkpoint import resume, save_checkpoint
from lfmcdm.config import TrainConfig
from lfmcdm.data.video_windows import LatentWindows
from lfmcdm.models.pipeline import lcm_from_config
from lfmcdm.models.unet import MCDM
from lfmcdm.settings.distill import DistillConfig
from lfmcdm.train.accel import SEED_SPACE, StepLoop, fingerprint, log_curve, make_accelerator, step_rng
from lfmcdm.train.diffusion import masked_mse

RESUME_FREE = {"steps", "checkpoint_every", "log_every", "sample_steps", "eval_videos", "teacher_steps"}


def lcm_scheduler(noise_config: dict, cfg: DistillConfig) -> LCMScheduler:
    """The student's sampler: the teacher's noise schedule, the distillation grid and boundary scaling."""
    return lcm_from_config(noise_config, original_inference_steps=cfg.ddim_timesteps,
                           timestep_scaling=cfg.timestep_scaling, clip_sample=False)


class DDIMGrid:
    """The teacher's DDIM solver on LCM's grid ``t_i = (i + 1) k - 1`` (``k = T / ddim_timesteps``)."""

    def __init__(self, alphas_cumprod: torch.Tensor, n_train: int, n_ddim: int):
        self.k = n_train // n_ddim
        self.timesteps = torch.arange(1, n_ddim + 1) * self.k - 1
        self.alphas = alphas_cumprod
        prev = self.timesteps - self.k
        self.alpha_prev = torch.where(prev >= 0, alphas_cumprod[prev.clamp_min(0)], alphas_cumprod[0])

    def step(self, x0: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        a = _bcast(self.alpha_prev[index.cpu()], x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps


def _bcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))


def x0_eps(v: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean sample and noise from a v-prediction at cumulative alpha ``alpha`` (per sample)."""
    a = _bcast(alpha, x_t)
    return a.sqrt() * x_t - (1 - a).sqrt() * v, (1 - a).sqrt() * x_t + a.sqrt() * v


def boundary(t: torch.Tensor, scaling: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's ``(c_skip, c_out)`` at timesteps ``t`` (``LCMScheduler.get_scalings_for_boundary_condition_discrete``)."""
    s = t.double() * scaling
    sigma2 = 0.25  # sigma_data = 0.5
    return _bcast((sigma2 / (s ** 2 + sigma2)).float(), like), _bcast((s / (s ** 2 + sigma2).sqrt()).float(), like)


def consistency_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """Pseudo-Huber (LCM) or squared error, over real frames only (padded frames weigh nothing)."""
    if cfg.loss == "l2":
        return masked_mse(pred, target, mask)
    per_frame = (((pred - target) ** 2).flatten(2).mean(2) + cfg.huber_c ** 2).sqrt() - cfg.huber_c
    weights = mask.to(per_frame.dtype)
    return (per_frame * weights).sum() / weights.sum().clamp_min(1.0)


@dataclass
class Batch:
    x_t: torch.Tensor  # noisy windows at t_n
    t: torch.Tensor  # t_n
    index: torch.Tensor  # n
    reference: torch.Tensor
    motion: torch.Tensor
    mask: torch.Tensor
    ids: torch.Tensor


def draw(data: LatentWindows, rng, cfg: DistillConfig, grid: DDIMGrid, noise_sched: DDPMScheduler,
         time_ids: list[float], noise_aug: float, device) -> Batch:
    """One step's windows, noise and grid points, all from the step's RNG (resume-exact)."""
    batch = data.sample(rng, cfg.batch_size)
    gen = torch.Generator().manual_seed(int(rng.integers(SEED_SPACE)))
    x0 = batch["latents"]
    noise = torch.randn(x0.shape, generator=gen)
    index = torch.randint(0, len(grid.timesteps), (len(x0),), generator=gen)
    t = grid.timesteps[index]
    reference = batch["reference"] + noise_aug * torch.randn(batch["reference"].shape, generator=gen)
    ids = torch.tensor([time_ids]).expand(len(x0), -1)
    return Batch(noise_sched.add_noise(x0, noise, t).to(device), t.to(device), index, reference.to(device),
                 batch["motion"].to(device), batch["mask"].to(device), ids.to(device))


def distill_loss(student, teacher: MCDM, target: MCDM, b: Batch, grid: DDIMGrid, cfg: DistillConfig) -> torch.Tensor:
    """The LCD loss of one batch (the teacher and target run without gradients)."""
    alphas = grid.alphas.to(b.x_t.device)
    t_prev = (b.t - grid.k).clamp_min(0)
    skip, out = boundary(b.t, cfg.timestep_scaling, b.x_t)
    v = student(b.x_t, b.t, b.reference, b.motion, None, b.ids).float()
    pred = skip * b.x_t + out * x0_eps(v, b.x_t, alphas[b.t])[0]
    with torch.no_grad():
        n = len(b.x_t)
        context = torch.cat([teacher.conditioner.null(n), teacher.conditioner(b.motion)])
        both = teacher.predict(torch.cat([b.x_t, b.x_t]), torch.cat([b.t, b.t]), torch.cat([b.reference, b.reference]),
                               context, torch.cat([b.ids, b.ids])).float()
        (x0_u, eps_u), (x0_c, eps_c) = (x0_eps(v_, b.x_t, alphas[b.t]) for v_ in both.chunk(2))
        w = cfg.teacher_guidance - 1.0  # u + g (c - u) = c + (g - 1) (c - u), as the pipeline guides
        x_prev = grid.step(x0_c + w * (x0_c - x0_u), eps_c + w * (eps_c - eps_u), b.index.to(b.x_t.device))
        v_target = target(x_prev, t_prev, b.reference, b.motion, None, b.ids).float()
        skip_p, out_p = boundary(t_prev, cfg.timestep_scaling, x_prev)
        goal = skip_p * x_prev + out_p * x0_eps(v_target, x_prev, alphas[t_prev])[0]
    return consistency_loss(pred, goal, b.mask, cfg)


@torch.no_grad()
def update_target(target: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    for p_t, p_s in zip(target.parameters(), student.parameters()):
        p_t.mul_(decay).add_(p_s.detach().to(p_t.device), alpha=1 - decay)


def run_settings(cfg: DistillConfig, seed: int, teacher_key: str, data_key: str) -> dict:
    """What a checkpoint must match to resume: the distillation settings (not its length), teacher, data."""
    return {"cfg": cfg.model_dump(exclude=RESUME_FREE), "seed": seed, "teacher": teacher_key, "data": data_key}


@dataclass
class DistillResult:
    model: MCDM  # the target (EMA) student, eval mode, on CPU
    start_step: int
    end_step: int
    loss: float | None  # EMA-smoothed training loss


def distill_mcdm(cfg: DistillConfig, train_cfg: TrainConfig, teacher: MCDM, noise_config: dict, meta: dict,
                 data: LatentWindows, checkpoint_dir: Path, seed: int, teacher_key: str, data_key: str = "",
                 progress: bool = True, stop_after: int | None = None) -> DistillResult:
    """Distil ``teacher`` (or resume) up to ``cfg.steps``; ``stop_after`` simulates a kill (no final checkpoint).

    ``meta`` is the teacher's ``mcdm.json`` (time ids, noise augmentation); ``teacher_key`` identifies its
    weights and ``data_key`` the windows, so a checkpoint of another teacher or data is not resumed.
    """
    if not len(data):
        raise ValueError("no TRAIN videos with both cached latents and a motion vector")
    accelerator = make_accelerator(train_cfg)
    teacher = teacher.eval().requires_grad_(False).to(accelerator.device)
    student, target = copy.deepcopy(teacher).requires_grad_(True), copy.deepcopy(teacher)
    student.conditioner.null_tokens.requires_grad_(False)  # the student is conditional only (and DDP
    # refuses parameters that never get a gradient)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = get_scheduler("constant_with_warmup", optimizer,
                             num_warmup_steps=cfg.warmup_steps * accelerator.num_processes)
    key = fingerprint(run_settings(cfg, seed, teacher_key, data_key))
    state = resume(checkpoint_dir, key, "distill", {"student": student, "target": target}, optimizer, lr_sched,
                   map_location=accelerator.device, max_step=cfg.steps)
    noise_sched = DDPMScheduler.from_config(noise_config)
    grid = DDIMGrid(noise_sched.alphas_cumprod, noise_sched.config.num_train_timesteps, cfg.ddim_timesteps)
    student, optimizer, lr_sched = accelerator.prepare(student.train(), optimizer, lr_sched)
    target.to(accelerator.device)
    ids, noise_aug = [float(v) for v in meta["added_time_ids"]], float(meta["added_time_ids"][2])
    loop = StepLoop("distill", accelerator, cfg.steps, state, stop_after, progress)
    for step in loop:
        rng = step_rng(seed, step, accelerator.process_index)
        batch = draw(data, rng, cfg, grid, noise_sched, ids, noise_aug, accelerator.device)
        loss = distill_loss(student, teacher, target, batch, grid, cfg)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        optimizer.step()
        lr_sched.step()
        optimizer.zero_grad(set_to_none=True)
        update_target(target, accelerator.unwrap_model(student), cfg.target_ema)
        value = loop.record(loss)
        done = step + 1
        if accelerator.is_main_process:
            if done % cfg.log_every == 0:
                log_curve({"distill_loss": value, "distill_loss_ema": loop.loss_ema}, step=done)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save_checkpoint(checkpoint_dir, {"student": accelerator.unwrap_model(student), "target": target},
                                optimizer, lr_sched, {"step": done, "fingerprint": key, "loss_ema": loop.loss_ema,
                                                      "processes": accelerator.num_processes})
    return DistillResult(target.cpu().eval(), loop.start, loop.last_step, loop.loss_ema)
