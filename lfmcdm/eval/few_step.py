"""How close a few-step sampler comes to the teacher's many-step videos (stage ``distill``'s metrics).

The distance is measured in latent space, on the real frames of fixed VAL windows, from the same
references, motion vectors and seeds: it isolates the sampler (no VAE decoding, no cavity estimate).
"""

from __future__ import annotations

import numpy as np
import torch

from lfmcdm.data.video_windows import LatentWindows
from lfmcdm.models.pipeline import DISTILLED_SAMPLER, MCDMPipeline
from lfmcdm.settings.distill import DistillConfig


@torch.no_grad()
def teacher_gaps(teacher: MCDMPipeline, student: MCDMPipeline, val: LatentWindows, cfg: DistillConfig, seed: int,
                 lcm_config: dict) -> dict[str, float | None]:
    """Mean squared latent distance to the teacher's DPM-Solver++ (``teacher_steps``, guided) videos, same
    references, motions and seeds: of the student's *one-step* video (``student_gap``), of the undistilled
    teacher weights sampled the same way (``untrained_gap``: what distillation starts from) and of the
    teacher's own DPM-Solver++ at ``sample_steps`` (``teacher_few_step_gap``: the few-step baseline).

    One step, because that is what consistency distillation teaches: the student maps the initial noise
    straight to the end of the teacher's guided ODE trajectory from it. Each further ``lcm`` step re-noises
    the estimate with fresh noise, so a 4-step video is another valid sample, not that end point: on the
    quality profile (600 steps) the one-step gap fell from 0.113 to 0.056 while the 4-step one rose from
    0.077 to 0.093, at the same motion fidelity (docs/benchmarks.md, "Few-step generator")."""
    if not len(val):
        return {"student_gap": None, "untrained_gap": None, "teacher_few_step_gap": None}
    batch = val.fixed(cfg.eval_videos)
    refs, motion = batch["reference"], batch["motion"].numpy()
    seeds = [seed + i for i in range(len(refs))]
    guidance = cfg.teacher_guidance

    def latents(pipe: MCDMPipeline, sampler: str, steps: int) -> torch.Tensor:
        return pipe(refs, motion, seeds=seeds, sampler=sampler, steps=steps, guidance=guidance,
                    output_type="latent").latents

    reference = latents(teacher, "dpmsolver++", cfg.teacher_steps)
    as_student = MCDMPipeline(teacher.model.unet, teacher.model.conditioner, teacher.vae, lcm_config,
                              {**teacher.meta, "distilled": {"untrained": True}})
    mask = batch["mask"][:, :, None, None, None].float()

    def gap(x: torch.Tensor) -> float:
        return float((((x - reference) ** 2) * mask).sum() / (mask.sum() * np.prod(x.shape[2:])))

    return {"student_gap": gap(latents(student, DISTILLED_SAMPLER, 1)),
            "untrained_gap": gap(latents(as_student, DISTILLED_SAMPLER, 1)),
            "teacher_few_step_gap": gap(latents(teacher, "dpmsolver++", cfg.sample_steps))}
