"""Pseudo labels: label-free phase, pseudo flow, self-supervised ReID, and the stage end to end.

Everything runs on tiny phantoms whose truth (cavity area per frame, ED/ES frames, exact flow)
is known, so each test can tell a right answer from a plausible-looking wrong one.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from lfmcdm.config import PhantomConfig, load_params
from lfmcdm.settings.pseudo import PhaseConfig
from lfmcdm.data import phantom, phantom_a4c
from lfmcdm.data.phase import estimate_phase
from lfmcdm.data.tables import read_videos
from lfmcdm.data.video_io import write_gray
from lfmcdm.layout import Layout
from lfmcdm.models.reid import build_encoder, embed_frames, load_reid
from lfmcdm.pseudo import metrics
from lfmcdm.pseudo.flow import compute_flow, end_point_error, flow_pairs, video_flows, warp_backward
from lfmcdm.pseudo.reid import augment, reid_top1, train_reid
from lfmcdm.settings.pseudo import FlowConfig, ReidConfig

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
METRIC_KEYS = {"phase_ed_within2_share", "phase_es_within2_share", "phase_ed_median_error", "phase_es_median_error",
               "phase_swap_share", "phase_beats",
               "flow_epe", "flow_epe_zero_baseline", "reid_top1"}


def _specs(n: int, seed: int, frames: int = 80, size: int = 112, kind: str = "a4c", **a4c) -> list:
    cfg = PhantomConfig(kind=kind, n_videos=n, n_frames={"low": frames, "high": frames}, size=size, a4c=a4c)
    return phantom.sample_specs(cfg, seed)


def _nearest(estimate: int, frames: list[int]) -> int:
    return min(abs(estimate - f) for f in frames)


@pytest.fixture(scope="module", params=["a4c", "ellipse"])
def rendered(request) -> list[tuple[phantom.PhantomSpec, np.ndarray]]:
    """Ten rendered phantoms of each kind: the v2 estimator must work on the A4C view and the ellipse."""
    return [(s, phantom.render(s)) for s in _specs(10, seed=11, kind=request.param)]


# --- phase -------------------------------------------------------------------------------------


def test_phase_finds_ed_and_es_of_known_phantoms(rendered):
    ed_hits = es_hits = 0
    for spec, clip in rendered:
        est = estimate_phase(clip, spec.fps)
        assert est.ok, est.status
        assert est.es - est.ed >= 2
        ed_true, es_true = phantom.phase_frames(spec)
        ed_hits += _nearest(est.ed, ed_true) <= 2
        es_hits += _nearest(est.es, es_true) <= 2
    assert ed_hits >= 9 and es_hits >= 9, (ed_hits, es_hits)


def test_phase_is_not_swapped(rendered):
    """ED must be the *larger* cavity: a sign error in the signal would pick ES as ED and fail here."""
    for spec, clip in rendered:
        est = estimate_phase(clip, spec.fps)
        area = phantom.cavity_masks(spec).sum(axis=(1, 2))
        swing = area.max() - area.min()
        assert area[est.ed] - area[est.es] > 0.5 * swing, (spec.name, est)


def test_phase_period_matches_heart_rate(rendered):
    for spec, clip in rendered:
        est = estimate_phase(clip, spec.fps)
        true_period = 60.0 * spec.fps / spec.hr_bpm
        if est.period_frames is not None:
            assert abs(est.period_frames - true_period) < 0.1 * true_period


def test_unusable_clips_are_flagged_not_crashing(rendered):
    spec, clip = rendered[0]
    rng = np.random.default_rng(0)
    static = np.repeat(clip[:1], len(clip), axis=0)
    noisy_static = np.where(clip[0] > 0, np.clip(static + rng.normal(0, 10, static.shape), 0, 255), 0).astype(np.uint8)
    cases = {
        "blank": np.zeros_like(clip),
        "grey": np.full_like(clip, 128),
        "static": static,
        "static+noise": noisy_static,
        "short": clip[:6],
        "empty": clip[:0],
    }
    for name, bad in cases.items():
        est = estimate_phase(bad, spec.fps)
        assert not est.ok and est.ed is None and est.es is None, name
        assert est.status and est.status != "ok", name
    assert "blank" in estimate_phase(cases["blank"], 50).status
    assert "motion" in estimate_phase(cases["static+noise"], 50).status
    assert "short" in estimate_phase(cases["short"], 50).status


def _rows(pairs) -> tuple[list[dict], dict[str, dict]]:
    """videos.parquet-like rows of estimates and the truth table, for lfmcdm.pseudo.metrics."""
    rows, truth = [], {}
    for spec, est in pairs:
        rows.append({"file_name": spec.name, "fps": spec.fps, "source_fps": spec.fps, "n_frames": spec.n_frames,
                     "status": est.status, "ed_frame": est.ed, "es_frame": est.es,
                     "ed_frames": est.ed_frames, "es_frames": est.es_frames})
        ed, es = phantom.phase_frames(spec)
        truth[spec.name] = {"ed_frames": ed, "es_frames": es}
    return rows, truth


def test_every_beat_is_estimated_on_the_a4c_phantom():
    """Per beat (not one pair per clip): ED and ES within 2 frames for nearly all beats, none swapped."""
    specs = _specs(8, seed=31, frames=120)
    rows, truth = _rows([(s, estimate_phase(phantom.render(s), s.fps)) for s in specs])
    m = metrics.phase_metrics(rows, truth)
    assert m["phase_beats"] >= 2 * len(specs)
    assert m["phase_ed_within2_share"] >= 0.9 and m["phase_es_within2_share"] >= 0.9, m
    assert m["phase_swap_share"] == 0.0


def test_es_is_not_late_when_the_atria_and_leaflets_are():
    """The atria peak and the leaflets fill the ventricles' base *after* ES: the whole signal's minimum
    runs late (here +0.4 frames on average); the apical refinement removes that bias."""
    specs = _specs(6, seed=11, frames=120)
    clips = [phantom.render(s) for s in specs]

    def signed_es_errors(cfg: PhaseConfig) -> np.ndarray:
        errors = []
        for spec, clip in zip(specs, clips):
            est = estimate_phase(clip, spec.fps, cfg)
            assert est.ok, est.status
            errors += [min((g - t for g in est.es_frames), key=abs)
                       for t in phantom.phase_frames(spec)[1] if 0 < t < len(clip) - 1]
        return np.array(errors)

    unrefined, refined = signed_es_errors(PhaseConfig(es_refine_frames=0)), signed_es_errors(PhaseConfig())
    assert unrefined.mean() > 0.3 and abs(refined.mean()) < 0.25, (unrefined, refined)
    assert np.all(np.abs(refined) <= 2)


def test_enlarged_atria_do_not_fool_the_phase():
    """Atria larger than the LV swing more dark area than it, in anti-phase: following them would swap ED/ES."""
    specs = _specs(4, seed=5, frames=110, atria_scale=1.7)
    pairs = []
    for spec in specs:
        clip = phantom.render(spec)
        masks = phantom_a4c.label_masks(spec)
        lv = masks["lv"].sum(axis=(1, 2)).astype(float)
        atria = (masks["la"].sum(axis=(1, 2)) + masks["ra"].sum(axis=(1, 2))).astype(float)
        assert np.ptp(atria) > np.ptp(lv)  # the trap is real: the atria are the bigger dark-area change
        est = estimate_phase(clip, spec.fps)
        assert est.ok, est.status
        assert np.corrcoef(est.signal, lv)[0, 1] > 0.5  # the signal follows the ventricle...
        hearts = masks["lv"].any(axis=0) | masks["rv"].any(axis=0)
        on_ventricles = (est.ventricle_mask & hearts).sum()
        on_atria = (est.ventricle_mask & (masks["la"].any(axis=0) | masks["ra"].any(axis=0))).sum()
        assert on_ventricles > 2 * on_atria  # ...because it was built on the ventricles' pixels
        pairs.append((spec, est))
    m = metrics.phase_metrics(*_rows(pairs))
    assert m["phase_swap_share"] == 0.0
    assert m["phase_ed_within2_share"] >= 0.85 and m["phase_es_within2_share"] >= 0.85, m


def test_swapped_ed_es_are_caught_by_the_cycle_order():
    """A curve that follows the atria (or is upside down) puts ED at the true ES: its 'systole' is then
    the long phase of the cycle, and the estimate must be flagged with that reason, not returned."""
    from lfmcdm.data.phase import estimate_period, find_beats, phase_confidence

    cfg, fps = PhaseConfig(), 50.0
    phi = np.arange(130) / 40.0 + 0.3  # 40 frames per beat
    lv = 1.0 - 0.5 * phantom_a4c.cycle_curves(phi)[0]  # LV volume: ED at integer phase
    period = estimate_period(lv, fps, cfg)
    beats, _, _ = find_beats(lv, period, fps, cfg)
    assert abs(period - 40) < 1 and len(beats) == 3
    confidence, reason = phase_confidence(lv, beats, period, None, "", cfg)
    assert confidence > 0.8, reason
    # upside down: an ES is searched within es_window of each "ED", where only a slope is: no beat at all
    assert find_beats(-lv, period, fps, cfg)[0] == []
    # and with a window wide enough to reach the next extreme, the order evidence flags it
    wide = cfg.model_copy(update={"es_window": 0.9})
    swapped, _, _ = find_beats(-lv, period, fps, wide)
    assert swapped and all(abs((es - ed) - 0.64 * 40) <= 2 for ed, es in swapped)  # ED at the true ES
    confidence, reason = phase_confidence(-lv, swapped, period, None, "", wide)
    assert confidence < cfg.min_confidence and "swapped" in reason


def test_edge_beats_cut_short_by_the_clip_still_count_but_a_slope_does_not():
    """An ES two frames into the clip (its fall mostly before the clip) and an ED three frames before
    the end are real when a full beat's depth lies on their other side; a clip that starts or ends
    on a slope has no extreme there."""
    from lfmcdm.data.phase import estimate_period, find_beats
    from lfmcdm.settings.pseudo import PhaseConfig

    cfg, fps = PhaseConfig(), 50.0
    lv = 1.0 - 0.5 * phantom_a4c.cycle_curves(np.arange(200) / 40.0)[0]  # ED at 0, 40, 80, ...; ES ~ 14 after
    es0 = int(np.argmin(lv[:40]))
    clip = lv[es0 - 2 : es0 - 2 + 40 * 3 - es0 + 2 + 3 + 1]  # starts 2 frames before an ES, ends 3 after an ED
    true_es, true_ed = 2, len(clip) - 4
    period = estimate_period(clip, fps, cfg)
    _, eds, ess = find_beats(clip, period, fps, cfg)
    assert min(abs(e - true_es) for e in ess) <= 1 and min(abs(e - true_ed) for e in eds) <= 1, (eds, ess)
    rising = clip[true_es + 3 : true_ed - 3]  # starts after the ES, ends before the ED: slopes only at both ends
    _, eds, ess = find_beats(rising, estimate_period(rising, fps, cfg), fps, cfg)
    assert all(3 <= e <= len(rising) - 4 for e in eds + ess), (eds, ess)


def test_metrics_compare_each_reference_beat_with_the_estimate_of_its_beat():
    truth = {"v": {"ed_frames": [10, 40, 70], "es_frames": [20, 50, 80]}}
    row = {"file_name": "v", "fps": 50.0, "source_fps": 50.0, "n_frames": 90, "status": "ok"}
    right = {**row, "ed_frame": 40, "es_frame": 50, "ed_frames": [10, 41, 70], "es_frames": [20, 52, 80]}
    m = metrics.phase_metrics([right], truth)
    assert (m["phase_ed_within2_share"], m["phase_es_within2_share"], m["phase_swap_share"], m["phase_beats"]) == (1, 1, 0, 3)
    swapped = {**row, "ed_frame": 20, "es_frame": 40, "ed_frames": [20, 50, 80], "es_frames": [10, 40, 70]}
    m = metrics.phase_metrics([swapped], truth)
    assert m["phase_swap_share"] == 1.0 and m["phase_ed_within2_share"] == 0.0
    one_beat = {**row, "ed_frame": 40, "es_frame": 50, "ed_frames": [40], "es_frames": [50]}
    assert metrics.phase_metrics([one_beat], truth)["phase_ed_within2_share"] == pytest.approx(1 / 3)
    flagged = {**row, "status": "low phase confidence 0.10", "ed_frame": None, "es_frame": None}
    m = metrics.phase_metrics([flagged], truth)
    assert m["phase_ed_within2_share"] == 0.0 and m["phase_swap_share"] == 0.0
    # a traced pair (real data) is compared with the nearest beat's estimate, wherever that beat is
    traced = {"file_name": "r", "fps": 50.0, "source_fps": 50.0, "n_frames": 90, "status": "ok", "ed_frame": 10,
              "es_frame": 20, "ed_frames": [10, 40, 70], "es_frames": [20, 50, 80], "traced_ed": 71, "traced_es": 79}
    m = metrics.phase_metrics([traced], {})
    assert (m["phase_ed_within2_share"], m["phase_es_within2_share"], m["phase_beats"]) == (1, 1, 1)


# --- flow --------------------------------------------------------------------------------------


def test_flow_direction_and_contract_order(rendered):
    """Each of the four flows must match the exact phantom flow of *its* pair; a wrong sign or order fails."""
    spec, clip = rendered[1]
    ed_true, es_true = phantom.phase_frames(spec)
    ed = ed_true[0]
    es = next(e for e in es_true if e > ed)
    flows = video_flows(clip, ed, es)
    assert flows.shape == (4, spec.size, spec.size, 2) and flows.dtype == np.float16
    mid = (ed + es) // 2
    contract = [(ed, es), (es, ed), (mid, ed), (mid, es)]  # docs/design.md, spelled out here on purpose
    assert flow_pairs(ed, es) == contract
    for k, (a, b) in enumerate(contract):
        true, mask = phantom.true_flow(spec, a, b)
        zero = end_point_error(np.zeros_like(true), true, mask)
        if zero < 1.0:
            continue  # MID is too close to its target to tell directions apart
        assert end_point_error(flows[k], true, mask) < 0.5 * zero, k
        assert end_point_error(-flows[k].astype(np.float32), true, mask) > zero, k


def _blur(x: np.ndarray) -> np.ndarray:
    """Compare structure, not speckle noise."""
    return cv2.GaussianBlur(x, (0, 0), 2.0)


def test_flow_warp_reconstructs_source_frame(rendered):
    spec, clip = rendered[2]
    est = estimate_phase(clip, spec.fps)
    for method in ("dis", "farneback"):
        flow = compute_flow(clip[est.ed], clip[est.es], FlowConfig(method=method))
        _, mask = phantom.true_flow(spec, est.ed, est.es)
        a, b = clip[est.ed].astype(np.float32), clip[est.es].astype(np.float32)
        err_warped = np.abs(_blur(warp_backward(b, flow)) - _blur(a))[mask].mean()
        err_flipped = np.abs(_blur(warp_backward(b, -flow)) - _blur(a))[mask].mean()
        err_identity = np.abs(_blur(b) - _blur(a))[mask].mean()
        assert err_warped < 0.8 * err_identity and err_warped < err_flipped, (method, err_warped, err_identity)


# --- reid --------------------------------------------------------------------------------------

TINY_REID = ReidConfig(steps=150, batch_videos=8, input_size=32, channels=(8, 16, 32), embed_dim=32, lr=3e-3,
                       eval_exclude_frames=3, eval_queries_per_video=8, checkpoint_every=50)


def _margin(model, clips) -> float:
    """Mean cosine similarity within a video minus across videos (0 = identities not separated)."""
    embs = [embed_frames(model, c) for c in clips]
    owner = np.concatenate([np.full(len(e), i) for i, e in enumerate(embs)])
    sims = np.concatenate(embs) @ np.concatenate(embs).T
    return float(sims[owner[:, None] == owner[None, :]].mean() - sims[owner[:, None] != owner[None, :]].mean())


def _hard_top1(model, clips, cfg: ReidConfig) -> float:
    """Queries disturbed by strong acquisition changes (gain, gamma, noise, shift) vs clean galleries."""
    strong = cfg.model_copy(update={"gain_jitter": 0.5, "gamma_jitter": 0.5, "noise_std": 10.0, "shift_px": 4})
    rng = np.random.default_rng(5)
    gallery = [embed_frames(model, c) for c in clips]
    owner = np.concatenate([np.full(len(e), i) for i, e in enumerate(gallery)])
    stacked = np.concatenate(gallery)
    hits = total = 0
    for i, c in enumerate(clips):
        q = embed_frames(model, augment(c, rng, strong).astype(np.uint8))
        hits += int((owner[np.argmax(q @ stacked.T, axis=1)] == i).sum())
        total += len(q)
    return hits / total


@pytest.fixture(scope="module")
def reid_clips() -> tuple[list[np.ndarray], list[np.ndarray]]:
    clips = [phantom.render(s) for s in _specs(14, seed=3, frames=24, size=64)]
    return clips[:8], clips[8:]


def test_reid_training_beats_untrained_encoder(reid_clips, tmp_path):
    torch.set_num_threads(1)
    train, held_out = reid_clips
    untrained = build_encoder(TINY_REID, seed=0).eval()
    trained, info = train_reid(train, TINY_REID, seed=0, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert info["final_loss"] < 0.7 * np.log(2 * TINY_REID.batch_videos - 1)  # well below chance-level NT-Xent
    assert _margin(trained, held_out) > _margin(untrained, held_out) + 0.3
    chance = 1 / len(held_out)
    assert _hard_top1(trained, held_out, TINY_REID) > max(2 * chance, _hard_top1(untrained, held_out, TINY_REID) + 0.2)
    # embeddings are unit vectors, one per frame
    emb = embed_frames(trained, held_out[0])
    assert emb.shape == (len(held_out[0]), TINY_REID.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # a run killed mid-way and resumed from its checkpoint ends with the very same weights
    class Killed(Exception):
        pass

    def kill_at_100(_metrics, step):
        if step == 100:
            raise Killed

    with pytest.raises(Killed):
        train_reid(train, TINY_REID, seed=0, checkpoint_dir=tmp_path / "resume", progress=False, log=kill_at_100)
    resumed, info = train_reid(train, TINY_REID, seed=0, checkpoint_dir=tmp_path / "resume", progress=False)
    assert info["resumed_from"] == 100
    for (k, v), w in zip(trained.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k


def test_reid_top1_excludes_neighbouring_frames():
    rng = np.random.default_rng(0)
    # each video: one random direction for frames 0..4, another for frames 5..9 -> only near frames look alike
    videos = []
    for _ in range(3):
        a, b = rng.normal(size=(2, 16))
        e = np.stack([a] * 5 + [b] * 5)
        videos.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    assert reid_top1(videos, exclude=0, queries_per_video=10) == 1.0
    assert reid_top1(videos, exclude=4, queries_per_video=10) < 0.5


# --- the stage ---------------------------------------------------------------------------------


def test_stage_end_to_end_on_tiny_phantom(tmp_path, monkeypatch):
    from lfmcdm.stages import run_stage

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LFMCDM_PIPELINE_ID", "test-pseudo")
    params = load_params(PARAMS, overrides={
        "phantom": {"n_videos": 8, "n_frames": {"low": 48, "high": 64}},
        "data": {"workers": 1},
        "pseudo": {"flow": {"workers": 1}, "reid": {**TINY_REID.model_dump(mode="json"), "steps": 20}},
    })
    run_stage("phantom", params, tmp_path, progress=False)
    src = tmp_path / params.phantom.out_dir
    names = sorted(p.stem for p in (src / "Videos").glob("*.avi"))
    specs = {n: phantom.spec_from_truth(row) for n, row in phantom.load_truth(src).items()}
    clip = phantom.render(specs[names[0]])
    # same length and frame rate as FileList says (a4c videos vary their FPS around 50)
    write_gray(src / "Videos" / f"{names[0]}.avi", np.repeat(clip[:1], len(clip), axis=0), specs[names[0]].fps)  # still
    black = np.zeros((specs[names[1]].n_frames, *clip.shape[1:]), np.uint8)
    write_gray(src / "Videos" / f"{names[1]}.avi", black, specs[names[1]].fps)  # a black video
    run_stage("ingest", params, tmp_path, progress=False)
    assert len(pq.read_table(tmp_path / "data/interim/videos.parquet")) == 8  # ingest keeps every decodable clip

    metrics = run_stage("pseudo_labels", params, tmp_path, progress=False)
    assert set(metrics) == METRIC_KEYS
    assert set(json.loads((tmp_path / "metrics/pseudo_labels.json").read_text())) == METRIC_KEYS
    videos = {r["file_name"]: r for r in read_videos(Layout(tmp_path), usable_only=False)}
    assert len(videos) == 8  # flagged clips keep their row...
    assert "motion" in videos[names[0]]["status"] and "blank" in videos[names[1]]["status"]
    assert (tmp_path / "data/interim/clips" / f"{names[0]}.npy").exists()  # ...and their clip
    ok = [r for r in videos.values() if r["status"] == "ok"]
    assert len(ok) == 6 and all(0 <= r["ed_frame"] < r["es_frame"] - 1 < r["n_frames"] for r in ok)
    assert {r["file_name"] for r in read_videos(Layout(tmp_path))} == {r["file_name"] for r in ok}
    from lfmcdm.pseudo.metrics import reference_frames

    truth = phantom.load_truth(src)
    beats = {n: len(reference_frames(r, truth)[0]) for n, r in videos.items()}
    flagged_share = (beats[names[0]] + beats[names[1]]) / sum(beats.values())
    assert metrics["phase_ed_within2_share"] <= 1 - flagged_share + 1e-9  # the two flagged videos' beats count as misses
    assert metrics["phase_beats"] > len(videos)  # every beat counts, not one per clip
    assert metrics["flow_epe"] < 0.6 * metrics["flow_epe_zero_baseline"]
    for name, row in videos.items():
        flow_file, reid_file = (tmp_path / f"data/interim/{d}/{name}.npy" for d in ("flow", "reid"))
        assert flow_file.exists() == reid_file.exists() == (row["status"] == "ok"), name
        if row["status"] == "ok":
            flow, emb = np.load(flow_file), np.load(reid_file)
            assert flow.shape == (4, 112, 112, 2) and flow.dtype == np.float16
            assert emb.shape == (row["n_frames"], TINY_REID.embed_dim) and emb.dtype == np.float16
    model = load_reid(tmp_path / "models/reid")
    some = next(r for r in ok)
    saved = np.load(tmp_path / f"data/interim/reid/{some['file_name']}.npy").astype(np.float32)
    fresh = embed_frames(model, np.load(tmp_path / f"data/interim/clips/{some['file_name']}.npy"))
    np.testing.assert_allclose(saved, fresh, atol=2e-3)


def test_read_videos_joins_the_phase_and_refuses_a_stale_phase_table(tmp_path):
    """Stages read videos.parquet (ingest) joined with phase.parquet (pseudo_labels); never a silent drop."""
    import pyarrow as pa

    from lfmcdm.atomic import write_parquet
    from lfmcdm.stages.ingest import VIDEOS_SCHEMA
    from lfmcdm.stages.pseudo_labels import PHASE_SCHEMA

    layout = Layout(tmp_path)
    videos = [{"file_name": n, "split": s, "fps": 50.0, "n_frames": 40} for n, s in (("A", "TRAIN"), ("B", "VAL"))]
    write_parquet(layout.videos, pa.Table.from_pylist(videos, schema=VIDEOS_SCHEMA))
    with pytest.raises(FileNotFoundError, match="pseudo_labels"):
        read_videos(layout)
    phase = [{"file_name": "A", "ed_frame": 3, "es_frame": 12, "status": "ok"}]
    write_parquet(layout.phase, pa.Table.from_pylist(phase, schema=PHASE_SCHEMA))
    with pytest.raises(ValueError, match="no phase for 1 ingested videos .first: B."):
        read_videos(layout)
    phase.append({"file_name": "B", "status": "no visible motion"})
    write_parquet(layout.phase, pa.Table.from_pylist(phase, schema=PHASE_SCHEMA))
    (a,) = read_videos(layout)
    assert (a["file_name"], a["split"], a["ed_frame"], a["es_frame"]) == ("A", "TRAIN", 3, 12)
    assert [r["status"] for r in read_videos(layout, usable_only=False)] == ["ok", "no visible motion"]
    assert read_videos(layout, ("VAL",), usable_only=False)[0]["ed_frame"] is None
