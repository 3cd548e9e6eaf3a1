"""Cohort planning and the privacy rule, without any model."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from lfmcdm.eval.privacy import PrivacyFilter, nearest_similarity, real_threshold, video_embedding
from lfmcdm.settings.synthesis import SynthesisConfig
from lfmcdm.synth.plan import PlanError, plan_cohort, plan_hash
from lfmcdm.synth.schedule import daily_cohort_name


def _videos(n=12):
    splits = ["TRAIN"] * 8 + ["VAL"] * 2 + ["TEST"] * 2
    return [{"file_name": f"V{i:02d}", "split": splits[i % len(splits)], "ef": 20.0 + 5 * i} for i in range(n)]


def test_cross_plan_is_deterministic_and_respects_splits():
    cfg = SynthesisConfig(n_videos=10, strategy="cross")
    videos = _videos()
    names = {v["file_name"] for v in videos}
    a = plan_cohort(cfg, videos, names, seed=1)
    assert a == plan_cohort(cfg, videos, names, seed=1)
    assert a != plan_cohort(cfg, videos, names, seed=2)
    split = {v["file_name"]: v["split"] for v in videos}
    # default: appearance from held-out VAL patients (privacy; TEST is the EF test's), motion from TRAIN;
    # a row is never less held out than its appearance source
    assert all(split[s.appearance_source] == "VAL" and split[s.motion_source] == "TRAIN" for s in a)
    assert all(s.split in ("VAL", "TEST") for s in a)
    assert all(s.appearance_source != s.motion_source for s in a)
    assert len({s.sample_id for s in a}) == 10 and len({s.seed for s in a}) == 10
    ef = {v["file_name"]: v["ef"] for v in videos}
    assert all(s.donor_ef == ef[s.motion_source] for s in a)
    assert plan_hash(a, {"steps": 25}) != plan_hash(a, {"steps": 50})


def test_cross_plan_uses_every_donor_and_appearance_before_repeating_one():
    """A cohort covers its donors' EF range: 48 draws with replacement from 40 donors left 9 unused
    (docs/design.md, "Data contracts", the cohort)."""
    videos = [{"file_name": f"T{i:02d}", "split": "TRAIN", "ef": 15.0 + i} for i in range(40)]
    videos += [{"file_name": f"V{i:02d}", "split": "VAL", "ef": 50.0} for i in range(12)]
    names = {v["file_name"] for v in videos}
    plan = plan_cohort(SynthesisConfig(n_videos=48, strategy="cross"), videos, names, seed=3)
    donors = [s.motion_source for s in plan]
    appearances = [s.appearance_source for s in plan]
    assert len(set(donors[:40])) == 40 and len(set(donors[40:])) == 8
    assert all(len(set(appearances[k:k + 12])) == 12 for k in (0, 12, 24, 36))


def test_a_donor_that_is_the_appearance_is_passed_over():
    """Motion and appearance drawn from the same split: a sample never gets its own motion back."""
    videos = [{"file_name": f"T{i}", "split": "TRAIN", "ef": 40.0 + i} for i in range(3)]
    names = {v["file_name"] for v in videos}
    cfg = SynthesisConfig(n_videos=30, strategy="cross", appearance_splits=["TRAIN"], motion_splits=["TRAIN"])
    plan = plan_cohort(cfg, videos, names, seed=0)
    assert all(s.appearance_source != s.motion_source for s in plan)
    assert {s.motion_source for s in plan} == names


def test_reconstruct_and_ef_targeted():
    videos = _videos()
    names = {v["file_name"] for v in videos}
    rec = plan_cohort(SynthesisConfig(n_videos=4, strategy="reconstruct"), videos, names, seed=0)
    assert all(s.appearance_source == s.motion_source for s in rec)
    cfg = SynthesisConfig(n_videos=6, strategy="ef_targeted", ef_range={"low": 30, "high": 45})
    targeted = plan_cohort(cfg, videos, names, seed=0)
    assert all(30 <= s.donor_ef <= 45 for s in targeted)
    with pytest.raises(PlanError, match="motion donor"):
        plan_cohort(SynthesisConfig(strategy="ef_targeted", ef_range={"low": 99, "high": 100}), videos, names, 0)
    with pytest.raises(PlanError, match="ef_range"):
        plan_cohort(SynthesisConfig(strategy="ef_targeted"), videos, names, 0)


def test_privacy_threshold_uses_heldout_patients():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((20, 8))
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    heldout = rng.standard_normal((10, 8))
    heldout /= np.linalg.norm(heldout, axis=1, keepdims=True)
    threshold = real_threshold(train, heldout, 95)
    assert threshold == pytest.approx(np.percentile((heldout @ train.T).max(axis=1), 95))
    # a copy of a training patient (same frames, a little noise) scores above it; a new patient does not
    frames = np.repeat(train[3][None], 5, axis=0) + 0.01 * rng.standard_normal((5, 8))
    copy = video_embedding(frames)
    assert nearest_similarity(copy[None], train)[0] > threshold
    assert real_threshold(train, np.zeros((0, 8)), 95) == pytest.approx(
        np.percentile(nearest_similarity(train, train, exclude_self=True), 95))



def test_privacy_filter_is_the_rule_and_survives_the_bundle(tmp_path):
    """One filter: threshold from held-out patients, score of a video, verdict; saved and loaded unchanged."""
    rng = np.random.default_rng(1)
    train = rng.standard_normal((12, 8))
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    heldout = rng.standard_normal((6, 8))
    heldout /= np.linalg.norm(heldout, axis=1, keepdims=True)
    filt = PrivacyFilter.from_identities(train, heldout, 90)
    assert filt.threshold == pytest.approx(real_threshold(train, heldout, 90))
    copy = np.repeat(train[5][None], 4, axis=0) + 0.01 * rng.standard_normal((4, 8))
    assert filt.score(copy) > filt.threshold and not filt.passes(filt.score(copy))
    assert filt.passes(filt.threshold)  # the threshold itself passes: score <= threshold ships
    filt.save(tmp_path / "privacy.npz")
    back = PrivacyFilter.load(tmp_path / "privacy.npz")
    assert back.threshold == filt.threshold and back.score(copy) == pytest.approx(filt.score(copy))


def test_privacy_heldout_splits_exclude_the_protected_split():
    assert SynthesisConfig().privacy_heldout_splits == ("VAL", "TEST")
    with pytest.raises(ValueError, match="protected"):
        SynthesisConfig(privacy_heldout_splits=("VAL", "TRAIN"))

def _pairs(plan):
    return [(s.appearance_source, s.motion_source) for s in plan]


def test_daily_cohorts_get_their_own_plans():
    """The whole name seeds the plan: names that share an 8-character prefix still differ."""
    videos = _videos(40)
    names = {v["file_name"] for v in videos}
    day1, day2 = (daily_cohort_name("demo", datetime(2026, 11, d, 3, tzinfo=timezone.utc)) for d in (30, 29))
    assert (day1, day2) == ("demo-20261130", "demo-20261129")
    plans = [plan_cohort(SynthesisConfig(cohort=n, n_videos=16), videos, names, seed=7) for n in (day1, day2)]
    assert _pairs(plans[0]) != _pairs(plans[1])
    assert not {s.seed for s in plans[0]} & {s.seed for s in plans[1]}
    again = plan_cohort(SynthesisConfig(cohort=day1, n_videos=16), videos, names, seed=7)
    assert again == plans[0]


def test_daily_name_is_the_scheduled_utc_day():
    late_evening = datetime(2026, 12, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC next day
    assert daily_cohort_name("c", late_evening) == "c-20261202"
    assert daily_cohort_name("c", datetime(2026, 12, 1, 23, 30)) == "c-20261201"  # naive = UTC
    assert daily_cohort_name("c") == f"c-{datetime.now(timezone.utc):%Y%m%d}"  # run by hand: today


def test_no_heldout_patient_reaches_synthetic_train():
    videos = _videos(24)
    names = {v["file_name"] for v in videos}
    split = {v["file_name"]: v["split"] for v in videos}
    everyone = ("TRAIN", "VAL", "TEST")
    cfg = SynthesisConfig(n_videos=60, appearance_splits=everyone, motion_splits=everyone)
    plan = plan_cohort(cfg, videos, names, seed=3)
    rank = {"TRAIN": 0, "VAL": 1, "TEST": 2}
    for s in plan:
        held = max(rank[split[s.appearance_source]], rank[split[s.motion_source]])
        assert rank[s.split] >= held, s
    assert any(split[s.appearance_source] != "TRAIN" for s in plan)  # the rule was exercised...
    assert any(s.split == "TRAIN" for s in plan)  # ...and TRAIN rows remain (from TRAIN-only sources)
