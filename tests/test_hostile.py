"""Hostile EchoNet folders through the real CLI (issue 15): a bad row is quarantined with its true line,
a bad file is one line naming file and line (exit 2); never a traceback, never a hang.

One tiny base folder (32 px phantom) is generated per session. Row-level cases all corrupt ONE copy of it
(each at its own line) that is ingested once; each file-level case gets a copy of its own. Every ingest
is ``lfmcdm stage ingest`` in a subprocess bounded by a timeout, and all share one MLflow store: a CLI run
costs ~10 s of imports on a busy machine, so 8 runs instead of 29 keep the suite at about a minute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from lfmcdm.data import phantom
from lfmcdm.data.video_io import write_gray

from .conftest import subprocess_env, tiny_params

SIZE = 32  # px: the smallest phantom; every check here is about the files, not the pixels
BASE_VIDEOS = 10  # GX calls a column with >10% bad values a broken file: one bad row must stay under that
CLI_TIMEOUT_S = 180  # a hang fails the test instead of the suite
FILELIST, TRACINGS = "FileList.csv", "VolumeTracings.csv"


@pytest.fixture(scope="session")
def hostile_base(tmp_path_factory) -> Path:
    """The clean base folder every case corrupts a copy of (10 videos of 40-48 frames, 32x32)."""
    out = tmp_path_factory.mktemp("hostile-base")
    cfg = tiny_params(phantom={"n_videos": BASE_VIDEOS, "size": SIZE}).phantom
    phantom.write_dataset(cfg, out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('hostile-mlflow') / 'mlflow.db'}"


def params_file(root: Path, echonet: Path, **data) -> Path:
    path = root / "params.yaml"
    settings = {"echonet_root": str(echonet), "workers": 1, "frame_size": SIZE, "min_frames": 16, **data}
    path.write_text(yaml.safe_dump({"data": settings}))
    return path


def run_ingest(root: Path, params: Path, store: str | None) -> subprocess.CompletedProcess:
    env = subprocess_env()
    if store:
        env["MLFLOW_TRACKING_URI"] = store
    cmd = [sys.executable, "-m", "lfmcdm.cli", "stage", "ingest", "--params", str(params), "--root", str(root),
           "--no-progress"]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


# ---------------------------------------------------------------------------------------------- helpers


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def append(path: Path, text: str | bytes) -> int:
    """Append raw text to a table; returns the line number the appended text starts on."""
    line = _lines(path) + 1
    with open(path, "ab") as f:
        f.write(text if isinstance(text, bytes) else text.encode())
    return line


def row(name: str, frames: int = 40, fps: str = "50.0", ef: str = "55.0", split: str = "TRAIN",
        height: str = str(SIZE)) -> str:
    return f"{name},{ef},40,90,{height},{SIZE},{fps},{frames},{split}\r\n"


def first_video(folder: Path) -> Path:
    return sorted((folder / "Videos").glob("*.avi"))[0]


def with_video(folder: Path, name: str) -> None:
    shutil.copy(first_video(folder), folder / "Videos" / f"{name}.avi")


def rewrite(path: Path, fn: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\r\n".join(fn(lines)) + "\r\n")


@dataclass(frozen=True)
class Outcome:
    """What a case expects: a quarantined row (``table``:``line`` + reason) or a refusal (exit 2)."""

    table: str
    line: int
    reason: str
    exit_code: int = 0
    name: str | None = None  # the quarantined file name when it is known


# ------------------------------------------------------------------------------------------------ cases
# Each case corrupts ``folder`` (a copy of the base) and returns the expected Outcome.


def inf_frames(f: Path) -> Outcome:
    with_video(f, "0XINF")
    return Outcome(FILELIST, append(f / FILELIST, row("0XINF", frames="inf")), "NumberOfFrames is not finite")


def huge_height(f: Path) -> Outcome:
    with_video(f, "0XBIG")
    return Outcome(FILELIST, append(f / FILELIST, row("0XBIG", height="1e400")), "FrameHeight is not finite")


def extra_field(f: Path) -> Outcome:
    with_video(f, "0XEXTRA")
    line = append(f / FILELIST, row("0XEXTRA").replace("\r\n", ",surplus\r\n"))
    return Outcome(FILELIST, line, "10 fields, expected 9", name="0XEXTRA")


def non_utf8_row(f: Path) -> Outcome:
    size = (f / FILELIST).stat().st_size
    with_video(f, "0XLATIN")
    line = append(f / FILELIST, row("0XLATIN").replace("55.0", "55.0\xe9").encode("latin-1"))
    offset = size + len(row("0XLATIN").split("55.0")[0]) + len("55.0")
    return Outcome(FILELIST, line, f"not UTF-8 text (first bad byte at offset {offset})")


def non_utf8_header(f: Path) -> Outcome:
    data = (f / FILELIST).read_bytes()
    (f / FILELIST).write_bytes(data.replace(b"Split", b"Spl\xffit", 1))
    return Outcome(FILELIST, 1, "header is not UTF-8 text (first bad byte at offset", exit_code=2)


def name_250(f: Path) -> Outcome:
    name = "N" * 250
    with_video(f, name)  # 254-byte name: the video exists, yet every derived temp name would be too long
    return Outcome(FILELIST, append(f / FILELIST, row(name)), "FileName is 250 bytes long", name=name)


def name_300(f: Path) -> Outcome:
    name = "N" * 300
    return Outcome(FILELIST, append(f / FILELIST, row(name)), "FileName is 300 bytes long", name=name)


def nul_in_name(f: Path) -> Outcome:
    return Outcome(FILELIST, append(f / FILELIST, row("0X\x00NUL")), "control characters are not allowed")


def tracing_frame_1e400(f: Path) -> Outcome:
    name = first_video(f).name
    return Outcome(TRACINGS, append(f / TRACINGS, f"{name},1,2,3,4,1e400\r\n"), "tracing Frame is not finite")


def tracing_frame_1e10(f: Path) -> Outcome:
    name = first_video(f).name
    return Outcome(TRACINGS, append(f / TRACINGS, f"{name},1,2,3,4,1e10\r\n"), "tracing Frame 1e+10 outside")


def tracing_negative_frame(f: Path) -> Outcome:
    name = first_video(f).name
    return Outcome(TRACINGS, append(f / TRACINGS, f"{name},1,2,3,4,-3\r\n"), "tracing Frame -3 outside")


def tracing_non_numeric(f: Path) -> Outcome:
    name = first_video(f).name
    return Outcome(TRACINGS, append(f / TRACINGS, f"{name},1,abc,3,4,5\r\n"), "tracing Y1 is not a number")


def fifo_video(f: Path) -> Outcome:
    os.mkfifo(f / "Videos" / "0XFIFO.avi")
    return Outcome(FILELIST, append(f / FILELIST, row("0XFIFO")), "a FIFO, not a regular file")


def directory_video(f: Path) -> Outcome:
    (f / "Videos" / "0XDIR.avi").mkdir()
    return Outcome(FILELIST, append(f / FILELIST, row("0XDIR")), "a directory, not a regular file")


def empty_video(f: Path) -> Outcome:
    (f / "Videos" / "0XEMPTY.avi").write_bytes(b"")
    return Outcome(FILELIST, append(f / FILELIST, row("0XEMPTY")), "video file is empty")


def huge_resolution(f: Path) -> Outcome:
    write_gray(f / "Videos" / "0XHD.avi", np.zeros((3, 720, 1280), np.uint8), 50.0)
    return Outcome(FILELIST, append(f / FILELIST, row("0XHD", frames=48)), "resolution 720x1280, expected 32x32")


def too_many_frames(f: Path) -> Outcome:
    write_gray(f / "Videos" / "0XLONG.avi", np.zeros((70, SIZE, SIZE), np.uint8), 50.0)
    return Outcome(FILELIST, append(f / FILELIST, row("0XLONG", frames=60)), "more than data.max_frames (64)")


def png_as_avi(f: Path) -> Outcome:
    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00:~\x9bU"
           b"\x00\x00\x00\nIDATx\x9cc`\x00\x00\x00\x02\x00\x01H\xaf\xa4q\x00\x00\x00\x00IEND\xaeB`\x82")
    (f / "Videos" / "0XPNG.avi").write_bytes(png)
    return Outcome(FILELIST, append(f / FILELIST, row("0XPNG")), "not a video: a PNG image")


def truncated_video(f: Path) -> Outcome:
    data = first_video(f).read_bytes()
    (f / "Videos" / "0XCUT.avi").write_bytes(data[: len(data) // 3])
    return Outcome(FILELIST, append(f / FILELIST, row("0XCUT", frames=46)), "video")


def symlink_outside(f: Path) -> Outcome:
    outside = f.parent / "outside.avi"
    shutil.copy(first_video(f), outside)
    (f / "Videos" / "0XLINK.avi").symlink_to(outside)
    return Outcome(FILELIST, append(f / FILELIST, row("0XLINK")), "symlink leaves the dataset folder")


def fps_mismatch(f: Path) -> Outcome:
    with_video(f, "0XFPS")  # a 50 fps video listed at 25 fps
    return Outcome(FILELIST, append(f / FILELIST, row("0XFPS", fps="25.0", frames=20)),
                   "video frame rate 50 fps differs from FileList FPS 25")


def blank_and_multiline(f: Path) -> Outcome:
    with_video(f, "0XMULTI")  # kept: its quoted Split spans two lines and strips to TRAIN
    first = append(f / FILELIST, '\r\n\r\n0XMULTI,55,40,90,32,32,50,40,"TRAIN\r\n"\r\n')
    line = append(f / FILELIST, row("0XAFTER", ef="x"))
    assert line == first + 4  # two blank lines and a two-line quoted field come before it
    return Outcome(FILELIST, line, "EF is not a number", name="0XAFTER")


def unclosed_quote(f: Path) -> Outcome:
    return Outcome(FILELIST, append(f / FILELIST, '"0XOPEN,55,40,90,32,32,50,40,TRAIN\r\n'), "1 fields, expected 9")


def bom_and_lower_case_split(f: Path) -> Outcome:
    """Valid oddities: a UTF-8 BOM on both tables, blank lines, Split in lower case on every row."""
    def lower_split(lines: list[str]) -> list[str]:
        return [lines[0], "", *(line.rsplit(",", 1)[0] + "," + line.rsplit(",", 1)[1].lower() for line in lines[1:])]

    rewrite(f / FILELIST, lower_split)
    for table in (FILELIST, TRACINGS):
        (f / table).write_bytes(b"\xef\xbb\xbf" + (f / table).read_bytes())
    return Outcome(FILELIST, 0, "")


def nothing_kept(f: Path) -> Outcome:
    shutil.rmtree(f / "Videos")
    return Outcome(FILELIST, 2, "ingest kept 0 videos, rejected 10: 1 x video file missing", exit_code=2)


def filelist_is_fifo(f: Path) -> Outcome:
    (f / FILELIST).unlink()
    os.mkfifo(f / FILELIST)
    return Outcome(FILELIST, 0, "not a regular file (a FIFO)", exit_code=2)


def filelist_empty(f: Path) -> Outcome:
    (f / FILELIST).write_bytes(b"")
    return Outcome(FILELIST, 1, "empty file", exit_code=2)


def filelist_too_large(f: Path) -> Outcome:
    append(f / FILELIST, row("0XPAD") * 40000)  # ~1.6 MB > data.max_table_mb = 1
    return Outcome(FILELIST, 0, "more than the limit of 1048576 bytes", exit_code=2)


def filelist_symlink_outside(f: Path) -> Outcome:
    outside = f.parent / "FileList-elsewhere.csv"
    (f / FILELIST).rename(outside)
    (f / FILELIST).symlink_to(outside)
    return Outcome(FILELIST, 0, "symlink leaves the dataset folder", exit_code=2)


def header_missing_column(f: Path) -> Outcome:
    rewrite(f / FILELIST, lambda ls: [ls[0].replace("EF", "EjectionFraction", 1), *ls[1:]])
    return Outcome(FILELIST, 1, "missing column(s) EF", exit_code=2)


#: Row-level cases, all applied to ONE folder (in this order: an unclosed quote must come last) and ingested
#: once: every bad row must be quarantined at its own line while every good video is still kept.
ROW_CASES = {fn.__name__: fn for fn in [
    inf_frames, huge_height, extra_field, non_utf8_row, name_250, name_300, nul_in_name, tracing_frame_1e400,
    tracing_frame_1e10, tracing_negative_frame, tracing_non_numeric, fifo_video, directory_video, empty_video,
    huge_resolution, too_many_frames, png_as_avi, truncated_video, symlink_outside, fps_mismatch,
    blank_and_multiline, unclosed_quote,
]}
#: Cases that refuse the whole file (exit 2, one line) or are valid oddities (exit 0, nothing rejected):
#: one folder and one ingest each.
FILE_CASES = {fn.__name__: fn for fn in [
    non_utf8_header, nothing_kept, filelist_is_fifo, filelist_empty, filelist_too_large, filelist_symlink_outside,
    header_missing_column, bom_and_lower_case_split,
]}
ROW_DATA = {"max_frames": 64}  # too_many_frames; the base videos have at most 48
FILE_DATA = {"filelist_too_large": {"max_table_mb": 1}}


def _check_clean_run(proc: subprocess.CompletedProcess, exit_code: int) -> None:
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-4000:]
    assert proc.returncode == exit_code, output[-4000:]


@pytest.fixture(scope="module")
def all_bad_rows(hostile_base, shared_store, tmp_path_factory) -> tuple[Path, dict[str, Outcome], list, list]:
    """Every row-level case in one folder, ingested once via the CLI: (folder, outcomes, rejected, kept)."""
    tmp = tmp_path_factory.mktemp("hostile-rows")
    folder = tmp / "echonet"
    shutil.copytree(hostile_base, folder, symlinks=True)
    outcomes = {name: case(folder) for name, case in ROW_CASES.items()}
    root = tmp / "project"
    root.mkdir()
    proc = run_ingest(root, params_file(root, folder, **ROW_DATA), shared_store)
    _check_clean_run(proc, 0)
    rejected = pq.read_table(root / "data/interim/rejected.parquet").to_pylist()
    kept = pq.read_table(root / "data/interim/videos.parquet").to_pylist()
    return folder, outcomes, rejected, kept


def test_every_good_video_survives_all_bad_rows(all_bad_rows):
    _, outcomes, rejected, kept = all_bad_rows
    assert len(kept) == BASE_VIDEOS + 1, kept  # the base's videos and the one with a two-line quoted field
    assert len(rejected) == len(outcomes), rejected  # one rejection per case, nothing else


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_bad_row_quarantined_at_its_line(case, all_bad_rows):
    folder, outcomes, rejected, _ = all_bad_rows
    expected = outcomes[case]
    at = [r for r in rejected if r["source"] == f"{folder / expected.table}:{expected.line}"]
    assert len(at) == 1, (case, expected, rejected)
    assert expected.reason in at[0]["reason"], at
    if expected.name is not None:
        assert at[0]["file_name"] == expected.name


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_hostile_file(case, hostile_base, shared_store, tmp_path):
    folder = tmp_path / "echonet"
    shutil.copytree(hostile_base, folder, symlinks=True)
    expected = FILE_CASES[case](folder)
    root = tmp_path / "project"
    root.mkdir()
    proc = run_ingest(root, params_file(root, folder, **FILE_DATA.get(case, {})), shared_store)
    _check_clean_run(proc, expected.exit_code)
    if expected.exit_code == 2:
        message = proc.stderr.strip()
        assert len(message.splitlines()) == 1, message
        where = f"{folder / expected.table}" + (f":{expected.line}" if expected.line else "")
        assert where in message and expected.reason in message, message
        assert not (root / "data/interim/videos.parquet").exists()
        return
    assert pq.read_table(root / "data/interim/rejected.parquet").to_pylist() == []
    assert len(pq.read_table(root / "data/interim/videos.parquet").to_pylist()) == BASE_VIDEOS
