"""Every key of ``metrics/eval.json``: its group, label, meaning and direction - written once.

The stage starts from :func:`empty_metrics` (all null) so a key is never omitted, and the HTML
report lays its tables out from this list, so the file and the report cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    key: str
    group: str
    label: str
    help: str
    better: Literal["lower", "higher", "none"] = "none"


GROUPS = ("Cohort", "Quality (Fréchet distances)", "Motion fidelity", "Diversity", "Privacy", "Downstream EF regression")

_M = MetricInfo
_EF_ON_TEST = "EF {} on real test videos (mean prediction of evaluate.ef.repeats regressors)"

CATALOG: tuple[MetricInfo, ...] = (
    _M("synthetic_videos", "Cohort", "synthetic videos evaluated", "shipped (privacy-passing) videos of the cohort that were scored"),
    _M("real_reference_videos", "Cohort", "real reference videos", "real videos the cohort is compared with (evaluate.reference_splits)"),
    _M("synthetic_phase_ok_share", "Cohort", "share with a label-free ED/ES",
       "synthetic videos on which the label-free phase estimator finds an ED->ES cycle (needed for their motion vector)", "higher"),

    _M("frechet_reid_frame_distance", "Quality (Fréchet distances)", "ReID frames: synthetic vs real",
       "Fréchet distance between Gaussians fitted to ReID frame embeddings of synthetic and real reference frames "
       "(the project's own encoder, not Inception: not comparable with published FID)", "lower"),
    _M("frechet_reid_frame_distance_heldout_real", "Quality (Fréchet distances)", "ReID frames: held-out real vs real",
       "the same distance for held-out real videos: what 'indistinguishable from real' scores", "lower"),
    _M("frechet_mafe_motion_distance", "Quality (Fréchet distances)", "MAFE motion: synthetic vs real",
       "Fréchet distance between MAFE motion vectors of real reference videos (motion bank) and of synthetic videos "
       "(same MAFE, each video's motion trajectory from its label-free ED); few vectors in many dimensions: "
       "noisy, compare with the floor",
       "lower"),
    _M("frechet_mafe_motion_distance_heldout_real", "Quality (Fréchet distances)", "MAFE motion: held-out real vs real",
       "the same distance for held-out real videos", "lower"),

    _M("motion_vector_cosine_donor", "Motion fidelity", "motion cosine to own donor",
       "mean cosine between the donor's motion-bank vector and the generated video's motion vector, both centred on "
       "the real reference mean (raw MAFE vectors share a large common component)", "higher"),
    _M("motion_vector_cosine_shuffled_donor", "Motion fidelity", "motion cosine to another donor",
       "the same against a different sample's donor: fidelity means the own donor scores clearly higher"),
    _M("motion_vector_cosine_appearance_source", "Motion fidelity", "motion cosine to appearance source",
       "the same against the appearance source's vector: high here means the motion vector follows the anatomy "
       "(appearance) more than the motion"),
    _M("cavity_area_r_donor", "Motion fidelity", "cavity-area r with own donor",
       "mean Pearson r between the donor's cavity-area curve (phantom truth, else measured) resampled to the generated "
       "frame times from where its motion starts (its label-free ED, where the generated video starts too), and the "
       "generated video's measured curve", "higher"),
    _M("cavity_area_r_shuffled_donor", "Motion fidelity", "cavity-area r with another donor",
       "the same with another sample's donor, read from that donor's own ED: the margin is what following "
       "the own donor's motion buys"),
    _M("cavity_area_curves", "Motion fidelity", "curves compared", "generated videos with a cavity-area correlation"),

    _M("diversity_reid_synthetic", "Diversity", "ReID: synthetic",
       "mean pairwise cosine distance of synthetic videos' ReID identity vectors", "higher"),
    _M("diversity_reid_real", "Diversity", "ReID: held-out real",
       "the same for held-out real videos (unseen by the encoders, like the synthetic ones)"),
    _M("diversity_mafe_motion_synthetic", "Diversity", "MAFE motion: synthetic",
       "mean pairwise cosine distance of synthetic videos' motion vectors", "higher"),
    _M("diversity_mafe_motion_real", "Diversity", "MAFE motion: held-out real", "the same for held-out real videos' motion bank"),

    _M("privacy_pass_share", "Privacy", "share passing the filter",
       "synthetic videos no more similar to their nearest training video than the threshold (manifest privacy_pass)", "higher"),
    _M("privacy_score_mean", "Privacy", "mean nearest-training similarity",
       "mean ReID cosine similarity of a synthetic video to its nearest training video (manifest privacy_score)", "lower"),
    _M("privacy_score_max", "Privacy", "max nearest-training similarity", "the most training-like synthetic video", "lower"),
    _M("privacy_threshold", "Privacy", "threshold",
       "synthesis.privacy_percentile of the real-vs-real nearest-neighbour similarity among training videos"),
    _M("privacy_heldout_real_score_mean", "Privacy", "held-out real: mean nearest-training similarity",
       "the same score for held-out real patients: how similar a genuinely different person is"),

    _M("ef_test_videos", "Downstream EF regression", "real test videos", "real videos the regressors are scored on"),
    _M("ef_train_videos_real", "Downstream EF regression", "training videos (a) real", "real training videos with EF"),
    _M("ef_train_videos_synthetic", "Downstream EF regression", "training videos (b) synthetic",
       "privacy-passing FileList.csv rows with a donor EF made from no test patient (neither motion nor appearance)"),
    _M("ef_mae_mean_baseline", "Downstream EF regression", "MAE: predict the training mean",
       "EF MAE (percentage points) of always predicting the real training mean", "lower"),
    _M("ef_mae_real", "Downstream EF regression", "MAE (a) trained on real", _EF_ON_TEST.format("MAE"), "lower"),
    _M("ef_r2_real", "Downstream EF regression", "R² (a) trained on real", _EF_ON_TEST.format("R²"), "higher"),
    _M("ef_mae_synthetic", "Downstream EF regression", "MAE (b) trained on synthetic", _EF_ON_TEST.format("MAE"), "lower"),
    _M("ef_r2_synthetic", "Downstream EF regression", "R² (b) trained on synthetic", _EF_ON_TEST.format("R²"), "higher"),
    _M("ef_mae_both", "Downstream EF regression", "MAE (c) trained on both", _EF_ON_TEST.format("MAE"), "lower"),
    _M("ef_r2_both", "Downstream EF regression", "R² (c) trained on both", _EF_ON_TEST.format("R²"), "higher"),
)

KEYS: tuple[str, ...] = tuple(m.key for m in CATALOG)
BY_KEY: dict[str, MetricInfo] = {m.key: m for m in CATALOG}


def empty_metrics() -> dict[str, float | int | None]:
    """Every eval.json key, null: what cannot be computed stays null, never disappears."""
    return dict.fromkeys(KEYS)


def by_group(metrics: dict) -> list[tuple[str, list[tuple[MetricInfo, object]]]]:
    """(group, [(info, value)]) in catalog order, for the report's tables."""
    return [(g, [(m, metrics.get(m.key)) for m in CATALOG if m.group == g]) for g in GROUPS]
