"""Shared fixtures: tiny phantom datasets and params that keep every test fast on 2 CPU cores."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests track into their own tmp sqlite

from lfmcdm.config import Params, parse_params  # noqa: E402
from lfmcdm.data import phantom  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "phantom": {"n_videos": 8, "n_frames": {"low": 40, "high": 48}},
    "data": {"workers": 1, "min_frames": 16},
}


def tiny_params(**overrides) -> Params:
    """Params for tests: the repo defaults with a tiny phantom, plus ``overrides`` (nested dicts)."""
    from lfmcdm.config import _deep_merge

    raw = _deep_merge(TINY, overrides, "test")
    return parse_params(raw, source="<test params>")


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A tiny phantom EchoNet folder, generated once per test session (read-only for tests)."""
    out = tmp_path_factory.mktemp("phantom")
    phantom.write_dataset(tiny_params().phantom, out, seed=0, progress=False)
    return out


@pytest.fixture()
def echonet_copy(phantom_dir, tmp_path) -> Path:
    """A writable copy of the session phantom, for tests that corrupt it."""
    dst = tmp_path / "echonet"
    shutil.copytree(phantom_dir, dst)
    return dst
