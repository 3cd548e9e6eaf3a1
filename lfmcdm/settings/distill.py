"""``distill`` section: latent consistency distillation of the trained MCDM into a few-step student."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lfmcdm.config_base import Section

#: The distilled (``lcm``) sampler is trained and measured for at most this many steps; more LCM steps
#: re-inject noise and accumulate the student's error rather than reduce it (Luo et al. 2023, sec. 5).
MAX_SAMPLE_STEPS = 4


class DistillConfig(Section):
    """Latent consistency distillation (Luo et al. 2023, diffusers' ``train_lcm_distill_sd_wds.py``).

    The student starts as a copy of the teacher (models/mcdm) and learns to map any point of a
    ``ddim_timesteps``-step DDIM trajectory of the classifier-free-guided teacher to the trajectory's
    end; ``LCMScheduler`` then samples it in 1-4 steps without guidance (the teacher's is baked in).
    """

    steps: int = Field(10, ge=0, description="optimiser steps; 0 = copy the teacher (an untrained student)")
    batch_size: int = Field(4, gt=0, description="windows per step and process")
    lr: float = Field(1.0e-4, gt=0)
    warmup_steps: int = Field(5, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ddim_timesteps: int = Field(50, gt=1, description="teacher's DDIM solver grid (LCM's original_inference_steps)")
    teacher_guidance: float = Field(2.0, ge=1, description="classifier-free guidance of the teacher, baked into the student")
    target_ema: float = Field(0.95, ge=0, lt=1, description="EMA decay of the target network (LCM: 0.95)")
    loss: Literal["huber", "l2"] = "huber"
    huber_c: float = Field(0.001, gt=0, description="pseudo-Huber constant (LCM default)")
    timestep_scaling: float = Field(10.0, gt=0, description="LCM boundary-condition scaling (c_skip, c_out)")
    sample_steps: int = Field(MAX_SAMPLE_STEPS, gt=0, le=MAX_SAMPLE_STEPS,
                              description="steps of the lcm sampler in the stage's own evaluation")
    eval_videos: int = Field(2, gt=0, description="fixed VAL windows the teacher-gap metrics sample")
    teacher_steps: int = Field(10, gt=0, description="DPM-Solver++ steps of the teacher reference in the metrics")
    checkpoint_every: int = Field(20, gt=0)
    log_every: int = Field(10, gt=0)

    @model_validator(mode="after")
    def _grid_fits(self) -> "DistillConfig":
        if self.sample_steps > self.ddim_timesteps:
            raise ValueError("sample_steps must not exceed ddim_timesteps")
        return self
