"""Scoring one synthetic cohort against the real videos: quality, motion fidelity, diversity, privacy, utility.

Synthetic videos are read once, one at a time, and reduced to their features (ReID frame
embeddings, label-free phase, MAFE motion vector, cavity-area curve, a downsampled copy for the
EF regressor), so a cohort of any size streams through. Real videos are never re-encoded: their
features are the pipeline's stored ones (``data/interim/reid``, the motion bank), so both sides
come from the same encoders. Every metric whose inputs are missing stays ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lfmcdm.config import Params
from lfmcdm.data import phantom
from lfmcdm.data.tables import load_clip
from lfmcdm.eval import encoders
from lfmcdm.eval.cohort_data import Cohort, motion_bank, real_rows, reid_frames
from lfmcdm.eval.diversity import mean_pairwise_distance
from lfmcdm.eval.ef_regressor import EfResult, EfVideo, fit_and_score_sets, mae, prepare_video
from lfmcdm.eval.frechet import frechet_between
from lfmcdm.eval.metric_catalog import empty_metrics
from lfmcdm.eval.motion_fidelity import CurveMatch, align_at, nanmean_or_none, rowwise_cosine, shuffled_partners
from lfmcdm.eval.privacy import PrivacyFilter, video_embedding
from lfmcdm.layout import Layout

@dataclass
class Encoders:
    """The models and measurements evaluation applies to synthetic videos (None = not available)."""

    reid: object | None
    mafe: object | None
    cavity: object | None  # clip -> cavity area per frame
    phase_cfg: object
    batch_size: int
    bank_times_s: tuple[float, ...]  # the motion bank's trajectory times (mafe.bank_times_s)

    @classmethod
    def load(cls, params: Params, layout: Layout, device) -> "Encoders":
        return cls(encoders.load_reid_model(layout, device), encoders.load_mafe_model(layout, device),
                   encoders.cavity_measure(params.diffusion.motion_eval.cavity), params.pseudo.phase,
                   params.evaluate.embed_batch, params.mafe.bank_times_s)


@dataclass
class SyntheticSample:
    """One generated video reduced to what the metrics need."""

    row: dict
    reid_frames: np.ndarray | None = None
    identity: np.ndarray | None = None
    phase: tuple[int, int] | None = None
    motion: np.ndarray | None = None
    cavity: np.ndarray | None = None
    ef_video: EfVideo | None = None

    @property
    def sample_id(self) -> str:
        return self.row["sample_id"]


@dataclass
class RealVideos:
    """Stored features of a set of real videos (rows of videos.parquet)."""

    rows: list[dict]
    frames: list[np.ndarray]  # ReID frame embeddings of the rows that have them
    identities: np.ndarray | None  # (N, D) one identity vector per video with embeddings
    motion: np.ndarray | None  # (M, D) motion-bank vectors of the rows in the bank

    @property
    def names(self) -> list[str]:
        return [r["file_name"] for r in self.rows]


@dataclass
class Evaluation:
    """Metrics plus the per-sample evidence the report draws."""

    metrics: dict
    samples: list[SyntheticSample]
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # sample_id -> generated video, for figures
    curves: list[tuple[str, CurveMatch, CurveMatch | None]] = field(default_factory=list)
    motion_cosines: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    ef_results: dict[str, EfResult] = field(default_factory=dict)
    ef_test: list[EfVideo] = field(default_factory=list)
    privacy_heldout_scores: np.ndarray | None = None
    curve_source: str = "none"


# ---- reading features ----------------------------------------------------------------------
def real_videos(layout: Layout, splits: tuple[str, ...], bank: dict[str, np.ndarray]) -> RealVideos:
    rows = real_rows(layout, splits)
    frames = [f for f in (reid_frames(layout, r["file_name"]) for r in rows) if f is not None]
    identities = np.stack([video_embedding(f) for f in frames]) if frames else None
    motion = [bank[r["file_name"]] for r in rows if r["file_name"] in bank]
    return RealVideos(rows, frames, identities, np.stack(motion) if motion else None)


def synthetic_features(cohort: Cohort, enc: Encoders, ef_cfg, keep: int, progress: bool) -> tuple[list[SyntheticSample], dict]:
    """Stream the cohort's videos once; keep the first ``keep`` videos whole for the report."""
    samples, examples = [], {}
    pending: list[tuple[SyntheticSample, list[tuple[np.ndarray, np.ndarray]]]] = []  # motion pairs, encoded in bulk
    for row, video in tqdm(cohort.videos(), total=len(cohort.shipped), desc="evaluate", unit="video", disable=not progress):
        sample = SyntheticSample(row)
        fps = float(row["fps"])
        if enc.reid is not None:
            sample.reid_frames = encoders.reid_frame_embeddings(enc.reid, video, enc.batch_size)
            sample.identity = video_embedding(sample.reid_frames)
        sample.phase = encoders.label_free_phase(video, fps, enc.phase_cfg)
        if sample.phase is not None and enc.mafe is not None:
            pending.append((sample, encoders.motion_pairs(video, sample.phase, fps, enc.bank_times_s)))
        if enc.cavity is not None:
            sample.cavity = enc.cavity(video)
        listed = cohort.filelist.get(sample.sample_id)
        if listed is not None and listed["EF"] is not None:
            sample.ef_video = prepare_video(sample.sample_id, video, fps, listed["EF"], ef_cfg)
        if len(examples) < keep:
            examples[sample.sample_id] = video
        samples.append(sample)
    if pending:
        vectors = encoders.motion_vectors(enc.mafe, [pairs for _, pairs in pending], enc.batch_size)
        for (sample, _), vector in zip(pending, vectors):
            sample.motion = vector
    return samples, examples


class DonorCurves:
    """Cavity-area curve of a real (donor) video: phantom truth when known, else measured on its clip."""

    def __init__(self, layout: Layout, truth: dict[str, dict], rows: dict[str, dict], measure) -> None:
        self.layout, self.truth, self.rows, self.measure = layout, truth, rows, measure
        self._cache: dict[str, tuple[np.ndarray, float] | None] = {}
        self.sources: set[str] = set()

    def get(self, name: str) -> tuple[np.ndarray, float] | None:
        """(area per frame, fps) or None."""
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def anchor_s(self, name: str) -> float | None:
        """Where the donor's motion-bank trajectory starts (its label-free ED, s); None without one."""
        row = self.rows.get(name)
        if row is None or row.get("ed_frame") is None or not row.get("fps"):
            return None
        return float(row["ed_frame"]) / float(row["fps"])

    def usable(self, name: str) -> bool:
        """Has both a cavity curve and an anchor: can be matched."""
        return self.anchor_s(name) is not None and self.get(name) is not None

    def match(self, name: str, generated: np.ndarray, gen_fps: float, tolerance_s: float, min_frames: int) -> CurveMatch:
        """``generated`` against usable donor ``name``'s curve from its anchor."""
        return align_at(*self.get(name), generated, gen_fps, self.anchor_s(name), tolerance_s, min_frames)

    def _load(self, name: str) -> tuple[np.ndarray, float] | None:
        if name in self.truth:
            self.sources.add("phantom truth")
            return np.asarray(self.truth[name]["cavity_area"], np.float64), float(self.truth[name]["fps"])
        if self.measure is None or name not in self.rows or not self.layout.clip(name).exists():
            return None
        self.sources.add("measured")
        return self.measure(np.asarray(load_clip(self.layout, name))), float(self.rows[name]["fps"])


def phantom_truth(params: Params, root: Path) -> dict[str, dict]:
    """Ground truth of the phantom dataset (empty for real data): same folder as ingest's source."""
    if params.data.echonet_root is not None:
        return {}
    return phantom.load_truth(Layout(root).source_root(params))


# ---- metric groups -------------------------------------------------------------------------
def _stack(vectors: list[np.ndarray | None]) -> np.ndarray | None:
    present = [v for v in vectors if v is not None]
    return np.stack(present) if present else None


def spread_frames(frames: list[np.ndarray], per_video: int | None) -> np.ndarray | None:
    """All videos' frame embeddings, ``per_video`` evenly spaced ones from each (so long clips don't dominate)."""
    if not frames:
        return None
    if per_video is None:
        return np.concatenate(frames)
    return np.concatenate([f[np.unique(np.linspace(0, len(f) - 1, min(per_video, len(f))).round().astype(int))]
                           for f in frames])


def quality_metrics(reference: RealVideos, heldout: RealVideos, samples: list[SyntheticSample], eps: float,
                    per_video: int | None) -> dict:
    ref_frames = spread_frames(reference.frames, per_video)
    syn_frames = spread_frames([s.reid_frames for s in samples if s.reid_frames is not None], per_video)
    held_frames = spread_frames(heldout.frames, per_video)
    syn_motion = _stack([s.motion for s in samples])
    return {
        "frechet_reid_frame_distance": frechet_between(ref_frames, syn_frames, eps),
        "frechet_reid_frame_distance_heldout_real": frechet_between(ref_frames, held_frames, eps),
        "frechet_mafe_motion_distance": frechet_between(reference.motion, syn_motion, eps),
        "frechet_mafe_motion_distance_heldout_real": frechet_between(reference.motion, heldout.motion, eps),
    }


def diversity_metrics(heldout: RealVideos, samples: list[SyntheticSample]) -> dict:
    """Synthetic vs *held-out* real: the encoders were trained on the reference (TRAIN) videos, and
    contrastive ReID training pushes exactly those apart, so only unseen videos compare fairly."""
    return {
        "diversity_reid_synthetic": mean_pairwise_distance(_stack([s.identity for s in samples])),
        "diversity_reid_real": mean_pairwise_distance(heldout.identities),
        "diversity_mafe_motion_synthetic": mean_pairwise_distance(_stack([s.motion for s in samples])),
        "diversity_mafe_motion_real": mean_pairwise_distance(heldout.motion),
    }


def motion_vector_fidelity(samples: list[SyntheticSample], bank: dict[str, np.ndarray], center: np.ndarray | None,
                           seed: int) -> tuple[dict, dict]:
    """Cosine of each generated motion vector to its donor's and to a shuffled donor's, both centred.

    MAFE motion vectors share a large common component (every heart contracts), so raw cosines
    are near 1 for any pair; subtracting the real reference mean leaves what is specific to a motion.
    """
    scored = [s for s in samples if s.motion is not None and s.row["motion_source"] in bank]
    partners = shuffled_partners([s.row["motion_source"] for s in scored], seed)
    offset = np.zeros_like(scored[0].motion) if scored and center is None else center
    per_sample: dict[str, tuple[float, float | None]] = {}
    for s, j in zip(scored, partners):
        own = float(rowwise_cosine((s.motion - offset)[None], (bank[s.row["motion_source"]] - offset)[None])[0])
        other = None if j is None else float(
            rowwise_cosine((s.motion - offset)[None], (bank[scored[j].row["motion_source"]] - offset)[None])[0])
        per_sample[s.sample_id] = (own, other)
    appearance = [float(rowwise_cosine((s.motion - offset)[None], (bank[s.row["appearance_source"]] - offset)[None])[0])
                  for s in scored if s.row["appearance_source"] in bank]
    metrics = {"motion_vector_cosine_donor": nanmean_or_none([v[0] for v in per_sample.values()]),
               "motion_vector_cosine_shuffled_donor": nanmean_or_none([v[1] for v in per_sample.values()]),
               "motion_vector_cosine_appearance_source": nanmean_or_none(appearance)}
    return metrics, per_sample


def cavity_fidelity(samples: list[SyntheticSample], donors: DonorCurves, tolerance_s: float, min_frames: int,
                    seed: int) -> tuple[dict, list]:
    """Pearson r of each generated cavity curve with its donor's, from where the donor's motion starts.

    The baseline scores the same generated curve against another sample's donor, read the same way
    (from that donor's own anchor): the margin between the two is what the motion conditioning buys.
    """
    scored = [s for s in samples if s.cavity is not None and donors.usable(s.row["motion_source"])]
    partners = shuffled_partners([s.row["motion_source"] for s in scored], seed)
    matches = []
    for s, j in zip(scored, partners):
        fps = float(s.row["fps"])
        own = donors.match(s.row["motion_source"], s.cavity, fps, tolerance_s, min_frames)
        other = None if j is None else donors.match(scored[j].row["motion_source"], s.cavity, fps, tolerance_s,
                                                    min_frames)
        matches.append((s.sample_id, own, other))
    own_r = [m[1].r for m in matches]
    metrics = {"cavity_area_r_donor": nanmean_or_none(own_r),
               "cavity_area_r_shuffled_donor": nanmean_or_none([m[2].r for m in matches if m[2] is not None]),
               "cavity_area_curves": int(np.isfinite(np.asarray(own_r, np.float64)).sum()) if matches else 0}
    return metrics, matches


def privacy_filter(layout: Layout, params: Params) -> PrivacyFilter | None:
    """The synthesize stage's own filter (same splits, same percentile); None without enough real identities."""
    try:
        return PrivacyFilter.from_layout(layout, params.synthesis)
    except (ValueError, FileNotFoundError):  # no ReID embeddings (pseudo_labels not run), or too few identities
        return None


def privacy_metrics(cohort: Cohort, filt: PrivacyFilter | None, heldout: RealVideos) -> tuple[dict, np.ndarray | None]:
    """The manifest's privacy scores, the filter's threshold, and held-out real patients' scores for contrast."""
    scores = np.asarray([r["privacy_score"] for r in cohort.manifest if r["privacy_score"] is not None], np.float64)
    passed = [bool(r["privacy_pass"]) for r in cohort.manifest if r["privacy_pass"] is not None]
    threshold = filt.threshold if filt is not None else None
    held = filt.scores(heldout.identities).astype(np.float64) if filt is not None and heldout.identities is not None else None
    return {
        "privacy_pass_share": float(np.mean(passed)) if passed else None,
        "privacy_score_mean": float(scores.mean()) if len(scores) else None,
        "privacy_score_max": float(scores.max()) if len(scores) else None,
        "privacy_threshold": threshold,
        "privacy_heldout_real_score_mean": float(held.mean()) if held is not None and len(held) else None,
    }, held


def ef_test_rows(layout: Layout, cfg) -> list[dict]:
    """Real videos with EF the regressors are scored on: test splits, plus VAL when those are too few."""
    rows = [r for r in real_rows(layout, cfg.test_splits) if r["ef"] is not None]
    if len(rows) < cfg.min_test_videos and "VAL" not in cfg.test_splits:
        rows += [r for r in real_rows(layout, ("VAL",)) if r["ef"] is not None]
    return rows


def _real_ef_videos(layout: Layout, rows: list[dict], cfg) -> list[EfVideo]:
    return [prepare_video(r["file_name"], load_clip(layout, r["file_name"]), float(r["fps"]), float(r["ef"]), cfg)
            for r in rows]


def ef_metrics(layout: Layout, samples: list[SyntheticSample], cfg, seed: int, device,
               progress: bool = False) -> tuple[dict, dict, list[EfVideo]]:
    """Train the EF regressor on real / synthetic / both; score each on the same real test videos.

    Synthetic rows made from a test patient (its appearance or its motion) are left out of every set
    trained on: the donor EF *is* that test video's label, carried by its motion, and its appearance
    is that patient's; either would score the regressor on a patient it has seen.
    """
    test_rows = ef_test_rows(layout, cfg)
    test_names = {r["file_name"] for r in test_rows}
    train_rows = [r for r in real_rows(layout, cfg.train_splits) if r["ef"] is not None and r["file_name"] not in test_names]
    test, real = _real_ef_videos(layout, test_rows, cfg), _real_ef_videos(layout, train_rows, cfg)
    synthetic = [s.ef_video for s in samples if s.ef_video is not None
                 and not {s.row["motion_source"], s.row["appearance_source"]} & test_names]
    results = fit_and_score_sets({"real": real, "synthetic": synthetic, "both": real + synthetic}, test, cfg, seed,
                                 device, progress)
    truth = np.array([v.ef for v in test])
    baseline = mae(truth, np.full(len(truth), np.mean([v.ef for v in real]))) if real and test else None
    metrics = {"ef_test_videos": len(test), "ef_train_videos_real": len(real), "ef_train_videos_synthetic": len(synthetic),
               "ef_mae_mean_baseline": baseline}
    for name, res in results.items():
        metrics[f"ef_mae_{name}"], metrics[f"ef_r2_{name}"] = res.mae, res.r2
    return metrics, results, test


# ---- everything ----------------------------------------------------------------------------
def evaluate_cohort(params: Params, layout: Layout, cohort: Cohort, device="cpu", progress: bool = True) -> Evaluation:
    """All eval.json metrics of ``cohort`` plus the evidence for the report."""
    cfg = params.evaluate
    seed = params.seed + cfg.seed
    enc = Encoders.load(params, layout, device)
    keep = max(cfg.report.grid_videos, cfg.report.animated_samples, cfg.report.curve_samples)
    samples, examples = synthetic_features(cohort, enc, cfg.ef, keep, progress)
    bank = motion_bank(layout)
    reference = real_videos(layout, cfg.reference_splits, bank)
    heldout = real_videos(layout, cfg.heldout_splits, bank)

    metrics = empty_metrics()
    metrics["synthetic_videos"] = len(samples)
    metrics["real_reference_videos"] = len(reference.rows)
    metrics["synthetic_phase_ok_share"] = float(np.mean([s.phase is not None for s in samples])) if samples else None
    metrics.update(quality_metrics(reference, heldout, samples, cfg.frechet_eps, cfg.frechet_frames_per_video))
    metrics.update(diversity_metrics(heldout, samples))
    center = reference.motion.mean(axis=0) if reference.motion is not None else None
    vector_metrics, cosines = motion_vector_fidelity(samples, bank, center, seed)
    metrics.update(vector_metrics)
    all_rows = {r["file_name"]: r for r in real_rows(layout, ("TRAIN", "VAL", "TEST"))}
    donors = DonorCurves(layout, phantom_truth(params, layout.root), all_rows, enc.cavity)
    curve_metrics, curves = cavity_fidelity(samples, donors, cfg.anchor_tolerance_s, cfg.min_curve_frames, seed)
    metrics.update(curve_metrics)
    privacy, held_scores = privacy_metrics(cohort, privacy_filter(layout, params), heldout)
    metrics.update(privacy)
    ef, ef_results, ef_test = ef_metrics(layout, samples, cfg.ef, seed, device, progress)
    metrics.update(ef)
    return Evaluation(metrics, samples, examples, curves, cosines, ef_results, ef_test, held_scores,
                      " + ".join(sorted(donors.sources)) or "none")
