"""Progress under `dvc repro` (issue 17): visible when someone may watch, quiet in CI."""

from __future__ import annotations

import subprocess
import sys

from lfmcdm.cli import LOG_PROGRESS_INTERVAL_S, _progress

from .conftest import subprocess_env


def test_progress_is_quiet_in_ci_and_an_explicit_flag_wins(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert _progress(None) is False
    assert _progress(True) is True
    monkeypatch.delenv("CI")
    assert _progress(False) is False


def test_progress_into_a_log_file_refreshes_once_a_minute():
    """stderr redirected (a log file, `nohup dvc repro > log`): a tqdm bar that refreshes rarely, not never."""
    code = ("import os, sys; from lfmcdm.cli import _progress; "
            "print(_progress(None), os.environ.get('TQDM_MININTERVAL'))")
    env = {k: v for k, v in subprocess_env().items() if k not in ("CI", "TQDM_MININTERVAL")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", str(LOG_PROGRESS_INTERVAL_S)]
