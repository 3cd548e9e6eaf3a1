"""MAFE: model shapes, flow-consistent augmentations, training, kill-and-resume, stages' contracts."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from pydantic import ValidationError

from lfmcdm.atomic import save_npy, write_parquet
from lfmcdm.config import PhantomConfig
from lfmcdm.data import phantom
from lfmcdm.data.pairs import pair_refs
from lfmcdm.data.tables import read_videos
from lfmcdm.eval.ef_probe import cross_validated_r2
from lfmcdm.layout import Layout
from lfmcdm.models.flow_ops import backward_warp
from lfmcdm.models.inter_frame_attention import window_mask, window_partition, window_reverse
from lfmcdm.models.mafe import MAFE, load_mafe, save_mafe
from lfmcdm.settings.mafe import PAPER_MODEL, MafeConfig, MafeModelConfig
from lfmcdm.stages.ingest import VIDEOS_SCHEMA
from lfmcdm.stages.pseudo_labels import PHASE_SCHEMA
from lfmcdm.train.mafe import loss_terms, train_mafe
from lfmcdm.train.mafe_augment import PairAugment
from .conftest import tiny_params

SIZE = 64
TINY_MODEL = {"conv_channels": [4, 8], "attn_channels": [8, 16], "attn_depths": [1, 2], "attn_heads": [2, 2],
              "motion_channels": [2, 4], "window_size": 4, "decoder_channels": 8, "refine_channels": 8,
              "motion_pool": 2, "bank_levels": 2, "motion_dim": 80}
TINY_TRAIN = {"model": TINY_MODEL, "epochs": 2, "batch_size": 2, "warmup_steps": 2, "checkpoint_every": 2,
              "eval_batch_size": 4, "probe_folds": 2}


# ---- a tiny dataset that honours the pseudo-label contracts (truth stands in for pseudo_labels) -----
def _write_dataset(root: Path, n_videos: int = 8, with_pseudo: bool = True) -> None:
    layout = Layout(root)
    cfg = PhantomConfig(n_videos=n_videos, n_frames={"low": 30, "high": 36}, size=SIZE,
                        splits={"TRAIN": 0.75, "VAL": 0.125, "TEST": 0.125})  # 6 TRAIN: whole batches of 2
    rows, phases = [], []
    for spec in phantom.sample_specs(cfg, seed=3):
        clip = phantom.render(spec)
        save_npy(layout.clip(spec.name), clip)
        ed, es = phantom.traced_frames(spec)
        mid = (ed + es) // 2
        if with_pseudo:
            flows = [phantom.true_flow(spec, a, b)[0] for a, b in ((ed, es), (es, ed), (mid, ed), (mid, es))]
            save_npy(layout.flow / f"{spec.name}.npy", np.stack(flows).astype(np.float16))
            emb = np.random.default_rng(spec.seed).standard_normal((len(clip), 16))
            save_npy(layout.reid / f"{spec.name}.npy", (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float16))
        rows.append({"file_name": spec.name, "split": spec.split, "source_fps": spec.fps, "fps": spec.fps,
                     "n_frames": len(clip), "height": SIZE, "width": SIZE, "ef": spec.ef, "esv": None, "edv": None,
                     "traced_ed": None, "traced_es": None, "sha256": "x"})
        phases.append({"file_name": spec.name, "ed_frame": ed, "es_frame": es, "status": "ok"})
    write_parquet(layout.videos, pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA))
    write_parquet(layout.phase, pa.Table.from_pylist(phases, schema=PHASE_SCHEMA))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mafe_data")
    _write_dataset(root)
    return root / "data"


def _root(tmp_path: Path, data: Path, name: str) -> Path:
    """A fresh run folder (own checkpoints/models/metrics) sharing the read-only dataset."""
    root = tmp_path / name
    root.mkdir()
    os.symlink(data, root / "data")
    return root


def _mafe(**overrides) -> MafeConfig:
    return MafeConfig.model_validate({**TINY_TRAIN, **overrides})


# ---- model -------------------------------------------------------------------------------------
def test_model_shapes_motion_dim_and_average_start():
    torch.manual_seed(0)
    cfg = MafeModelConfig()
    model = MAFE(cfg, reid_dim=16)
    a, b = torch.rand(2, 1, 112, 112), torch.rand(2, 1, 112, 112)
    out = model(a, b)
    assert out.mid.shape == (2, 1, 112, 112) and out.flow_a.shape == out.flow_b.shape == (2, 2, 112, 112)
    assert out.reid.shape == (2, 16) and torch.allclose(out.reid.norm(dim=-1), torch.ones(2))
    assert model.motion_vector(out.features).shape == (2, cfg.motion_dim) == (2, 1536)
    # zero-initialised heads: an untrained model is exactly the average-of-inputs baseline
    assert torch.allclose(out.mid, 0.5 * (a + b), atol=1e-4)
    assert out.flow_a.abs().max() == 0

    odd = MAFE(MafeModelConfig(**{**TINY_MODEL, "window_size": 5}))  # padding to the stride and to the window
    out = odd(torch.rand(1, 1, 60, 52), torch.rand(1, 1, 60, 52))
    assert out.mid.shape == (1, 1, 60, 52) and out.flow_b.shape == (1, 2, 60, 52) and out.reid is None


def _signed_and_magnitude(vector: torch.Tensor, cfg: MafeModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a motion vector laid out per level as [signed means, mean magnitudes]."""
    signed, magnitude, start = [], [], 0
    for channels in cfg.level_motion_channels[-cfg.bank_levels:]:
        size = channels * cfg.motion_pool**2
        signed.append(vector[:, start : start + size])
        magnitude.append(vector[:, start + size : start + 2 * size])
        start += 2 * size
    assert start == vector.shape[1]
    return torch.cat(signed, 1), torch.cat(magnitude, 1)


def test_motion_vector_is_antisymmetric_in_the_frame_order_and_its_magnitude_symmetric():
    torch.manual_seed(0)
    cfg = MafeModelConfig(**TINY_MODEL)
    model = MAFE(cfg).eval()
    a, b = torch.rand(3, 1, 32, 32), torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        forward, backward = model.motion_vector(model.encode(a, b)), model.motion_vector(model.encode(b, a))
    signed_f, magnitude_f = _signed_and_magnitude(forward, cfg)
    signed_b, magnitude_b = _signed_and_magnitude(backward, cfg)
    assert signed_f.abs().max() > 0 and torch.allclose(signed_f, -signed_b, atol=1e-6)
    assert magnitude_f.min() >= 0 and torch.allclose(magnitude_f, magnitude_b, atol=1e-6)
    # a cell's magnitude is at least its signed mean's size: opposite motions cancel only in the mean
    assert (magnitude_f >= signed_f.abs() - 1e-6).all()
    signed_only = MAFE(MafeModelConfig(**{**TINY_MODEL, "motion_magnitude": False, "motion_dim": cfg.motion_dim // 2}))
    signed_only.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(signed_only.eval().motion_vector(signed_only.encode(a, b)), signed_f, atol=1e-6)


def test_paper_profile_is_3072_signed_plus_magnitude_and_motion_dim_is_checked():
    cfg = MafeModelConfig(**PAPER_MODEL)
    assert cfg.motion_dim == cfg.pooled_motion_dim == 2 * 3072  # the paper's 3072 means + their magnitudes
    model = MAFE(cfg)
    with torch.no_grad():
        features = model.encode(torch.rand(1, 1, 112, 112), torch.rand(1, 1, 112, 112))
    assert model.motion_vector(features).shape == (1, 6144)
    with pytest.raises(ValidationError, match="motion_dim"):
        MafeModelConfig(**{**PAPER_MODEL, "motion_dim": 3072})
    assert MafeModelConfig(**{**PAPER_MODEL, "motion_magnitude": False, "motion_dim": 3072}).pooled_motion_dim == 3072


def test_window_partition_roundtrip_and_masks():
    x = torch.randn(2, 3, 8, 12)
    assert torch.equal(window_reverse(window_partition(x, 4), 4, 2, 8, 12), x)
    assert window_mask(8, 12, 4, 0, x.device) is None
    shifted = window_mask(8, 8, 4, 2, x.device)  # wrapped tokens are isolated from their window
    assert shifted.shape == (4, 16, 16) and shifted[0].all() and not shifted[-1].all()
    padded = window_mask(6, 8, 4, 0, x.device)  # rows 6, 7 are padding: never attended by real tokens
    assert not padded[-1][0, -1] and padded[-1][0, 0]


def test_save_load_roundtrip(tmp_path):
    model = MAFE(MafeModelConfig(**TINY_MODEL), reid_dim=8)
    torch.nn.init.normal_(model.heads[-1].net[-1].weight)
    save_mafe(model, tmp_path / "mafe")
    loaded = load_mafe(tmp_path / "mafe")
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(a, b).mid, loaded(a, b).mid)


# ---- augmentations -----------------------------------------------------------------------------
def _pattern(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth, asymmetric image: bilinear warping of it is accurate to ~1e-3."""
    return 0.5 + 0.2 * torch.sin(0.21 * x + 0.05 * y) + 0.15 * torch.cos(0.13 * y - 0.07 * x) + 0.1 * torch.sin(0.05 * x + 0.17 * y)


def _affine_sample(n: int = 40) -> dict[str, torch.Tensor]:
    """Frames a, b and middle frame m with exact affine flows MID->A, MID->B: a(p + f_a(p)) = m(p)."""
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    c = (n - 1) / 2
    sample = {"mid": _pattern(xx, yy)}
    for key, matrix in (("a", [[0.08, 0.05], [-0.02, 0.12]]), ("b", [[-0.10, 0.03], [0.06, -0.04]])):
        s = torch.tensor(matrix, dtype=torch.float64)
        px, py = xx - c, yy - c
        sample[f"flow_{key}"] = torch.stack([s[0, 0] * px + s[0, 1] * py, s[1, 0] * px + s[1, 1] * py])
        inv = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + s)  # q = c + (I + S)(p - c)  =>  p = c + inv (q - c)
        sample[key] = _pattern(c + inv[0, 0] * px + inv[0, 1] * py, c + inv[1, 0] * px + inv[1, 1] * py)
    return {k: v.float().unsqueeze(0) if v.dim() == 2 else v.float() for k, v in sample.items()}


def _warp_error(sample: dict[str, torch.Tensor], key: str, border: int = 8) -> float:
    warped = backward_warp(sample[key].unsqueeze(0), sample[f"flow_{key}"].unsqueeze(0))[0]
    inner = (..., slice(border, -border), slice(border, -border))
    return float((warped - sample["mid"])[inner].abs().max())


@pytest.mark.parametrize("hflip", [False, True])
@pytest.mark.parametrize("rot", [0, 1, 2, 3])
@pytest.mark.parametrize("swap", [False, True])
def test_augmented_flows_still_warp_inputs_onto_the_middle_frame(hflip, rot, swap):
    sample = _affine_sample()
    assert _warp_error(sample, "a") < 5e-3 and _warp_error(sample, "b") < 5e-3  # the analytic flows are right
    out = PairAugment(hflip=hflip, rot=rot, swap=swap)(sample)
    assert _warp_error(out, "a") < 5e-3 and _warp_error(out, "b") < 5e-3
    if hflip or rot:  # the check is sensitive: moving the vectors without turning them fails it
        naive = {**out, "flow_a": _spatial_only(sample["flow_b" if swap else "flow_a"], hflip, rot)}
        assert _warp_error(naive, "a") > 10 * _warp_error(out, "a")


def _spatial_only(flow: torch.Tensor, hflip: bool, rot: int) -> torch.Tensor:
    flow = torch.flip(flow, dims=(-1,)) if hflip else flow
    return torch.rot90(flow, rot, dims=(-2, -1))


def test_frame_swap_swaps_flows_and_keeps_the_target():
    sample = _affine_sample()
    out = PairAugment(swap=True)(sample)
    assert torch.equal(out["a"], sample["b"]) and torch.equal(out["b"], sample["a"])
    assert torch.equal(out["flow_a"], sample["flow_b"]) and torch.equal(out["flow_b"], sample["flow_a"])
    assert torch.equal(out["mid"], sample["mid"])


# ---- training ----------------------------------------------------------------------------------
def test_one_training_step_reduces_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = _mafe()
    model = MAFE(cfg.model, reid_dim=4)
    first = _affine_sample(32)
    second = PairAugment(hflip=True, rot=1)(first)  # a second, different pair: the ReID head normalises over the batch
    batch = {k: torch.stack([first[k], second[k]]) for k in first}
    batch["reid"] = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = loss_terms(cfg, model(batch["a"], batch["b"]), batch)
    optimizer.zero_grad()
    before["loss"].backward()
    optimizer.step()
    with torch.no_grad():
        after = loss_terms(cfg, model(batch["a"], batch["b"]), batch)
    assert set(before) == {"l1", "ssim", "flow", "reid", "loss"}
    assert after["loss"] < before["loss"] - 1e-4


class Killed(RuntimeError):
    pass


def _kill_at(step: int):
    def hook(current: int) -> None:
        if current == step:
            raise Killed(f"killed after step {step}")
    return hook


def test_kill_and_resume_matches_an_uninterrupted_run(dataset, tmp_path):
    cfg, train_cfg = _mafe(), tiny_params().train
    whole = train_mafe(cfg, train_cfg, Layout(_root(tmp_path, dataset, "whole")), seed=1, progress=False)
    assert whole.resumed_from is None and whole.steps == 2 * math.ceil(len(_train_refs(dataset)) / 2)

    layout = Layout(_root(tmp_path, dataset, "killed"))
    with pytest.raises(Killed):
        train_mafe(cfg, train_cfg, layout, seed=1, progress=False, on_step=_kill_at(whole.steps - 1))
    resumed = train_mafe(cfg, train_cfg, layout, seed=1, progress=False)
    last_checkpoint = (whole.steps - 1) // cfg.checkpoint_every * cfg.checkpoint_every
    assert resumed.resumed_from == last_checkpoint and resumed.steps == whole.steps
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.history == whole.history

    again = train_mafe(cfg, train_cfg, layout, seed=1, progress=False)  # finished: reload, no training
    assert again.resumed_from == whole.steps and again.history == whole.history

    changed = train_mafe(_mafe(epochs=1), train_cfg, layout, seed=1, progress=False)  # other settings: fresh start
    assert changed.resumed_from is None and len(changed.history) == 1


def _train_refs(data: Path):
    return [r for r in pair_refs(read_videos(Layout(data.parent)))[0] if r.split == "TRAIN"]


def test_ablations_need_no_pseudo_flow_or_reid(tmp_path):
    root = tmp_path / "bare"
    _write_dataset(root, n_videos=4, with_pseudo=False)
    cfg = _mafe(epochs=1, reid_weight=0.0, flow_weight=0.0)
    result = train_mafe(cfg, tiny_params().train, Layout(root), seed=0, progress=False)
    assert result.model.reid_head is None and result.steps > 0
    with pytest.raises(FileNotFoundError, match="pseudo_labels"):
        train_mafe(_mafe(epochs=1, reid_weight=0.0), tiny_params().train, Layout(root), seed=0, progress=False)


def test_motion_trajectory_pairs_and_encoding():
    from lfmcdm.models.motion_vectors import encode_frame_pairs, motion_trajectories, partner_indices, trajectory_pairs

    # ES first, then ED + t * fps, rounded and clamped to the clip
    assert partner_indices(ed=3, es=10, n_frames=40, fps=50.0, times_s=(0.1, 0.25, 2.0)) == [10, 8, 16, 39]
    with pytest.raises(ValueError, match="increasing"):
        MafeConfig(bank_times_s=(0.5, 0.25))
    assert MafeConfig(bank_times_s=(0.5,)).bank_dim == 2 * MafeModelConfig().motion_dim

    torch.manual_seed(0)
    model = MAFE(MafeModelConfig(**TINY_MODEL)).eval()
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 255, (30, 32, 32), dtype=np.uint8) for _ in range(3)]
    videos = [trajectory_pairs(c, 2, 9, 25.0, (0.2, 0.4)) for c in clips]
    assert all(len(v) == 3 and np.array_equal(v[1][1], c[7]) for v, c in zip(videos, clips))
    expected = np.stack([encode_frame_pairs(model, v, "cpu").reshape(-1) for v in videos])
    for batch in (1, 2, 4, 16):  # batches cut across videos: each vector is still its own video's pairs
        got = motion_trajectories(model, iter(videos), len(videos), batch)
        assert got.shape == (3, 3 * model.config.motion_dim)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_ef_probe_is_cross_validated():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    y = x @ rng.standard_normal(6) + 0.05 * rng.standard_normal(40)
    assert cross_validated_r2(x, y, 5, (0.1, 1.0, 10.0), seed=0) > 0.95
    noise = rng.standard_normal(40)
    assert cross_validated_r2(x, noise, 5, (0.1, 1.0, 10.0), seed=0) < 0.2  # no training-set optimism
    assert cross_validated_r2(x[:3], y[:3], 5, (1.0,), seed=0) is None


# ---- stages ------------------------------------------------------------------------------------
def test_stages_train_register_and_write_the_motion_bank(dataset, tmp_path):
    from mlflow import MlflowClient

    from lfmcdm import tracking
    from lfmcdm.stages import run_stage

    root = _root(tmp_path, dataset, "stages")
    params = tiny_params(mafe={**TINY_TRAIN, "epochs": 1})
    metrics = run_stage("train_mafe", params, root=root, progress=False)
    assert set(metrics) == {"val_psnr", "val_psnr_average_baseline", "val_ssim", "ef_probe_r2_motion", "ef_probe_r2_appearance"}
    assert metrics["val_psnr"] > 10 and metrics["val_psnr_average_baseline"] > 10
    assert (root / "metrics/mafe.json").exists() and (root / "models/mafe/model.safetensors").exists()
    client = MlflowClient(tracking.tracking_uri(params.tracking, root))
    assert tracking.tracking_uri(params.tracking, root) == f"sqlite:///{(root / 'mlflow.db').resolve()}"
    champion = client.get_model_version_by_alias("lfmcdm-mafe", "champion")
    assert client.get_run(champion.run_id).data.tags["lfmcdm.stage"] == "train_mafe"  # what this stage registered
    assert [v.version for v in client.search_model_versions("name = 'lfmcdm-mafe'")] == [champion.version]

    assert run_stage("motion_bank", params, root=root, progress=False) == {}
    table = pq.read_table(Layout(root).motion)
    dim = params.mafe.bank_dim
    assert dim == 9 * params.mafe.model.motion_dim  # (ED, ES) + 8 trajectory pairs
    assert json.loads(table.schema.metadata[b"lfmcdm.bank_times_s"]) == list(params.mafe.bank_times_s)
    assert table.schema.equals(pa.schema([("file_name", pa.string()), ("split", pa.string()),
                                          ("motion", pa.list_(pa.float32(), dim)), ("mafe_version", pa.string())]))
    assert table.num_rows == 8 and len(set(table.column("mafe_version").to_pylist())) == 1
    motion = np.array(table.column("motion").to_pylist(), dtype=np.float32)
    assert motion.shape == (8, dim) and np.isfinite(motion).all() and motion.std() > 0
    mtime = Layout(root).motion.stat().st_mtime_ns
    run_stage("motion_bank", params, root=root, progress=False)  # unchanged model and videos: no rewrite
    assert Layout(root).motion.stat().st_mtime_ns == mtime
    shorter = params.model_copy(update={"mafe": params.mafe.model_copy(update={"bank_times_s": (0.2,)})})
    run_stage("motion_bank", shorter, root=root, progress=False)  # other trajectory: re-encoded
    table = pq.read_table(Layout(root).motion)
    assert table.schema.field("motion").type.list_size == 2 * params.mafe.model.motion_dim
    head = np.array(table.column("motion").to_pylist(), dtype=np.float32)[:, : params.mafe.model.motion_dim]
    np.testing.assert_allclose(head, motion[:, : params.mafe.model.motion_dim], rtol=1e-4, atol=1e-5)  # (ED, ES) first
