"""Versioning and sharing a cohort made outside ``dvc repro`` (``lfmcdm synthesize``, the Prefect flows).

Such a cohort is no output of ``dvc.yaml``, so DVC does not know it. ``push`` makes it a DVC-tracked
folder (``dvc add`` writes ``data/synthetic/<cohort>.dvc``, small, for git) and uploads its files to
a DVC remote (``dvc push``); on another machine ``git pull`` brings the ``.dvc`` file and ``pull``
downloads the folder (``dvc pull``). Both check the folder against its manifest's checksums, so a
half-copied cohort is never pushed and a corrupted download is noticed. The DVC command line is the
interface used (its Python internals are not a public API).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from lfmcdm.data.clips import sha256_file
from lfmcdm.layout import Layout


class ShareError(RuntimeError):
    """A cohort that cannot be pushed or pulled; the message says why."""


def cohort_folder(root: Path | str, name: str) -> Path:
    return Layout(Path(root)).synthetic / name


def dvc_file(root: Path | str, name: str) -> Path:
    folder = cohort_folder(root, name)
    return folder.with_name(f"{folder.name}.dvc")


def verify(folder: Path) -> list[str]:
    """Problems of a cohort folder against its manifest (empty when every shipped video is whole)."""
    manifest = folder / "manifest.parquet"
    if not manifest.exists():
        return [f"{manifest}: missing (not a finished cohort)"]
    problems = []
    for row in pq.read_table(manifest, columns=["sample_id", "path", "sha256"]).to_pylist():
        if row["path"] is None:
            continue
        path = folder / row["path"]
        if not path.exists():
            problems.append(f"{row['sample_id']}: {row['path']} missing")
        elif sha256_file(path) != row["sha256"]:
            problems.append(f"{row['sample_id']}: {row['path']} does not match its manifest sha256")
    return problems


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ShareError(f"`dvc {' '.join(args)}` failed in {root}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _remote(remote: str | None) -> list[str]:
    return ["--remote", remote] if remote else []


def push(root: Path | str, name: str, remote: str | None = None) -> Path:
    """``dvc add`` the cohort folder and ``dvc push`` it; returns the ``.dvc`` file to commit to git."""
    root = Path(root).resolve()
    folder = cohort_folder(root, name)
    if not folder.is_dir():
        raise ShareError(f"{folder}: no such cohort")
    problems = verify(folder)
    if problems:
        raise ShareError(f"{folder}: not pushed, it does not match its manifest: " + "; ".join(problems[:5]))
    _dvc(root, "add", str(folder.relative_to(root)))
    target = dvc_file(root, name)
    _dvc(root, "push", *_remote(remote), str(target.relative_to(root)))
    return target


def pull(root: Path | str, name: str, remote: str | None = None) -> Path:
    """``dvc pull`` a cohort whose ``.dvc`` file is in the checkout; returns the verified folder."""
    root = Path(root).resolve()
    target = dvc_file(root, name)
    if not target.exists():
        raise ShareError(f"{target}: not found; `git pull` the commit that added it (made by `lfmcdm cohort push`)")
    _dvc(root, "pull", *_remote(remote), str(target.relative_to(root)))
    folder = cohort_folder(root, name)
    problems = verify(folder)
    if problems:
        raise ShareError(f"{folder}: pulled, but it does not match its manifest: " + "; ".join(problems[:5]))
    return folder
