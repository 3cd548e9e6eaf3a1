"""The apical four-chamber phantom's anatomy and timing truth, and its image statistics.

Each test pins one property the label-free phase relies on being *hard* or *true*: atria in
anti-phase with the ventricles, leaflets closed in systole and open in diastole, the valve plane
moving towards the apex, and frames that look like real A4C clips (docs/design.md, "Real-echo
reference statistics").
"""

from __future__ import annotations

import numpy as np
import pytest

from lfmcdm.config import PhantomConfig
from lfmcdm.data import phantom, phantom_a4c


def _specs(n: int, seed: int, frames: int = 60, **a4c) -> list[phantom_a4c.A4cSpec]:
    cfg = PhantomConfig(n_videos=n, n_frames={"low": frames, "high": frames}, a4c=a4c)
    return phantom.sample_specs(cfg, seed)


@pytest.fixture(scope="module")
def specs() -> list[phantom_a4c.A4cSpec]:
    return _specs(6, seed=21)


def test_atria_fill_while_the_ventricles_empty(specs):
    for spec in specs:
        masks = phantom_a4c.label_masks(spec)
        lv = masks["lv"].sum(axis=(1, 2)).astype(float)
        rv = masks["rv"].sum(axis=(1, 2)).astype(float)
        atria = (masks["la"].sum(axis=(1, 2)) + masks["ra"].sum(axis=(1, 2))).astype(float)
        assert np.corrcoef(lv, rv)[0, 1] > 0.8  # the ventricles contract together
        assert np.corrcoef(lv, atria)[0, 1] < -0.6  # ... while the atria fill
        ed, es = phantom.phase_frames(spec)
        for e in ed:
            later = [s for s in es if s > e]
            if later:
                assert atria[later[0]] > 1.1 * atria[e]
                assert lv[e] > 1.03 * lv[later[0]]


def test_leaflets_are_closed_in_systole_and_open_in_diastole(specs):
    spec = specs[0]
    anat, curves = phantom_a4c.anatomy(spec), phantom_a4c.frame_curves(spec)
    phase = np.mod(curves["phi"], 1.0)
    systole = phase < phantom_a4c.SYSTOLE_FRACTION
    assert systole.any() and (~systole).any()
    assert np.all(curves["o"][systole] == 0)
    for t in range(spec.n_frames):
        segs = phantom_a4c._leaflets(spec, anat, curves, t)
        # how far the leaflet tips reach towards the apex, relative to their hinges (heart axis u)
        reach = [float(np.dot(hinge - tip, anat.d)) / np.linalg.norm(tip - hinge) for hinge, tip in segs]
        if systole[t]:
            assert max(reach) < 0.0  # closed: tips bow away from the apex, towards the atria
        elif curves["o"][t] > 0.7:
            assert min(reach) > 0.5  # open: swung into the ventricles
    # E wave early in diastole, partial closure (diastasis), A wave (atrial kick) late
    u = np.linspace(0, 1, 101)
    _, _, o = phantom_a4c.cycle_curves(phantom_a4c.SYSTOLE_FRACTION + u * (1 - phantom_a4c.SYSTOLE_FRACTION))
    early, mid, late = o[(u > 0.1) & (u < 0.25)].max(), o[(u > 0.5) & (u < 0.65)].max(), o[(u > 0.8) & (u < 0.95)].max()
    assert early > 0.9 and late > 0.6 and mid < 0.5


def test_valve_plane_moves_towards_the_apex_and_walls_thicken(specs):
    spec = specs[1]
    curves = phantom_a4c.frame_curves(spec)
    ed, es = phantom.phase_frames(spec)
    e = ed[0]
    s = next(x for x in es if x > e) if any(x > e for x in es) else es[0]
    assert curves["s_long"][s] < curves["s_long"][e] - 0.03
    # septal myocardium between LV and RV blood is thicker at ES than at ED (mid-ventricle level)
    masks = phantom_a4c.label_masks(spec, [e, s])
    anat = phantom_a4c.anatomy(spec)
    ys, xs = np.mgrid[0:spec.size, 0:spec.size]
    u, _ = phantom_a4c.to_heart(anat, xs.astype(float), ys.astype(float))
    band = np.abs(u - 0.8 * spec.a_lv) < 2
    def septal_gap(i):
        return (band & ~masks["lv"][i] & ~masks["rv"][i]).sum()
    assert septal_gap(1) > septal_gap(0)


def test_enlarged_atria_knob_enlarges_only_the_atria():
    normal, big = _specs(1, seed=5)[0], _specs(1, seed=5, atria_scale=1.6)[0]
    m0, m1 = phantom_a4c.label_masks(normal, [0]), phantom_a4c.label_masks(big, [0])
    assert m1["la"].sum() > 1.5 * m0["la"].sum()
    assert m1["lv"].sum() == m0["lv"].sum()


def test_frames_match_real_echo_statistics():
    """Sector share, dark share, gray level, LV size/position/ratio near the reference (medians over videos)."""
    stats = []
    for spec in _specs(12, seed=3, frames=40):
        video = phantom_a4c.render(spec)
        fan = phantom_a4c.sector(spec)
        lv = phantom_a4c.label_masks(spec)["lv"]
        area = lv.sum(axis=(1, 2))
        ed, es = phantom.phase_frames(spec)
        ys, xs = np.nonzero(lv[ed[0]])
        pixels = video[:, fan]
        stats.append([fan.mean(), (pixels < 20).mean(), np.median(pixels), area[ed[0]] / spec.size**2,
                      area.min() / area.max(), xs.mean(), ys.mean()])
        outside = video[0][~fan]
        assert 0 < (outside > 100).sum() < 0.01 * outside.size  # small bright marks outside the fan
    fan_share, dark, gray, lv_share, ratio, cx, cy = np.median(np.array(stats), axis=0)
    assert 0.46 <= fan_share <= 0.70
    assert 0.30 <= dark <= 0.54
    assert 17 <= gray <= 61
    assert 0.07 <= lv_share <= 0.19
    assert 0.40 <= ratio <= 0.78
    assert 55 <= cx <= 70 and 38 <= cy <= 64


def test_generation_is_fast_enough_to_be_vectorised():
    """Not a timing assertion: the frame loop must not call the Newton inverse per pixel (shape check)."""
    spec = _specs(1, seed=2, frames=8)[0]
    anat, curves = phantom_a4c.anatomy(spec), phantom_a4c.frame_curves(spec)
    xs = np.linspace(10, 100, 50)
    xr, yr = phantom_a4c.backward_map(anat, curves, 3, xs, xs)
    fx, fy = phantom_a4c.forward_map(anat, curves, 3, xr, yr)
    assert np.abs(fx - xs).max() < 1e-3 and np.abs(fy - xs).max() < 1e-3  # forward is the inverse of backward
