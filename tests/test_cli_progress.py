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


def test_training_bar_counts_steps_while_the_loss_moves(monkeypatch, capsys):
    """A training bar never shows a new loss beside a stale step count.

    Into a log file the CLI sets TQDM_MININTERVAL=60; the loss refresh after every step reprinted the bar
    with tqdm's count from its last timed print: `0/40 ... loss=` lines for a whole stage.
    """
    import re
    import time

    import torch
    from accelerate import Accelerator

    from lfmcdm.train.accel import StepLoop

    monkeypatch.setenv("TQDM_MININTERVAL", "60")
    loop = StepLoop("train", Accelerator(cpu=True), steps=4, state=None, stop_after=None, progress=True)
    for step in loop:
        time.sleep(0.05)
        loop.record(torch.tensor(1.0 / (step + 1)))
    shown = capsys.readouterr().err
    prints = re.split(r"[\r\n]", shown)
    assert any("4/4" in p for p in prints), shown
    assert not any(" 0/4 " in p and "loss=" in p for p in prints), shown  # a loss is only shown after a step
