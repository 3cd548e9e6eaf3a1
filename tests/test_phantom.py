"""The phantom EchoNet folder, read back with plain csv and PyAV as a stranger would."""

import csv

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from lfmcdm.data import phantom
from lfmcdm.data.echonet import FILELIST_COLUMNS, TRACING_COLUMNS

from .conftest import tiny_params


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_layout_matches_echonet(phantom_dir):
    rows = _rows(phantom_dir / "FileList.csv")
    with open(phantom_dir / "FileList.csv") as f:
        assert f.readline().strip().split(",") == FILELIST_COLUMNS
    assert len(rows) == 8
    assert {r["Split"] for r in rows} == {"TRAIN", "VAL", "TEST"}
    for row in rows:
        path = phantom_dir / "Videos" / f"{row['FileName']}.avi"
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "mjpeg"
            # the file's rate is FileList's FPS; a4c videos vary it around 50 fps as EchoNet's do
            assert float(stream.average_rate) == float(row["FPS"])
            assert 47.0 <= float(row["FPS"]) <= 53.0
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(frames) == int(row["NumberOfFrames"])
        assert frames[0].shape == (int(row["FrameHeight"]), int(row["FrameWidth"]), 3) == (112, 112, 3)
        # grayscale stored as 3 channels, as EchoNet does
        assert np.abs(frames[0].astype(int)[..., 0] - frames[0][..., 2]).mean() < 3
        ef, esv, edv = float(row["EF"]), float(row["ESV"]), float(row["EDV"])
        assert 15 <= ef <= 80 and 0 < esv < edv
        assert abs(ef - 100 * (1 - esv / edv)) < 0.01


def test_tracings_have_axis_and_20_chords_at_two_frames(phantom_dir):
    rows = _rows(phantom_dir / "VolumeTracings.csv")
    with open(phantom_dir / "VolumeTracings.csv") as f:
        assert f.readline().strip().split(",") == TRACING_COLUMNS
    by_file = {}
    for row in rows:
        by_file.setdefault(row["FileName"], []).append(int(row["Frame"]))
    assert len(by_file) == 8
    for name, frames in by_file.items():
        assert name.endswith(".avi")  # EchoNet's VolumeTracings names include the extension
        assert len(set(frames)) == 2 and all(frames.count(f) == 21 for f in set(frames))


def test_truth_lv_follows_phase(phantom_dir):
    """Every beat's ED is the LV's local volume maximum and its ES the minimum; FileList's EF is the traced beat's."""
    truth = phantom.load_truth(phantom_dir)
    filelist = {r["FileName"]: r for r in _rows(phantom_dir / "FileList.csv")}
    traced = {}
    for r in _rows(phantom_dir / "VolumeTracings.csv"):
        traced.setdefault(r["FileName"][:-4], set()).add(int(r["Frame"]))
    assert len(truth) == 8
    for name, row in truth.items():
        assert row["kind"] == "a4c"
        area, volume = np.array(row["lv_area"]), np.array(row["lv_volume"])
        assert np.array_equal(area, np.array(row["cavity_area"]))  # the cavity curve evaluation uses is the LV's
        assert row["ed_frames"] and row["es_frames"]
        for ed in row["ed_frames"]:
            assert volume[ed] == volume[max(0, ed - 2): ed + 3].max()
        for es in row["es_frames"]:
            assert volume[es] == volume[max(0, es - 2): es + 3].min()
        for ed in row["ed_frames"]:
            later = [es for es in row["es_frames"] if es > ed]
            if later:
                assert area[ed] > 1.2 * area[later[0]]  # a real systole between them
        ed_t, es_t = sorted(traced[name], key=lambda f: -volume[f])
        f = filelist[name]
        assert float(f["EDV"]) == pytest.approx(volume[ed_t], abs=1e-3)
        assert float(f["ESV"]) == pytest.approx(volume[es_t], abs=1e-3)
        assert 20 < float(f["EDV"]) < 400


def test_ellipse_kind_keeps_the_v1_phantom(tmp_path):
    """``kind: ellipse``: cavity scaled by s(t), the area ratio matches the EF (V ~ A^1.5)."""
    cfg = tiny_params(phantom={"kind": "ellipse", "n_videos": 3}).phantom
    phantom.write_dataset(cfg, tmp_path, seed=0, progress=False)
    truth = phantom.load_truth(tmp_path)
    for row in truth.values():
        assert row["kind"] == "ellipse"
        area = np.array(row["cavity_area"])
        spec = phantom.spec_from_truth(row)
        assert isinstance(spec, phantom.PhantomSpec)
        scale = phantom.scale_curve(spec)
        for ed in row["ed_frames"]:
            later_es = [es for es in row["es_frames"] if es > ed]
            if later_es:
                es = later_es[0]
                assert area[ed] > area[es]  # ED is the largest cavity, ES the smallest
                assert scale[ed] == scale[max(0, ed - 2): ed + 3].max()
                assert scale[es] == scale[max(0, es - 2): es + 3].min()
                assert area[es] <= 1.01 * area[max(0, es - 2): es + 3].min()
        ratio = area.min() / area.max()
        assert abs(ratio ** 1.5 - spec.s_min ** 3) < 0.08
    assert {float(r["FPS"]) for r in _rows(tmp_path / "FileList.csv")} == {50.0}


def test_generation_is_deterministic(tmp_path):
    """Same seed, same files byte for byte, whether one process renders them or worker processes do."""
    cfg = tiny_params(phantom={"n_videos": 3, "n_frames": {"low": 20, "high": 20}}).phantom
    a = phantom.write_dataset(cfg, tmp_path / "a", seed=7, progress=False)
    b = phantom.write_dataset(cfg.model_copy(update={"workers": 2}), tmp_path / "b", seed=7, progress=False)
    assert a == b
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 + 3  # videos, FileList.csv, VolumeTracings.csv, truth.parquet
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    name = a[0].name
    c = phantom.write_dataset(cfg, tmp_path / "c", seed=8, progress=False)
    assert c[0].name != name


@pytest.mark.parametrize("kind", ["a4c", "ellipse"])
def test_true_flow_is_consistent_with_rendering(kind):
    """Warping frame b back by the true flow reproduces frame a inside the flow's mask."""
    import cv2

    cfg = tiny_params(phantom={"kind": kind}).phantom
    spec = phantom.sample_specs(cfg, seed=3)[0]
    frames = phantom.render(spec).astype(np.float32)
    ed, es = phantom.traced_frames(spec)
    flow, mask = phantom.true_flow(spec, ed, es)
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float32)
    warped = cv2.remap(frames[es], xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR)
    good = np.abs(warped - frames[ed])[mask].mean()
    wrong_sign = cv2.remap(frames[es], xx - flow[..., 0], yy - flow[..., 1], cv2.INTER_LINEAR)
    bad = np.abs(wrong_sign - frames[ed])[mask].mean()
    assert mask.sum() > 1000
    assert good < 0.6 * bad


def _phantom_stage(root, **overrides):
    from lfmcdm.layout import Layout
    from lfmcdm.stages import StageContext
    from lfmcdm.stages import phantom as phantom_stage

    params = tiny_params(phantom={"n_videos": 2, "size": 32, **overrides.pop("phantom", {})}, **overrides)
    return phantom_stage.run(StageContext(params=params, layout=Layout(root), progress=False))


def test_phantom_stage_refuses_to_replace_a_folder_it_did_not_create(tmp_path):
    """The reported accident: out_dir data/raw with the real download in data/raw/EchoNet-Dynamic."""
    import pytest

    from lfmcdm.stages.phantom import PhantomRefused

    real = tmp_path / "data/raw/EchoNet-Dynamic"
    real.mkdir(parents=True)
    (real / "FileList.csv").write_text("precious\n")
    with pytest.raises(PhantomRefused, match="overlaps data.echonet_root"):
        _phantom_stage(tmp_path, phantom={"out_dir": "data/raw"}, data={"echonet_root": "data/raw/EchoNet-Dynamic"})
    with pytest.raises(PhantomRefused, match=r"holds 2 file\(s\) the phantom stage did not create"):
        _phantom_stage(tmp_path, phantom={"out_dir": "data/raw"})  # no echonet_root: still not its folder
    assert (real / "FileList.csv").read_text() == "precious\n"


def test_phantom_stage_replaces_only_its_own_output(tmp_path):
    import pytest

    from lfmcdm.stages.phantom import MANIFEST, PhantomRefused

    out = tmp_path / "data/raw/phantom"
    _phantom_stage(tmp_path)
    assert (out / MANIFEST).exists() and len(list((out / "Videos").glob("*.avi"))) == 2
    _phantom_stage(tmp_path)  # its own output: replaced without complaint
    (out / "Videos" / "mine.avi").write_bytes(b"a user's file")
    with pytest.raises(PhantomRefused, match="Videos/mine.avi"):
        _phantom_stage(tmp_path)
    assert (out / "Videos" / "mine.avi").read_bytes() == b"a user's file"
