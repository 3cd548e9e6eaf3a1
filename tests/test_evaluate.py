"""Evaluation: Fréchet distance, diversity, motion-fidelity alignment, the EF regressor, and the stage + report.

The stage test builds a small but complete pipeline state in a temporary folder: a phantom
ingested for real, ReID / MAFE models (untrained: evaluation must work with whatever models
exist), their stored real-video features, and a synthetic cohort written by a *perfect
generator* (the phantom renderer with one video's appearance and another's motion), so motion
fidelity has a known right answer.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lfmcdm.data import phantom
from lfmcdm.data.tables import load_clip, read_videos
from lfmcdm.data.video_io import write_gray
from lfmcdm.eval import encoders
from lfmcdm.eval.diversity import mean_pairwise_distance
from lfmcdm.eval.ef_regressor import EfVideo, fit_and_score, fit_and_score_sets, mae, prepare_video
from lfmcdm.eval.frechet import frechet_between, frechet_distance
from lfmcdm.eval.metric_catalog import KEYS
from lfmcdm.eval.motion_fidelity import align_at, align_curves, pearson, shuffled_partners
from lfmcdm.layout import Layout
from lfmcdm.parallel import n_workers
from lfmcdm.settings.evaluate import EfRegressorConfig
from lfmcdm.stages import StageContext, run_stage
from lfmcdm.stages import ingest, pseudo_labels
from lfmcdm.stages import phantom as phantom_stage

from .conftest import REPO, tiny_params

COHORT = "evaltest"
SYN_FPS, SYN_FRAMES = 16.0, 16
SECTIONS = ("summary", "metrics", "frames", "animations", "motion", "privacy", "downstream", "training")


# --- Fréchet distance --------------------------------------------------------------------------------------------


def test_frechet_zero_for_identical_sets():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_between(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_grows_with_mean_shift():
    rng = np.random.default_rng(1)
    x, noise = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    distances = [frechet_between(x, noise + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(distances, distances[1:]))
    # a pure mean shift of s along every one of 4 axes adds |shift|^2 = 4 s^2
    assert distances[-1] == pytest.approx(16.0, rel=0.05)


def test_frechet_matches_closed_form_for_two_gaussians():
    # diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    # a rotated (non-diagonal) pair: the distance is invariant under a common rotation
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    rotated = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-6)


def test_frechet_survives_rank_deficient_covariances():
    rng = np.random.default_rng(3)
    few = rng.normal(size=(5, 32))  # 5 vectors in 32 dimensions: singular covariance
    value = frechet_between(few, rng.normal(size=(6, 32)) + 1.0)
    assert np.isfinite(value) and value > 0
    assert frechet_between(few[:1], few) is None


def test_frechet_from_samples_equals_the_covariance_form():
    from lfmcdm.eval.frechet import _frechet_from_samples, gaussian_stats

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(40, 12)), 0.5 * rng.normal(size=(30, 12)) @ rng.normal(size=(12, 12)) + 0.3
    assert _frechet_from_samples(a, b) == pytest.approx(frechet_distance(*gaussian_stats(a), *gaussian_stats(b)),
                                                        rel=1e-6)
    assert _frechet_from_samples(a, a) == pytest.approx(0.0, abs=1e-9)
    wide_a, wide_b = rng.normal(size=(8, 3000)), rng.normal(size=(6, 3000)) + 0.1  # D >> N: the sample form is used
    value = frechet_between(wide_a, wide_b)
    assert value == pytest.approx(_frechet_from_samples(wide_a, wide_b)) and value > 3000 * 0.1**2


# --- diversity and motion fidelity -----------------------------------------------------------------------------------


def test_diversity_separates_collapsed_from_spread_sets():
    rng = np.random.default_rng(4)
    spread = rng.normal(size=(50, 16))
    collapsed = np.ones((50, 16)) + 0.01 * rng.normal(size=(50, 16))
    assert mean_pairwise_distance(spread) == pytest.approx(1.0, abs=0.1)  # random directions: cosine ~ 0
    assert mean_pairwise_distance(collapsed) < 0.01
    pts = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert mean_pairwise_distance(pts, "euclidean") == pytest.approx(5.0)
    assert mean_pairwise_distance(spread[:1]) is None


def test_align_curves_finds_the_lag_across_frame_rates():
    donor_fps, gen_fps, period = 50.0, 16.0, 0.8
    t_donor = np.arange(100) / donor_fps
    donor = np.cos(2 * np.pi * t_donor / period) + 0.3 * np.cos(4 * np.pi * t_donor / period)
    lag = 0.3
    t_gen = np.arange(16) / gen_fps
    generated = np.cos(2 * np.pi * (t_gen + lag) / period) + 0.3 * np.cos(4 * np.pi * (t_gen + lag) / period)
    match = align_curves(donor, donor_fps, 5.0 * generated + 100.0, gen_fps, max_lag_s=1.0, min_frames=8)
    assert match.r > 0.99 and match.lag_s == pytest.approx(lag, abs=1.0 / donor_fps)
    assert np.isnan(pearson(np.ones(5), np.arange(5)))


def test_align_at_reads_the_donor_only_from_its_anchor():
    """A curve that follows the donor from the anchor scores ~1 there; the same curve elsewhere does not."""
    donor_fps, gen_fps, period = 50.0, 16.0, 0.8
    t_donor = np.arange(150) / donor_fps
    donor = np.cos(2 * np.pi * t_donor / period)
    t_gen = np.arange(16) / gen_fps
    follows = np.cos(2 * np.pi * (t_gen + 0.3) / period)
    half_beat_off = np.cos(2 * np.pi * (t_gen + 0.7) / period)
    assert align_at(donor, donor_fps, follows, gen_fps, 0.3, 0.04, 8).r > 0.99
    assert align_at(donor, donor_fps, half_beat_off, gen_fps, 0.3, 0.04, 8).r < -0.9  # a free lag search finds 1.0
    assert align_curves(donor, donor_fps, half_beat_off, gen_fps, max_lag_s=2.0, min_frames=8).r > 0.99
    assert align_at(donor, donor_fps, follows, gen_fps, 0.3, 0.04, 8).lag_s == pytest.approx(0.3, abs=1 / donor_fps)


def test_shuffled_partners_never_pick_the_own_key():
    keys = ["a", "a", "b", "c", "b"]
    partners = shuffled_partners(keys, seed=0)
    assert all(keys[j] != k for k, j in zip(keys, partners))
    assert shuffled_partners(["a", "a"], seed=0) == [None, None]


# --- downstream EF regressor --------------------------------------------------------------------------------------


def test_ef_regressor_beats_predicting_the_mean():
    # kind: ellipse: the bounds were set on the ellipse phantom (uniform EF 15-80 %, one cavity); the
    # A4C phantom's EF (55 +/- 12 %, four chambers) is a harder target for this 250-step regressor
    cfg_ph = phantom.PhantomConfig(kind="ellipse", n_videos=40, n_frames={"low": 48, "high": 56}, size=64)
    specs = phantom.sample_specs(cfg_ph, seed=5)
    cfg = EfRegressorConfig(size=32, steps=250, repeats=1)
    videos = [prepare_video(s.name, phantom.render(s), s.fps, s.ef, cfg) for s in specs]
    train, test = videos[:28], videos[28:]
    result = fit_and_score(train, test, cfg, seed=0)
    truth = np.array([v.ef for v in test])
    mean_mae = mae(truth, np.full(len(truth), np.mean([v.ef for v in train])))
    assert result.mae < 0.5 * mean_mae, (result.mae, mean_mae)
    assert result.r2 > 0.5
    again = fit_and_score(train, test, cfg, seed=0)
    np.testing.assert_allclose(again.predictions, result.predictions, rtol=1e-5)  # seeded


def test_ef_regressor_scores_the_mean_of_its_repeats():
    rng = np.random.default_rng(0)
    cfg = EfRegressorConfig(size=8, frames=4, channels=(4,), steps=5, batch_size=4)
    videos = [EfVideo(f"v{i}", rng.random((6, 8, 8), dtype=np.float32), float(30 + 5 * i)) for i in range(6)]
    train, test = videos[:4], videos[4:]
    singles = [fit_and_score(train, test, cfg.model_copy(update={"repeats": 1}), seed=s).predictions for s in (3, 4, 5)]
    ensemble = fit_and_score(train, test, cfg.model_copy(update={"repeats": 3}), seed=3)
    assert not np.allclose(singles[0], singles[1])  # the seed matters: that is why there are repeats
    np.testing.assert_allclose(ensemble.predictions, np.mean(singles, axis=0), rtol=1e-5)


def test_ef_regressors_train_in_a_process_pool_as_they_would_alone():
    """The pool changes where a regressor trains, not what it learns: the same jobs trained one after
    another in this process, with a worker's thread count, give the same predictions.
    A set too small to train on gets empty scores without holding the others back."""
    import torch

    rng = np.random.default_rng(1)
    cfg = EfRegressorConfig(size=8, frames=4, channels=(4,), steps=5, batch_size=4, repeats=2, workers=2)
    videos = [EfVideo(f"v{i}", rng.random((6, 8, 8), dtype=np.float32), float(30 + 5 * i)) for i in range(8)]
    sets = {"a": videos[:4], "b": videos[2:6], "tiny": videos[:1]}
    test = videos[6:]
    pooled = fit_and_score_sets(sets, test, cfg, seed=7)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, n_workers(0) // 2))  # a worker's share of the cores (1 on 2 cores)
    try:
        alone = fit_and_score_sets(sets, test, cfg.model_copy(update={"workers": 1}), seed=7)
    finally:
        torch.set_num_threads(threads)
    for name in ("a", "b"):
        np.testing.assert_allclose(pooled[name].predictions, alone[name].predictions, rtol=1e-6)
        assert pooled[name].train_videos == 4
    assert not np.allclose(pooled["a"].predictions, pooled["b"].predictions)
    assert pooled["tiny"].r2 is None and pooled["tiny"].predictions is None and pooled["tiny"].train_videos == 1


# --- the stage and its report ---------------------------------------------------------------------------------


def fake_models_and_features(layout: Layout, times_s: tuple[float, ...], seed: int = 0) -> None:
    """Untrained ReID + MAFE saved like their stages save them, and the real videos' stored features."""
    import torch

    from lfmcdm.atomic import save_npy, write_parquet
    from lfmcdm.models.mafe import MAFE, save_mafe
    from lfmcdm.models.reid import save_encoder
    from lfmcdm.models.reid import build_encoder, embed_frames
    from lfmcdm.settings.mafe import MafeModelConfig
    from lfmcdm.settings.pseudo import ReidConfig
    from lfmcdm.stages.motion_bank import motion_schema

    reid = build_encoder(ReidConfig(), seed)
    save_encoder(reid, layout.model_dir("reid"))
    torch.manual_seed(seed)
    mafe = MAFE(MafeModelConfig()).eval()
    save_mafe(mafe, layout.model_dir("mafe"))
    rows = read_videos(layout)
    pairs = []
    for r in rows:
        clip = np.asarray(load_clip(layout, r["file_name"]))
        save_npy(layout.reid / f"{r['file_name']}.npy", embed_frames(reid, clip).astype(np.float16))
        ed, es = (r["ed_frame"], r["es_frame"]) if r["ed_frame"] is not None else (0, len(clip) // 3)
        pairs.append(encoders.motion_pairs(clip, (ed, es), r["fps"], times_s))
    motion = encoders.motion_vectors(mafe, pairs, batch_size=8)
    dim = motion.shape[1]
    table = pa.Table.from_arrays(
        [pa.array([r["file_name"] for r in rows]), pa.array([r["split"] for r in rows]),
         pa.FixedSizeListArray.from_arrays(pa.array(motion.reshape(-1), pa.float32()), dim),
         pa.array(["test"] * len(rows))], schema=motion_schema(dim))
    write_parquet(layout.motion, table)


def write_fake_cohort(params, layout: Layout, name: str, n: int, seed: int = 0, threshold: float | None = None) -> Path:
    """A cohort from a perfect generator: phantom renders with one video's appearance and another's motion.

    Like the MCDM, the generator plays the donor's motion from the donor's label-free ED (where its
    motion-bank trajectory starts): on the ellipse phantom the phase at time t is t * hr / 60 + phase0.
    ``threshold`` overrides the privacy threshold (None = the synthesis stage's rule).
    """
    assert params.phantom.kind == "ellipse", "the phase shift below is the ellipse phantom's"
    from datetime import datetime, timezone

    from lfmcdm.atomic import write_parquet
    from lfmcdm.data.clips import sha256_file
    from lfmcdm.models.reid import embed_frames, load_reid
    from lfmcdm.eval.privacy import PrivacyFilter
    from lfmcdm.synth.cohort import MANIFEST_SCHEMA, write_filelist

    rng = np.random.default_rng(seed)
    truth = phantom.load_truth(layout.root / params.phantom.out_dir)
    videos = read_videos(layout)
    appearances = [v for v in videos if v["split"] in ("VAL", "TEST")]
    reid = load_reid(layout.model_dir("reid"))
    privacy = PrivacyFilter.from_layout(layout, params.synthesis)
    threshold = privacy.threshold if threshold is None else threshold
    out = layout.synthetic / name
    rows = []
    for i in range(n):
        appearance = appearances[i % len(appearances)]
        donors = [v for v in videos if v["file_name"] != appearance["file_name"] and v["ed_frame"] is not None]
        donor = donors[int(rng.integers(len(donors)))]
        a, d = (phantom.spec_from_truth(truth[v["file_name"]]) for v in (appearance, donor))
        # the donor's motion: its rate and stroke, from its label-free ED on
        ed_phase = d.phase0 + donor["ed_frame"] / donor["fps"] * d.hr_bpm / 60.0
        spec = dataclasses.replace(a, name=f"{name}-{i:06d}", seed=a.seed + 1000 + i, fps=SYN_FPS, n_frames=SYN_FRAMES,
                                   hr_bpm=d.hr_bpm, ef=d.ef, phase0=float(ed_phase % 1.0))
        video = phantom.render(spec)
        path = out / "Videos" / f"{spec.name}.avi"
        write_gray(path, video, SYN_FPS)
        score = privacy.score(embed_frames(reid, video))
        rows.append({
            "sample_id": spec.name, "path": f"Videos/{spec.name}.avi", "split": ["TRAIN", "VAL", "TEST"][i % 3],
            "appearance_source": appearance["file_name"], "motion_source": donor["file_name"], "seed": spec.seed,
            "strategy": "cross", "sampler": "dpmsolver++", "steps": 25, "guidance": 2.0, "mcdm_version": "test",
            "vae_version": "test", "mafe_version": "test", "reid_version": "test", "privacy_score": score,
            "privacy_pass": score <= threshold, "donor_ef": donor["ef"], "n_frames": SYN_FRAMES, "fps": SYN_FPS,
            "height": video.shape[1], "width": video.shape[2], "sha256": sha256_file(path),
            "created_at": datetime.now(timezone.utc)})
    write_parquet(out / "manifest.parquet", pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
    write_filelist(out / "FileList.csv", [r for r in rows if r["privacy_pass"]])
    return out


def _log_fake_training_run(params, root: Path) -> None:
    """A train_vae MLflow run with a loss curve, so the report has one to draw."""
    from lfmcdm import tracking

    with tracking.stage_run(params.tracking, root, "train_vae", {}):
        for step in range(1, 6):
            tracking.log_metrics({"loss": 1.0 / step}, step=step)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A small pipeline state, evaluated by the real stage runner (metrics file, MLflow run, report)."""
    root = tmp_path_factory.mktemp("evaluate")
    # kind: ellipse: the perfect generator below starts the donor's motion at its ED by shifting the ellipse
    # phantom's phase (t * hr / 60 + phase0); the A4C phantom's beats have their own lengths
    params = tiny_params(phantom={"kind": "ellipse", "n_videos": 14, "n_frames": {"low": 48, "high": 64}},
                         synthesis={"cohort": COHORT},
                         evaluate={"ef": {"steps": 40, "min_test_videos": 4, "repeats": 2}, "report": {"grid_videos": 3}})
    ctx = StageContext(params=params, layout=Layout(root), progress=False)
    phantom_stage.run(ctx)
    ingest.run(ctx)
    pseudo_labels.write_phase(ctx)
    fake_models_and_features(ctx.layout, ctx.params.mafe.bank_times_s)
    write_fake_cohort(params, ctx.layout, COHORT, n=9)
    _log_fake_training_run(params, root)
    metrics = run_stage("evaluate", params, root=root, progress=False)
    return params, ctx.layout, metrics


def test_eval_json_has_every_key_and_sensible_values(evaluated):
    _, layout, metrics = evaluated
    written = json.loads((layout.metrics / "eval.json").read_text())
    assert set(written) == set(KEYS)
    assert written["synthetic_videos"] == 9
    # the perfect generator moves like its donor: own donor clearly beats another donor
    assert written["cavity_area_curves"] >= 6
    assert written["cavity_area_r_donor"] > 0.8
    assert written["cavity_area_r_donor"] > written["cavity_area_r_shuffled_donor"] + 0.1
    for key in ("frechet_reid_frame_distance", "frechet_reid_frame_distance_heldout_real", "diversity_reid_synthetic",
                "diversity_reid_real", "privacy_threshold", "ef_mae_real", "ef_mae_both", "ef_mae_mean_baseline"):
        assert written[key] is not None and np.isfinite(written[key]), key
    assert 0.0 <= written["privacy_pass_share"] <= 1.0
    assert written["privacy_score_max"] >= written["privacy_score_mean"]


def test_no_test_patient_reaches_a_synthetic_training_set(evaluated):
    """The fake cohort takes appearance from VAL/TEST patients: rows made from a patient the EF regressor is
    scored on (its appearance or its motion) are left out of the synthetic and both training sets."""
    import pyarrow.parquet as pq

    from lfmcdm.eval.cohort_eval import ef_test_rows

    params, layout, _ = evaluated
    written = json.loads((layout.metrics / "eval.json").read_text())
    test_names = {r["file_name"] for r in ef_test_rows(layout, params.evaluate.ef)}
    rows = [r for r in pq.read_table(layout.synthetic / COHORT / "manifest.parquet").to_pylist()
            if r["privacy_pass"] and r["donor_ef"] is not None]
    clean = [r for r in rows if not {r["appearance_source"], r["motion_source"]} & test_names]
    assert len(clean) < len(rows)  # the rule had something to exclude
    assert written["ef_train_videos_synthetic"] == len(clean)


class _MetricCells(HTMLParser):
    """Collects data-key / data-value pairs, section ids, and local src/href links."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self.sections: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self.values.setdefault(a["data-key"], []).append(a["data-value"])
        if tag == "section":
            self.sections.append(a.get("id"))
        for attr in ("src", "href"):
            if a.get(attr) and not a[attr].startswith("#"):
                self.links.append(a[attr])


def _parse(html: str) -> _MetricCells:
    parser = _MetricCells()
    parser.feed(html)
    return parser


def test_report_numbers_match_metrics_json(evaluated):
    _, layout, _ = evaluated
    written = json.loads((layout.metrics / "eval.json").read_text())
    cells = _parse((layout.reports / COHORT / "index.html").read_text())
    assert set(cells.values) == set(written)  # every metric is on the page
    for key, shown in cells.values.items():
        for value in shown:
            assert json.loads(value) == written[key], key
    assert json.loads((layout.reports / COHORT / "metrics.json").read_text()) == written


def test_report_is_a_self_contained_folder_with_every_section(evaluated):
    _, layout, _ = evaluated
    folder = layout.reports / COHORT
    cells = _parse((folder / "index.html").read_text())
    assert cells.sections == list(SECTIONS)
    for link in cells.links:
        assert not re.match(r"^(/|[a-z]+:)", link), link  # relative only: the folder can be moved or served
        assert (folder / link).is_file(), link
    for image in ("real_frames.png", "synthetic_frames.png", "cavity_curves.png", "privacy_histogram.png",
                  "ef_scatter.png", "training_curves.png"):
        assert (folder / "images" / image).stat().st_size > 1000, image
    gifs = sorted((folder / "gifs").glob("*.gif"))
    assert len(gifs) == 3
    from PIL import Image

    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == SYN_FRAMES
    curves = (folder / "plots" / "cavity_curves.csv").read_text().splitlines()
    assert curves[0] == "sample_id,time_s,donor_area_z,generated_area_z" and len(curves) > 10
    ef = (folder / "plots" / "ef_predictions.csv").read_text().splitlines()
    assert ef[0] == "file_name,ef_true,ef_pred_real,ef_pred_synthetic,ef_pred_both"


def test_report_logged_to_the_evaluate_mlflow_run(evaluated):
    import mlflow
    from mlflow.tracking import MlflowClient

    from lfmcdm import tracking

    params, layout, _ = evaluated
    mlflow.set_tracking_uri(tracking.tracking_uri(params.tracking, layout.root))
    client = MlflowClient()
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    run = client.search_runs([experiment.experiment_id], "tags.`lfmcdm.stage` = 'evaluate'")[0]
    names = {a.path for a in client.list_artifacts(run.info.run_id, f"report/{COHORT}")}
    assert f"report/{COHORT}/index.html" in names


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium installed")
def test_report_screenshot_in_headless_chromium(evaluated, tmp_path):
    _, layout, _ = evaluated
    out = tmp_path / "report.png"
    subprocess.run(["bash", str(REPO / "scripts" / "screenshot_report.sh"), str(layout.reports / COHORT / "index.html"),
                    str(out)], check=True, timeout=120)
    from PIL import Image

    with Image.open(out) as img:
        assert img.size[0] >= 1000 and img.size[1] >= 1000
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 10  # a rendered page, not a blank canvas


def test_missing_models_give_null_metrics_not_a_crash(evaluated, tmp_path):
    from lfmcdm.eval.cohort_data import load_cohort
    from lfmcdm.eval.cohort_eval import evaluate_cohort

    params, layout, _ = evaluated
    root = tmp_path / "bare"
    shutil.copytree(layout.root, root, ignore=shutil.ignore_patterns("models", "reid", "motion.parquet", "mlflow.db"))
    bare = Layout(root)
    result = evaluate_cohort(params, bare, load_cohort(bare.synthetic / COHORT), progress=False)
    m = result.metrics
    assert set(m) == set(KEYS) and m["synthetic_videos"] == 9
    for key in ("frechet_reid_frame_distance", "frechet_mafe_motion_distance", "motion_vector_cosine_donor",
                "diversity_reid_synthetic", "privacy_threshold"):
        assert m[key] is None, key
    assert m["cavity_area_r_donor"] is not None  # needs no model: phantom truth + the cavity measurement
    assert m["privacy_pass_share"] is not None  # read from the manifest
