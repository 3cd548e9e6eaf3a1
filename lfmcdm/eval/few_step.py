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
    references, motions and seeds: of the student (``lcm``, ``sample_steps``), of the undistilled teacher
    weights sampled the same way (``untrained_gap``: what distillation starts from) and of the teacher's own
    DPM-Solver++ at ``sample_steps`` (``teacher_few_step_gap``: the few-step baseline to beat)."""
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

    return {"student_gap": gap(latents(student, DISTILLED_SAMPLER, cfg.sample_steps)),
            "untrained_gap": gap(latents(as_student, DISTILLED_SAMPLER, cfg.sample_steps)),
            "teacher_few_step_gap": gap(latents(teacher, "dpmsolver++", cfg.sample_steps))}
