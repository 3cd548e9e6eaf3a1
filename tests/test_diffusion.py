"""VAE, latent cache and the motion-conditioned video diffusion model (MCDM).

Unit tests use a tiny UNet on random latents (fast); one module-scoped fixture runs the real
stages train_vae -> cache_latents -> train_diffusion on an 8-video phantom with a random motion
bank, so the stage wiring, outputs, metrics and the MLflow registry are exercised for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from lfmcdm.atomic import save_npy, write_parquet
from lfmcdm.config import load_params
from lfmcdm.data import phantom, phantom_a4c
from lfmcdm.data.tables import load_clip, read_videos
from lfmcdm.eval.cavity import cavity_areas, lv_region, pearson
from lfmcdm.layout import Layout
from lfmcdm.models.conditioning import dropout_mask
from lfmcdm.models.pipeline import MCDMPipeline
from lfmcdm.models.vae import build_vae, decode_latents, encode_frames, load_vae, to_unit
from lfmcdm.settings.diffusion import CavityConfig, DiffusionConfig, VaeConfig
from lfmcdm.stages import StageContext, pseudo_labels, run_stage
from lfmcdm.train.diffusion import (build_mcdm, diffusion_loss, sample_timesteps, make_ema, make_noise_scheduler, masked_mse,
                                    train_mcdm)
from lfmcdm.data.video_windows import LatentWindows, window_indices
from lfmcdm.train.vae import FrameSource, train_vae

from .conftest import REPO, tiny_params

MOTION_DIM = 8
TINY_UNET = {"n_frames": 6, "block_out_channels": [32, 32], "num_attention_heads": [1, 1], "cross_attention_dim": 16,
             "addition_time_embed_dim": 8, "motion_hidden": 16, "batch_size": 2, "warmup_steps": 0}
TINY_VAE = {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4}


def _unet_cfg(**overrides) -> DiffusionConfig:
    return DiffusionConfig(**{**TINY_UNET, **overrides})


def _latent_videos(root: Path, lengths: list[int], seed: int = 0, size: int = 8) -> LatentWindows:
    """Random cached latents + motion vectors for videos of the given clip lengths."""
    rng = np.random.default_rng(seed)
    rows = [{"file_name": f"v{i}", "n_frames": n} for i, n in enumerate(lengths)]
    for row in rows:
        save_npy(root / f"{row['file_name']}.npy", rng.normal(size=(row["n_frames"], 4, size, size)).astype(np.float16))
    motion = {r["file_name"]: rng.normal(size=MOTION_DIM).astype(np.float32) for r in rows}
    return LatentWindows.from_rows(root, rows, motion, clip_fps=50.0, fps=16.0, n_frames=TINY_UNET["n_frames"])


# --- padding mask -------------------------------------------------------------------------------------------------


def test_window_mask_marks_exactly_the_padded_frames(tmp_path):
    # 20 clip frames at 50 fps, windows of 6 frames at 16 fps: indices round(k * 3.125) = 0 3 6 9 12 16 -> all real;
    # a 14-frame clip ends after index 12, so exactly the last frame (index 16) is padding.
    idx, mask = window_indices(14, 50.0, 16.0, 6)
    assert mask.tolist() == [True] * 5 + [False]
    assert idx[4] == 12 and mask.sum() == 5
    data = _latent_videos(tmp_path, [14])
    item = data.window(0, 0.0)
    lat = np.load(tmp_path / "v0.npy").astype(np.float32)
    np.testing.assert_array_equal(item["latents"][4], lat[12])  # the last real frame is the clip's frame 12
    assert not item["latents"][5].any()  # the padded frame is zeros
    np.testing.assert_array_equal(item["reference"], lat[0])


def test_windows_start_at_end_diastole_when_known(tmp_path):
    data = _latent_videos(tmp_path, [60, 60])
    data.window_start, data.ed_frames = "ed", [7, None]
    lat = [np.load(tmp_path / f"v{i}.npy").astype(np.float32) for i in range(2)]
    rng = np.random.default_rng(0)
    assert data.start(0, rng) == 7.0 and data.start(1) == 0.0  # unknown ED: random in training, 0 for validation
    assert len({data.start(1, rng) for _ in range(5)}) == 5
    batch = data.sample(np.random.default_rng(1), 8)
    for ref, motion in zip(batch["reference"].numpy(), batch["motion"].numpy()):
        if np.array_equal(motion, data.motions[0]):
            np.testing.assert_array_equal(ref, lat[0][7])  # the reference is the ED frame


def test_padded_frame_contributes_zero_loss_and_last_real_frame_does():
    mask = torch.tensor([[True] * 5 + [False]])
    target = torch.zeros(1, 6, 4, 8, 8)
    pad_err, last_err = target.clone(), target.clone()
    pad_err[0, 5] = 3.0  # error only on the padded frame
    last_err[0, 4] = 3.0  # error only on the last real frame
    assert masked_mse(pad_err, target, mask).item() == 0.0
    assert masked_mse(last_err, target, mask).item() == pytest.approx(9.0 / 5)  # mean over the 5 real frames
    pred = torch.zeros_like(target, requires_grad=True)
    masked_mse(pred, target + 1.0, mask).backward()
    assert pred.grad[0, 5].abs().sum() == 0 and pred.grad[0, 4].abs().sum() > 0


# --- conditioning dropout, EMA, one training step -------------------------------------------------------------------


def _contexts_seen(model, cfg, batch) -> torch.Tensor:
    """The cross-attention context the UNet actually received in one training loss call."""
    seen = {}

    def grab(_module, _args, kwargs):
        seen["ctx"] = kwargs["encoder_hidden_states"].detach()

    handle = model.unet.register_forward_pre_hook(grab, with_kwargs=True)
    diffusion_loss(model, make_noise_scheduler(cfg), batch, cfg, torch.Generator().manual_seed(0))
    handle.remove()
    return seen["ctx"]


def test_conditioning_dropout_really_drops(tmp_path):
    data = _latent_videos(tmp_path, [40, 40, 40])
    batch = data.sample(np.random.default_rng(0), 4)
    for p, expect_null in ((1.0, True), (0.0, False)):
        cfg = _unet_cfg(cond_dropout=p)
        torch.manual_seed(0)
        model = build_mcdm(cfg, 4, 8, data.motions)
        ctx = _contexts_seen(model, cfg, batch)
        null = model.conditioner.null(len(ctx))
        is_null = [torch.equal(c, n) for c, n in zip(ctx, null)]
        assert all(is_null) if expect_null else not any(is_null)
    share = dropout_mask(1000, 0.3, torch.Generator().manual_seed(0)).float().mean().item()
    assert share == pytest.approx(0.3, abs=0.05)


def test_ema_moves_towards_the_model():
    cfg = _unet_cfg(ema_decay=0.9)
    model = torch.nn.Linear(3, 3)
    ema = make_ema(model, cfg, step=1000)  # past warmup: decay = ema_decay
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.step(model.parameters())
    for shadow, old, new in zip(ema.shadow_params, before, model.parameters()):
        torch.testing.assert_close(shadow, 0.9 * old + 0.1 * new.detach())


def test_training_steps_reduce_the_loss_on_a_fixed_batch(tmp_path):
    data = _latent_videos(tmp_path, [30, 40])
    cfg = _unet_cfg(cond_dropout=0.0)
    batch = data.sample(np.random.default_rng(1), 2)
    torch.manual_seed(0)
    model = build_mcdm(cfg, 4, 8, data.motions)
    sched = make_noise_scheduler(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        loss = diffusion_loss(model, sched, batch, cfg, torch.Generator().manual_seed(7))  # same noise/t every time
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_after_kill_continues_from_the_checkpoint_and_matches(tmp_path):
    data = _latent_videos(tmp_path / "lat", [30, 40, 25])
    cfg = _unet_cfg(steps=4, checkpoint_every=2)
    train = tiny_params(train={"device": "cpu"}).train
    killed = train_mcdm(cfg, train, data, tmp_path / "ck", seed=3, latent_channels=4, latent_size=8,
                        progress=False, stop_after=3)
    assert (killed.start_step, killed.end_step) == (0, 3)
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["step"] == 2  # step 3 was lost with the kill
    resumed = train_mcdm(cfg, train, data, tmp_path / "ck", seed=3, latent_channels=4, latent_size=8, progress=False)
    assert (resumed.start_step, resumed.end_step) == (2, 4)
    straight = train_mcdm(cfg, train, data, tmp_path / "ck2", seed=3, latent_channels=4, latent_size=8, progress=False)
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b)  # step-seeded batches: resuming changes nothing
    again = train_mcdm(cfg, train, data, tmp_path / "ck", seed=3, latent_channels=4, latent_size=8, progress=False)
    assert (again.start_step, again.end_step) == (4, 4)  # finished: nothing to redo


def test_a_checkpoint_past_a_shorter_run_is_not_resumed(tmp_path):
    """Lowering ``steps`` retrains: the 4-step checkpoint must not come back as a "finished" 2-step model."""
    data = _latent_videos(tmp_path / "lat", [30, 40, 25])
    train = tiny_params(train={"device": "cpu"}).train
    run = lambda steps, ck: train_mcdm(_unet_cfg(steps=steps, checkpoint_every=2), train, data, tmp_path / ck,  # noqa: E731
                                       seed=3, latent_channels=4, latent_size=8, progress=False)
    run(4, "ck")
    shorter = run(2, "ck")
    assert (shorter.start_step, shorter.end_step) == (0, 2)
    straight = run(2, "ck2")
    for a, b in zip(shorter.model.state_dict().values(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def _random_frames(root: Path, seed: int) -> FrameSource:
    """Three 6-frame 32 px random clips, for VAE training tests."""
    layout = Layout(root)
    rng = np.random.default_rng(seed)
    rows = [{"file_name": f"c{i}", "n_frames": 6} for i in range(3)]
    for r in rows:
        save_npy(layout.clip(r["file_name"]), rng.integers(0, 255, (6, 32, 32), dtype=np.uint8))
    return FrameSource.from_rows(layout, rows)


def _tiny_vae_cfg(steps: int, checkpoint_every: int) -> VaeConfig:
    return VaeConfig(block_out_channels=[8, 8], norm_num_groups=4, steps=steps, checkpoint_every=checkpoint_every,
                     batch_size=2, warmup_steps=0)


def test_vae_resume_after_kill(tmp_path):
    source = _random_frames(tmp_path, 0)
    cfg = _tiny_vae_cfg(steps=4, checkpoint_every=2)
    train = tiny_params(train={"device": "cpu"}).train
    killed = train_vae(cfg, train, source, tmp_path / "ck", seed=0, frame_size=32, progress=False, stop_after=3)
    assert killed.end_step == 3 and json.loads((tmp_path / "ck/state.json").read_text())["step"] == 2
    resumed = train_vae(cfg, train, source, tmp_path / "ck", seed=0, frame_size=32, progress=False)
    assert (resumed.start_step, resumed.end_step) == (2, 4)
    other = train_vae(cfg.model_copy(update={"lr": 1e-4}), train, source, tmp_path / "ck", seed=0, frame_size=32,
                      progress=False)
    assert other.start_step == 0  # other settings: the old checkpoint is not resumed


def test_vae_trains_on_random_crops_and_still_reconstructs_whole_frames(tmp_path):
    source = _random_frames(tmp_path, 2)
    frames = source.frames([(v, f) for v in range(3) for f in range(6)])
    crops = source.sample(np.random.default_rng(7), 6, crop=16)
    assert crops.shape == (6, 16, 16)
    offsets = set()
    for crop in crops:  # each crop is a window of one of the clips' frames
        found = [(y, x) for frame in frames for y in range(17) for x in range(17)
                 if np.array_equal(frame[y:y + 16, x:x + 16], crop)]
        assert found
        offsets.add(found[0])
    assert len(offsets) > 1  # random windows, not one fixed corner
    assert np.array_equal(crops, source.sample(np.random.default_rng(7), 6, crop=16))  # seeded
    assert source.sample(np.random.default_rng(7), 2, crop=32).shape == (2, 32, 32)  # a crop of the whole frame = it

    with pytest.raises(ValueError, match="multiple of 4"):
        VaeConfig(block_out_channels=[8, 8, 8], norm_num_groups=4, crop_size=18)
    cfg = _tiny_vae_cfg(steps=2, checkpoint_every=2).model_copy(update={"crop_size": 16})
    vae = train_vae(cfg, tiny_params(train={"device": "cpu"}).train, source, tmp_path / "ck", seed=0, frame_size=32,
                    progress=False).vae
    with torch.no_grad():
        assert vae(to_unit(source.spread(2)), sample_posterior=False).sample.shape == (2, 1, 32, 32)


def test_vae_channels_last_trains_the_same_model_and_saves(tmp_path):
    """train.channels_last only reorders memory: same losses (up to summation order); the returned VAE is
    contiguous again, so ``save_pretrained`` (safetensors) takes it and the reload reconstructs the same."""
    source = _random_frames(tmp_path, 1)
    cfg = _tiny_vae_cfg(steps=3, checkpoint_every=3)
    results = {flag: train_vae(cfg, tiny_params(train={"device": "cpu", "channels_last": flag}).train, source,
                               tmp_path / f"ck{flag}", seed=0, frame_size=32, progress=False)
               for flag in (True, False)}
    assert results[True].loss == pytest.approx(results[False].loss, rel=1e-4)
    vae = results[True].vae
    assert all(p.is_contiguous() for p in vae.parameters())
    vae.save_pretrained(tmp_path / "vae")
    x = to_unit(source.spread(4))
    with torch.no_grad():
        assert torch.equal(vae(x, sample_posterior=False).sample,
                           load_vae(tmp_path / "vae")(x, sample_posterior=False).sample)
    frames = source.spread(6)  # cache_latents encodes channels-last: the same latents up to rounding
    np.testing.assert_allclose(encode_frames(load_vae(tmp_path / "vae", channels_last=True), frames, 4),
                               encode_frames(load_vae(tmp_path / "vae"), frames, 4), atol=1e-5)


# --- sampling -----------------------------------------------------------------------------------------------------


def _tiny_pipeline() -> MCDMPipeline:
    cfg = _unet_cfg()
    torch.manual_seed(0)
    vae = build_vae(VaeConfig(block_out_channels=[8, 8, 8], norm_num_groups=4), frame_size=32)  # 32 px -> 8x8 latents
    model = build_mcdm(cfg, 4, 8, np.random.default_rng(0).normal(size=(5, MOTION_DIM)).astype(np.float32))
    meta = {"n_frames": cfg.n_frames, "added_time_ids": [16.0, 127.0, 0.0]}
    return MCDMPipeline(model.unet, model.conditioner, vae, make_noise_scheduler(cfg).config, meta)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmsolver++"])
def test_sampler_shapes_and_seed_determinism(sampler):
    pipe = _tiny_pipeline()
    rng = np.random.default_rng(0)
    refs = torch.from_numpy(rng.normal(size=(2, 4, 8, 8)).astype(np.float32))
    motion = rng.normal(size=(2, MOTION_DIM)).astype(np.float32)
    out = pipe(refs, motion, seeds=[5, 6], sampler=sampler, steps=3, guidance=2.0)
    assert out.frames.shape == (2, 6, 32, 32) and out.frames.dtype == np.uint8
    assert out.latents.shape == (2, 6, 4, 8, 8)
    again = pipe(refs, motion, seeds=[5, 6], sampler=sampler, steps=3, guidance=2.0)
    np.testing.assert_array_equal(out.frames, again.frames)
    alone = pipe(refs[1:], motion[1:], seeds=[6], sampler=sampler, steps=3, guidance=2.0, output_type="latent")
    torch.testing.assert_close(alone.latents[0], out.latents[1], atol=1e-4, rtol=1e-4)  # a seed is its own video
    other = pipe(refs, motion, seeds=[7, 8], sampler=sampler, steps=3, guidance=2.0, output_type="latent")
    assert not torch.allclose(other.latents, out.latents)


def test_longer_videos_are_generated_in_overlapping_windows():
    pipe = _tiny_pipeline()  # 6-frame windows
    rng = np.random.default_rng(1)
    refs = torch.from_numpy(rng.normal(size=(1, 4, 8, 8)).astype(np.float32))
    motion = rng.normal(size=(1, MOTION_DIM)).astype(np.float32)
    run = dict(seeds=[3], sampler="ddim", steps=2, guidance=1.0, output_type="latent")
    single = pipe(refs, motion, **run).latents
    long = pipe(refs, motion, n_frames=13, window_overlap=2, **run).latents
    assert long.shape == (1, 13, 4, 8, 8)
    torch.testing.assert_close(long[:, :4], single[:, :4])  # frames before the first overlap are the first window's
    assert not torch.allclose(long[:, 4:6], single[:, 4:6])  # the overlap is cross-faded with the next window
    torch.testing.assert_close(pipe(refs, motion, n_frames=13, window_overlap=2, **run).latents, long)


# --- cavity measurement -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, seed", [("ellipse", 5), ("a4c", 5), ("a4c", 8)])
def test_cavity_area_tracks_the_visible_lv(kind, seed):
    spec = phantom.sample_specs(tiny_params(phantom={"kind": kind}).phantom, seed=seed)[0]
    frames = phantom.render(spec)
    visible = phantom.cavity_masks(spec)
    if kind == "a4c":  # the LV may reach past the fan's edge; what is not imaged cannot be measured
        visible &= phantom_a4c.sector(spec)
    truth = visible.sum(axis=(1, 2))
    assert pearson(cavity_areas(frames), truth) > 0.9
    assert pearson(np.ones(5), np.arange(5)) is None


def test_cavity_area_follows_the_lv_where_all_dark_pixels_do_not():
    # a4c seed 8: the LA joins the LV's dark pool when the mitral valve opens; the largest dark
    # component of a central box (the v1 measure, region "box") follows that merge, not the LV
    spec = phantom.sample_specs(tiny_params(phantom={"kind": "a4c"}).phantom, seed=8)[0]
    frames = phantom.render(spec)
    truth = (phantom.cavity_masks(spec) & phantom_a4c.sector(spec)).sum(axis=(1, 2))
    assert pearson(cavity_areas(frames, CavityConfig(region="lv")), truth) > 0.95
    assert pearson(cavity_areas(frames, CavityConfig(region="box")), truth) < 0.6


def test_lv_region_is_the_left_ventricle_not_the_atria():
    spec = phantom.sample_specs(tiny_params(phantom={"kind": "a4c", "a4c": {"atria_scale": 1.7}}).phantom, seed=6)[0]
    frames = phantom.render(spec)
    region = lv_region(frames, CavityConfig())
    labels = phantom_a4c.label_masks(spec, [0])
    lv_any = phantom.cavity_masks(spec).any(axis=0)
    assert region is not None
    assert (region & lv_any).sum() > 0.6 * region.sum()  # mostly LV
    for name in ("la", "ra", "rv"):
        assert (region & labels[name][0]).sum() < 0.1 * region.sum(), name
    still = np.repeat(frames[:1], len(frames), axis=0)
    assert lv_region(still, CavityConfig()) is None  # nothing moves: no LV found (callers fall back to the box)


# --- params -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [None, "quality", "paper"])
def test_profiles_give_valid_diffusion_settings(profile):
    params = load_params(REPO / "params.yaml", {"profile": profile} if profile else None)
    d = params.diffusion
    assert len(d.block_out_channels) == len(d.down_block_types) == len(d.num_attention_heads)
    if profile == "paper":
        assert d.block_out_channels == [128, 256, 256, 512] and d.n_frames == 64 and d.fps == 16


# --- the three stages on a phantom --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def staged(phantom_dir, tmp_path_factory):
    """ingest -> (random motion bank) -> train_vae -> cache_latents -> train_diffusion on 8 phantom videos."""
    root = tmp_path_factory.mktemp("mcdm")
    shutil.copytree(phantom_dir, root / "data/raw/phantom")
    params = tiny_params(
        train={"device": "cpu"},
        vae={**TINY_VAE, "steps": 3, "batch_size": 4, "scale_frames": 32, "val_frames": 8, "warmup_steps": 0},
        diffusion={**TINY_UNET, "steps": 3, "checkpoint_every": 2, "val_videos": 2, "val_timesteps": 2,
                   "motion_eval": {"videos": 1, "steps": 2}},
    )
    run_stage("ingest", params, root, progress=False)
    layout = Layout(root)
    pseudo_labels.write_phase(StageContext(params=params, layout=layout, progress=False))
    rows = read_videos(layout)
    rng = np.random.default_rng(0)
    schema = pa.schema([("file_name", pa.string()), ("split", pa.string()),
                        ("motion", pa.list_(pa.float32(), MOTION_DIM)), ("mafe_version", pa.string())])
    write_parquet(layout.motion, pa.Table.from_pylist(
        [{"file_name": r["file_name"], "split": r["split"], "motion": rng.normal(size=MOTION_DIM).tolist(),
          "mafe_version": "test"} for r in rows], schema=schema))
    metrics = {name: run_stage(name, params, root, progress=False)
               for name in ("train_vae", "cache_latents", "train_diffusion")}
    return root, params, metrics


def test_vae_stage_saves_scaling_factor_and_roundtrips(staged):
    root, params, metrics = staged
    layout = Layout(root)
    assert set(metrics["train_vae"]) == {"val_psnr", "val_ssim"}
    assert json.loads((root / "metrics/vae.json").read_text())["val_psnr"] > 0
    config = json.loads((root / "models/vae/config.json").read_text())
    assert config["scaling_factor"] != 1.0 and config["latent_channels"] == 4
    vae = load_vae(root / "models/vae")
    clip = np.asarray(load_clip(layout, read_videos(layout)[0]["file_name"]))[:5]
    z = encode_frames(vae, clip, batch_size=4)
    assert z.shape == (5, 4, 14, 14)  # 112 px / 2**3
    assert decode_latents(vae, torch.from_numpy(z), batch_size=4).shape == (5, 112, 112)


def test_latent_cache_has_every_clip_and_is_reused(staged):
    root, params, _ = staged
    layout = Layout(root)
    rows = read_videos(layout)
    files = {p.stem: p for p in layout.latents.glob("*.npy")}
    assert set(files) == {r["file_name"] for r in rows}
    for r in rows:
        arr = np.load(files[r["file_name"]], mmap_mode="r")
        assert arr.dtype == np.float16 and arr.shape == (r["n_frames"], 4, 14, 14)
    stamps = {k: p.stat().st_mtime_ns for k, p in files.items()}
    files[rows[0]["file_name"]].unlink()  # a lost file is re-encoded, the others are kept
    run_stage("cache_latents", params, root, progress=False)
    after = {p.stem: p.stat().st_mtime_ns for p in layout.latents.glob("*.npy")}
    assert set(after) == set(stamps)
    assert all(after[k] == v for k, v in stamps.items() if k != rows[0]["file_name"])


def test_diffusion_stage_outputs_metrics_and_registry(staged):
    root, params, metrics = staged
    m = json.loads((root / "metrics/diffusion.json").read_text())
    assert set(m) == {"train_loss", "motion_area_r"} and np.isfinite(m["train_loss"])
    assert m["motion_area_r"] is None or -1 <= m["motion_area_r"] <= 1
    pipe = MCDMPipeline.from_pretrained(root / "models")
    assert pipe.meta["n_frames"] == TINY_UNET["n_frames"] and pipe.meta["motion_dim"] == MOTION_DIM
    from mlflow import MlflowClient

    from lfmcdm.tracking import tracking_uri

    client = MlflowClient(tracking_uri(params.tracking, root))
    champion = client.get_model_version_by_alias("lfmcdm-mcdm", "champion")
    assert float(champion.tags["val_loss"]) == pytest.approx(pipe.meta["val_loss"])


def test_timestep_shift_moves_training_toward_high_noise_and_one_is_uniform():
    """Shift 1 is torch's uniform draw exactly (runs before the knob resume unchanged); shift 3 is the
    SD3 map of a uniform u: in range, deterministic, and most draws in the noisier half."""
    draw = lambda shift: sample_timesteps(20000, 1000, shift, torch.Generator().manual_seed(5))  # noqa: E731
    torch.testing.assert_close(draw(1.0), torch.randint(0, 1000, (20000,), generator=torch.Generator().manual_seed(5)))
    shifted = draw(3.0)
    assert int(shifted.min()) >= 0 and int(shifted.max()) <= 999
    torch.testing.assert_close(shifted, draw(3.0))
    # P(t >= 500) = P(3u / (1 + 2u) >= 1/2) = P(u >= 1/4) = 0.75
    assert abs(float((shifted >= 500).float().mean()) - 0.75) < 0.02
    assert abs(float((draw(1.0) >= 500).float().mean()) - 0.5) < 0.02
