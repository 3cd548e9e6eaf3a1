"""Pre-flight checks a stage runs before any work: its output folders are writable, its tracking store usable.

Without them a read-only ``data/interim`` or ``mlflow.db`` surfaced as a raw traceback after every
video had been decoded; now the stage stops at once with one line saying what and why.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from lfmcdm.config import Params
from lfmcdm.layout import Layout


class PreflightError(RuntimeError):
    """A stage cannot write its outputs or use its tracking store; the message is one line."""


def stage_outputs(name: str, params: Params, layout: Layout) -> list[Path]:
    """The folders stage ``name`` writes into (docs/design.md's data contract); metrics/ for all."""
    interim = layout.videos.parent
    folders = {
        "phantom": [(layout.root / params.phantom.out_dir).parent],
        "ingest": [interim, layout.clips, layout.reports / "validation"],
        "pseudo_labels": [interim, layout.checkpoints, layout.reports / "phase_validation"],
        "train_mafe": [layout.models, layout.checkpoints],
        "motion_bank": [layout.motion.parent],
        "train_vae": [layout.models, layout.checkpoints],
        "cache_latents": [layout.latents.parent],
        "train_diffusion": [layout.models, layout.checkpoints],
        "synthesize": [layout.synthetic],
        "evaluate": [layout.reports],
    }.get(name, [])
    return [*folders, layout.metrics]


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, root: Path, what: str = "output folder") -> None:
    """``folder`` (or, if not there yet, its nearest existing ancestor) is a folder we can create files in."""
    target = _existing_ancestor(folder)
    shown = os.path.relpath(target, root) if target.is_relative_to(root) else str(target)
    if not target.is_dir():
        raise PreflightError(f"{what} {shown} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=target, prefix=".lfmcdm-preflight."):
            pass
    except OSError as err:
        raise PreflightError(f"{what} {shown} is not writable ({err.strerror or err})") from None


def check_tracking(uri: str, root: Path) -> None:
    """A sqlite store must be a writable database in a writable folder; a file store a writable folder."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        check_writable(path.parent, root, "MLflow store folder")  # sqlite writes its journal beside the database
        if path.exists():
            _check_sqlite(path)
    elif uri.startswith("file:") or "://" not in uri:
        check_writable(Path(uri.removeprefix("file://").removeprefix("file:")), root, "MLflow store folder")


def _check_sqlite(path: Path) -> None:
    if not path.is_file():
        raise PreflightError(f"MLflow store {path} is not a regular file")
    if not os.access(path, os.R_OK | os.W_OK):
        raise PreflightError(f"MLflow store {path} is read-only")
    try:  # read-only: a write lock here could fail spuriously while another stage holds one
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA schema_version").fetchone()  # "file is not a database" surfaces here
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise PreflightError(f"MLflow store {path} is not usable ({err})") from None


def run(name: str, params: Params, layout: Layout) -> None:
    """All checks for stage ``name``; raises :class:`PreflightError` with a one-line reason."""
    from lfmcdm import tracking

    try:
        for folder in stage_outputs(name, params, layout):
            check_writable(folder, layout.root)
        check_tracking(tracking.tracking_uri(params.tracking, layout.root), layout.root)
    except PreflightError as err:
        raise PreflightError(f"stage {name}: pre-flight: {err}") from None
