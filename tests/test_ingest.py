"""Ingest on a phantom with injected bad input: every bad row quarantined with its reason."""

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest

from lfmcdm.data.echonet import EchoNetFormatError
from lfmcdm.data.validation import ValidationFailed
from lfmcdm.data.video_io import resample_indices, write_gray
from lfmcdm.layout import Layout
from lfmcdm.stages import StageContext
from lfmcdm.stages import ingest

from .conftest import tiny_params


def _run_ingest(root, echonet, **data):
    params = tiny_params(data={"echonet_root": str(echonet), **data})
    ctx = StageContext(params=params, layout=Layout(root), progress=False)
    return ingest.run(ctx), ctx.layout


def _append_rows(path, rows):
    with open(path, "a", newline="") as f:
        csv.writer(f).writerows(rows)


def _good_row(name, frames=40, ef="55.0", split="TRAIN"):
    return [name, ef, "40", "90", 112, 112, 50.0, frames, split]


def test_good_phantom_all_kept(tmp_path, phantom_dir):
    metrics, layout = _run_ingest(tmp_path, phantom_dir)
    videos = pq.read_table(layout.videos).to_pylist()
    assert metrics["videos_kept"] == 8 and metrics["videos_rejected"] == 0
    assert len(videos) == 8
    for row in videos:
        clip = np.load(layout.clip(row["file_name"]))
        assert clip.dtype == np.uint8 and clip.shape == (row["n_frames"], 112, 112)
        assert len(row["sha256"]) == 64
        assert row["traced_ed"] is not None and row["traced_es"] is not None


def test_bad_rows_are_quarantined_with_reasons(tmp_path, echonet_copy):
    videos = echonet_copy / "Videos"
    good = sorted(p.stem for p in videos.glob("*.avi"))
    # truncated: a copy of a good video cut to a third of its bytes
    data = (videos / f"{good[0]}.avi").read_bytes()
    (videos / "0XTRUNCATED.avi").write_bytes(data[: len(data) // 3])
    write_gray(videos / "0XSMALL.avi", np.zeros((40, 64, 64), np.uint8), 50.0)
    write_gray(videos / "0XSHORT.avi", np.full((10, 112, 112), 80, np.uint8), 50.0)
    write_gray(videos / "0XNANEF.avi", np.full((40, 112, 112), 80, np.uint8), 50.0)
    _append_rows(echonet_copy / "FileList.csv", [
        _good_row("0XMISSING"),
        _good_row("0XTRUNCATED", frames=45),
        _good_row("../x"),
        _good_row("0XSMALL"),
        _good_row("0XSHORT", frames=10),
        _good_row("0XNANEF", ef="nan"),
        _good_row(good[1]),  # duplicate of a good row
    ])
    _append_rows(echonet_copy / "VolumeTracings.csv", [["0XUNKNOWN.avi", 1, 2, 3, 4, 0]])

    metrics, layout = _run_ingest(tmp_path, echonet_copy)
    rejected = {r["file_name"]: r["reason"] for r in pq.read_table(layout.rejected).to_pylist()}
    assert "video file missing" in rejected["0XMISSING"]
    assert "truncated" in rejected["0XTRUNCATED"] or "corrupt" in rejected["0XTRUNCATED"]
    assert "unsafe FileName" in rejected["../x"]
    assert "resolution 64x64" in rejected["0XSMALL"]
    assert "too few frames" in rejected["0XSHORT"]
    assert "EF is not a number" in rejected["0XNANEF"]
    assert rejected[good[1]] == "duplicate FileName"
    assert "tracing for a file not in FileList.csv" in rejected["0XUNKNOWN"]
    kept = {r["file_name"] for r in pq.read_table(layout.videos).to_pylist()}
    assert kept == set(good)  # every good video kept, nothing silently dropped
    assert metrics["videos_kept"] == 8 and metrics["videos_rejected"] == 8
    assert not (layout.clips / "0XSMALL.npy").exists()


@pytest.mark.parametrize("target_fps", [25.0, 50.0, 100.0])
def test_resampling_frame_counts(tmp_path, phantom_dir, target_fps):
    _, layout = _run_ingest(tmp_path, phantom_dir, target_fps=target_fps)
    with open(phantom_dir / "FileList.csv") as f:
        source = {r["FileName"]: (int(r["NumberOfFrames"]), float(r["FPS"])) for r in csv.DictReader(f)}
    for row in pq.read_table(layout.videos).to_pylist():
        n_source, source_fps = source[row["file_name"]]  # the A4C phantom varies FPS around 50, as EchoNet does
        expected = round(n_source * target_fps / source_fps)
        assert row["n_frames"] == expected
        assert row["fps"] == target_fps and row["source_fps"] == source_fps


def test_resample_indices_keep_time():
    idx = resample_indices(100, 50.0, 16.0)
    assert len(idx) == 32
    assert np.all(np.diff(idx) >= 3) and np.all(np.diff(idx) <= 4)  # 50/16 = 3.125 source frames per step
    assert idx[0] == 0 and idx[-1] <= 99


def test_gx_fails_on_broken_filelist(tmp_path, echonet_copy):
    path = echonet_copy / "FileList.csv"
    rows = list(csv.reader(open(path)))
    for row in rows[1:]:
        row[1] = "n/a"  # EF column broken for every row: a broken file, not a bad row
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(ValidationFailed, match="EF"):
        _run_ingest(tmp_path, echonet_copy)
    assert (tmp_path / "reports/validation/filelist.json").exists()
    assert not (tmp_path / "data/interim/videos.parquet").exists()


def test_malformed_header_is_a_clear_error(tmp_path, echonet_copy):
    path = echonet_copy / "FileList.csv"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("EF", "EjectionFraction", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EchoNetFormatError) as err:
        _run_ingest(tmp_path, echonet_copy)
    message = str(err.value)
    assert str(path) in message and "missing column(s) EF" in message and "FileName, EF, ESV" in message


@pytest.mark.parametrize("codec, pix_fmt", [("mjpeg", "yuvj420p"), ("mjpeg", "yuvj444p"), ("mpeg4", "yuv420p")])
def test_read_gray_equals_ffmpeg_gray_conversion(tmp_path, codec, pix_fmt):
    """The fast path (a full-range luma plane used as it is, chroma not decoded) returns exactly what
    swscale's gray conversion of every frame does; limited-range YUV still goes through the conversion."""
    import av

    from lfmcdm.data.video_io import FULL_RANGE_LUMA, read_gray

    rng = np.random.default_rng(0)
    frames = (rng.random((6, 32, 48)) * 255).astype(np.uint8)
    path = tmp_path / "v.avi"
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream(codec, rate=50)
        stream.width, stream.height, stream.pix_fmt = 48, 32, pix_fmt
        for gray in frames:
            rgb = np.stack([gray, np.roll(gray, 1, axis=0), 255 - gray], axis=2)  # colour, so chroma is not flat
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
        expected = np.stack([f.to_ndarray(format="gray") for f in decoded])
        assert (decoded[0].format.name in FULL_RANGE_LUMA) == pix_fmt.startswith("yuvj")
    got, fps = read_gray(path)
    assert got.dtype == np.uint8 and got.shape == (6, 32, 48) and fps == 50
    np.testing.assert_array_equal(got, expected)


def test_validation_report_is_the_same_bytes_for_the_same_table(tmp_path, phantom_dir):
    """Re-running ingest on the same data rewrites its GX report byte for byte (no load timestamp inside)."""
    _, layout = _run_ingest(tmp_path, phantom_dir)
    reports = sorted((layout.reports / "validation").glob("*.json"))
    first = {p.name: p.read_bytes() for p in reports}
    _run_ingest(tmp_path, phantom_dir)
    assert len(first) == 2 and {p.name: p.read_bytes() for p in reports} == first
