"""Training beyond one process: ``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo) on the toy pipeline.

The trainers are run as a user would run them on several GPUs, just on CPU: both processes train on
their own batches, rank 0 alone checkpoints, tracks to MLflow and registers, and the checkpoint resumes
in a plain single-process run. The inputs (clips, pseudo labels, latents, motion bank, VAE) come from
the session's toy ``dvc repro``; each test trains in a project of its own with a fresh MLflow store.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import yaml

from tests.conftest import PIPELINE, make_project, run_ok, subprocess_env

INPUTS = ("data/raw/phantom", "data/interim", "data/processed", "models/vae")
DIFFUSION = {**PIPELINE["diffusion"], "steps": 4, "checkpoint_every": 2}
# on CPU (gloo), even on a GPU machine; one thread each: two processes share the CI machine's cores
THREADS = {"device": "cpu", "torch_threads": 1}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _project(dvc_project: Path, root: Path, overrides: dict) -> Path:
    """A fresh project (own params, no MLflow store, no checkpoints) holding the toy pipeline's inputs."""
    make_project(root, {**PIPELINE, **overrides})
    for rel in INPUTS:
        shutil.copytree(dvc_project / rel, root / rel, symlinks=True)
    return root


def _launch(root: Path, stage: str, processes: int) -> str:
    cmd = ["lfmcdm", "stage", stage, "--root", str(root), "--params", str(root / "params.yaml"), "--no-progress"]
    if processes > 1:
        # `--cpu` would start one process (accelerate's multi-CPU launch wants an MPI hostfile); the torchrun
        # launcher behind --multi_gpu starts N, and train.device cpu makes the Accelerator use gloo on CPU
        cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_port()),
               "-m", "lfmcdm.cli", *cmd[1:]]
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"
    return run_ok(cmd, root, env)


def _registry(root: Path, model: str, stage: str) -> tuple[list, list]:
    """(finished MLflow runs of ``stage``, versions of registered ``model``) in the project's store."""
    from mlflow import MlflowClient

    from lfmcdm.config import load_params
    from lfmcdm.tracking import tracking_uri

    params = load_params(root / "params.yaml")
    client = MlflowClient(tracking_uri(params.tracking, root))
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`lfmcdm.stage` = '{stage}'")
    return runs, client.search_model_versions(f"name = '{model}'")


def test_two_process_diffusion_training_tracks_once_and_resumes_in_one_process(dvc_project, tmp_path):
    root = _project(dvc_project, tmp_path / "project", {"diffusion": DIFFUSION, "train": THREADS})
    out = _launch(root, "train_diffusion", processes=2)
    # both ranks trained all steps (DDP: neither could finish without the other's gradients)
    assert "process 0 of 2 trained steps 0->4" in out and "process 1 of 2 trained steps 0->4" in out, out[-3000:]
    state = json.loads((root / "checkpoints/train_diffusion/state.json").read_text())
    assert state["step"] == 4 and state["processes"] == 2
    assert json.loads((root / "models/mcdm/mcdm.json").read_text())["processes"] == 2
    assert [p.name for p in (root / "checkpoints").iterdir()] == ["train_diffusion"]  # no stray temp folders
    runs, versions = _registry(root, "lfmcdm-mcdm", "train_diffusion")
    assert len(runs) == 1 and len(versions) == 1  # rank 1 neither tracked nor registered
    assert set(json.loads((root / "metrics/diffusion.json").read_text())) == {"train_loss", "motion_area_r"}

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["diffusion"]["steps"] = 6
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _launch(root, "train_diffusion", processes=1)
    assert "train_diffusion: steps 4->6" in out, out[-3000:]  # resumed the two-process checkpoint
    state = json.loads((root / "checkpoints/train_diffusion/state.json").read_text())
    assert state["step"] == 6 and state["processes"] == 1
    runs, versions = _registry(root, "lfmcdm-mcdm", "train_diffusion")
    assert len(runs) == 2 and len(versions) == 2


def test_two_process_mafe_shards_batches_and_registers_once(dvc_project, tmp_path):
    processes = 2
    root = _project(dvc_project, tmp_path / "project", {"train": THREADS})
    out = _launch(root, "train_mafe", processes=processes)
    state = json.loads((root / "checkpoints/train_mafe/last/state.json").read_text())
    from lfmcdm.config import load_params
    from lfmcdm.layout import Layout
    from lfmcdm.train.mafe import prepare_data
    from lfmcdm.train.mafe_data import epoch_batches

    cfg = load_params(root / "params.yaml").mafe
    n_train = len(prepare_data(Layout(root), cfg).train)
    per_epoch = len(epoch_batches(n_train, cfg.batch_size, 0, 0)) // processes
    assert state["step"] == cfg.epochs * per_epoch, out[-3000:]  # each step used one batch per process
    runs, versions = _registry(root, "lfmcdm-mafe", "train_mafe")
    assert len(runs) == 1 and len(versions) == 1
    assert (root / "models/mafe").is_dir() and (root / "metrics/mafe.json").exists()


def test_checkpoints_load_on_the_device_a_multi_process_cpu_accelerator_names(tmp_path):
    """Under `accelerate launch` on CPU the Accelerator's device is ``cpu:0``; safetensors refuses that name."""
    import torch

    from lfmcdm.checkpoint import load_checkpoint, save_checkpoint

    saved = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "ck", {"model": saved}, state={"step": 7})
    loaded = torch.nn.Linear(3, 2)
    assert load_checkpoint(tmp_path / "ck", {"model": loaded}, map_location=torch.device("cpu", 0)) == {"step": 7}
    torch.testing.assert_close(loaded.weight, saved.weight)
