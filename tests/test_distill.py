"""The few-step generator: latent consistency distillation of the MCDM (stage ``distill``, sampler ``lcm``).

Unit tests distil a tiny teacher on random latents (seconds); the stage itself runs in a copy of the
session's toy ``dvc repro`` project, where synthesis then samples the student.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lfmcdm.atomic import save_npy
from lfmcdm.config import ConfigError, load_params
from lfmcdm.data.video_windows import LatentWindows
from lfmcdm.models.pipeline import MCDMPipeline
from lfmcdm.models.vae import build_vae
from lfmcdm.settings.diffusion import DiffusionConfig, VaeConfig
from lfmcdm.settings.distill import DistillConfig
from lfmcdm.train.diffusion import build_mcdm, make_noise_scheduler
from lfmcdm.train.distill import distill_mcdm, lcm_scheduler

from .conftest import run_ok, subprocess_env, tiny_params

MOTION_DIM = 8
UNET = {"n_frames": 6, "block_out_channels": [32, 32], "num_attention_heads": [1, 1], "cross_attention_dim": 16,
        "addition_time_embed_dim": 8, "motion_hidden": 16}
META = {"n_frames": 6, "added_time_ids": [16.0, 127.0, 0.0]}
# a coarse DDIM grid and a fast target: the tiny student learns within a few dozen steps
DISTILL = {"steps": 4, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "ddim_timesteps": 10, "target_ema": 0.5,
           "checkpoint_every": 2, "loss": "l2"}


def _teacher(tmp_path: Path):
    """A tiny (random) MCDM, its VAE, noise schedule and random latent windows to distil it on."""
    rng = np.random.default_rng(0)
    rows = [{"file_name": f"v{i}", "n_frames": n} for i, n in enumerate([30, 40, 25, 35])]
    for row in rows:
        save_npy(tmp_path / "lat" / f"{row['file_name']}.npy",
                 rng.normal(size=(row["n_frames"], 4, 8, 8)).astype(np.float16))
    motion = {r["file_name"]: rng.normal(size=MOTION_DIM).astype(np.float32) for r in rows}
    data = LatentWindows.from_rows(tmp_path / "lat", rows, motion, clip_fps=50.0, fps=16.0, n_frames=6)
    cfg = DiffusionConfig(**UNET)
    torch.manual_seed(0)
    model = build_mcdm(cfg, 4, 8, data.motions)
    vae = build_vae(VaeConfig(block_out_channels=[8, 8, 8], norm_num_groups=4), frame_size=32)
    return model, vae, make_noise_scheduler(cfg).config, data


def _distil(tmp_path, model, noise_config, data, ckpt="ck", stop_after=None, **overrides):
    cfg = DistillConfig(**{**DISTILL, **overrides})
    train = tiny_params(train={"device": "cpu"}).train
    return distill_mcdm(cfg, train, model, noise_config, META, data, tmp_path / ckpt, seed=3, teacher_key="t",
                        progress=False, stop_after=stop_after), cfg


def _student(result, vae, noise_config, cfg) -> MCDMPipeline:
    meta = {**META, "distilled": {"step": result.end_step}}
    return MCDMPipeline(result.model.unet, result.model.conditioner, vae, lcm_scheduler(noise_config, cfg).config, meta)


def _inputs(data: LatentWindows):
    batch = data.fixed(2)
    return batch["reference"], batch["motion"].numpy()


def test_student_samples_in_four_steps_and_is_deterministic(tmp_path):
    model, vae, noise_config, data = _teacher(tmp_path)
    result, cfg = _distil(tmp_path, model, noise_config, data)
    pipe = _student(result, vae, noise_config, cfg)
    refs, motion = _inputs(data)
    calls = []
    pipe.model.unet.register_forward_hook(lambda *_: calls.append(1))
    out = pipe(refs, motion, seeds=[5, 6], sampler="lcm", steps=4, guidance=2.0)
    assert out.frames.shape == (2, 6, 32, 32) and len(calls) == 4  # 4 steps, one unguided UNet call each
    again = pipe(refs, motion, seeds=[5, 6], sampler="lcm", steps=4, guidance=2.0)
    np.testing.assert_array_equal(out.frames, again.frames)
    alone = pipe(refs[1:], motion[1:], seeds=[6], sampler="lcm", steps=4, output_type="latent")
    torch.testing.assert_close(alone.latents[0], out.latents[1], atol=1e-4, rtol=1e-4)  # a seed is its own video
    # the same seed distils to the same student
    twin, _ = _distil(tmp_path, _teacher(tmp_path / "b")[0], noise_config, data, ckpt="ck2")
    for a, b in zip(result.model.state_dict().values(), twin.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_lcm_refuses_an_undistilled_model_and_more_than_four_steps(tmp_path):
    model, vae, noise_config, data = _teacher(tmp_path)
    teacher = MCDMPipeline(model.unet, model.conditioner, vae, noise_config, META)
    refs, motion = _inputs(data)
    with pytest.raises(ValueError, match="distilled model"):
        teacher(refs, motion, seeds=[0, 1], sampler="lcm", steps=4)
    with pytest.raises(ConfigError, match="lcm sampler"):
        tiny_params(synthesis={"sampler": "lcm", "steps": 25})


def test_resume_after_kill_continues_from_the_checkpoint_and_matches(tmp_path):
    model, vae, noise_config, data = _teacher(tmp_path)
    killed, _ = _distil(tmp_path, model, noise_config, data, stop_after=3)
    assert (killed.start_step, killed.end_step) == (0, 3)
    assert json.loads((tmp_path / "ck/state.json").read_text())["step"] == 2  # step 3 died with the process
    resumed, _ = _distil(tmp_path, model, noise_config, data)
    assert (resumed.start_step, resumed.end_step) == (2, 4)
    straight, _ = _distil(tmp_path, model, noise_config, data, ckpt="ck2")
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b)  # step-seeded batches: the kill changes nothing
    other, _ = _distil(tmp_path, model, noise_config, data, lr=5e-4)
    assert other.start_step == 0  # other settings: the checkpoint is not resumed


class _ExactDenoiser(torch.nn.Module):
    """The ideal MCDM for data that is its reference frame repeated: from any noisy window it knows the clean
    one, so its v-prediction is exact (``v = sqrt(a) eps - sqrt(1 - a) x0``, diffusers' ``get_velocity``) and
    every probability-flow trajectory ends at the reference. Its consistency function is that end point, so
    its LCD loss is ~0 at every timestep (not exactly: LCM's boundary is f(x, 0) = x, and x at t = 0 still
    holds sqrt(1 - alpha_0) of noise)."""

    def __init__(self, alphas: torch.Tensor, shift: float = 0.0):
        super().__init__()
        self.alphas, self.shift = alphas, shift  # shift: a student whose clean estimate is off by this much
        self.conditioner = self  # null tokens and motion context mean nothing to it

    def null(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 1, 1)

    def __call__(self, *args):  # MCDM.forward(x, t, reference, motion, drop, ids) or conditioner(motion)
        return self.predict(args[0], args[1], args[2], None, None) if len(args) > 1 else torch.ones(len(args[0]), 1, 1)

    def predict(self, x, t, reference, context, ids):
        a = self.alphas[t].view(-1, 1, 1, 1, 1)
        x0 = reference.unsqueeze(1).expand_as(x) + self.shift
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * x0


@pytest.mark.parametrize("loss", ["huber", "l2"])
def test_lcd_loss_vanishes_for_an_exact_denoiser_and_not_for_a_biased_student(loss):
    """The loss's algebra (v -> x0/eps, the guided DDIM step, LCM's boundary scalings) on an analytic teacher:
    a sign or index slip in any of them makes the exact student's loss large."""
    from lfmcdm.train.distill import Batch, DDIMGrid, distill_loss

    cfg = DistillConfig(ddim_timesteps=50, teacher_guidance=3.0, loss=loss)
    sched = make_noise_scheduler(DiffusionConfig())
    grid = DDIMGrid(sched.alphas_cumprod, 1000, cfg.ddim_timesteps)
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(8, 4, 6, 6, generator=gen)
    index = torch.arange(8) * 6  # from the grid's first point (t_prev = 0) to its last (t = 999)
    index[-1] = len(grid.timesteps) - 1
    t = grid.timesteps[index]
    x0 = reference.unsqueeze(1).expand(-1, 5, -1, -1, -1)
    x_t = sched.add_noise(x0, torch.randn(x0.shape, generator=gen), t)
    batch = Batch(x_t, t, index, reference, torch.zeros(8, 3), torch.ones(8, 5, dtype=torch.bool),
                  torch.zeros(8, 3))
    teacher = _ExactDenoiser(sched.alphas_cumprod)
    exact = float(distill_loss(teacher, teacher, teacher, batch, grid, cfg))
    biased = float(distill_loss(_ExactDenoiser(sched.alphas_cumprod, shift=0.1), teacher, teacher, batch, grid, cfg))
    scale = 0.1 if loss == "huber" else 0.01  # pseudo-Huber ~ |d|, squared error ~ d^2, for d = 0.1
    assert exact < 0.02 * scale, exact
    assert biased > 0.5 * scale, biased


@pytest.mark.e2e
def test_stage_registers_the_student_and_synthesis_samples_it(dvc_project_copy):
    """`dvc repro` ran distill between train_diffusion and synthesize; `synthesize --sampler lcm` uses its student."""
    from mlflow import MlflowClient

    from lfmcdm.fingerprint import content_version
    from lfmcdm.tracking import tracking_uri

    root = dvc_project_copy
    metrics = json.loads((root / "metrics/distill.json").read_text())
    assert set(metrics) == {"train_loss", "student_gap", "untrained_gap", "teacher_few_step_gap", "motion_area_r"}
    meta = json.loads((root / "models/distill/mcdm.json").read_text())
    assert meta["distilled"]["step"] == load_params(root / "params.yaml").distill.steps
    assert json.loads((root / "models/distill/scheduler/scheduler_config.json").read_text())["_class_name"] == "LCMScheduler"
    params = load_params(root / "params.yaml")
    client = MlflowClient(tracking_uri(params.tracking, root))
    [found] = client.search_model_versions("name = 'lfmcdm-mcdm-distilled'")
    version = client.get_model_version("lfmcdm-mcdm-distilled", found.version)
    assert version.tags["lfmcdm.content_version"] == content_version(root / "models/distill")

    pipeline_metrics = (root / "metrics/synthesis.json").read_bytes()
    run_ok(["lfmcdm", "synthesize", "--cohort", "fast", "--n", "2", "--sampler", "lcm", "--steps", "2",
            "--no-progress"], root, subprocess_env())
    # another cohort keeps its metrics beside its videos; the pipeline cohort's (a DVC output) is untouched
    assert (root / "metrics/synthesis.json").read_bytes() == pipeline_metrics
    assert json.loads((root / "data/synthetic/fast/synthesis.json").read_text())["videos"] == 2
    import pyarrow.parquet as pq

    rows = pq.read_table(root / "data/synthetic/fast/manifest.parquet").to_pylist()
    assert len(rows) == 2 and {r["sampler"] for r in rows} == {"lcm"} and {r["steps"] for r in rows} == {2}
    assert {r["mcdm_version"] for r in rows} == {content_version(root / "models/distill")}  # the student made them
