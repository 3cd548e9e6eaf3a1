"""Resumable training checkpoints: weights as safetensors, optimiser state via ``weights_only`` loads.

Layout of one checkpoint folder (written atomically, so a kill mid-save leaves the previous one)::

    <dir>/model.safetensors          (one file per named module: <name>.safetensors)
    <dir>/optimizer.pt               optimiser + scheduler state dicts (tensors and numbers only)
    <dir>/state.json                 step, epoch, best metric, anything JSON-able
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lfmcdm.atomic import atomic_dir

STATE_FILE = "state.json"


def save_checkpoint(
    directory: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    state: dict[str, Any] | None = None,
) -> None:
    """Save modules, optimiser/scheduler and a JSON state dict into ``directory`` atomically."""
    with atomic_dir(directory) as tmp:
        for name, module in modules.items():
            tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(tensors, str(tmp / f"{name}.safetensors"))
        extra = {}
        if optimizer is not None:
            extra["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            extra["scheduler"] = scheduler.state_dict()
        if extra:
            torch.save(extra, tmp / "optimizer.pt")
        (tmp / STATE_FILE).write_text(json.dumps(state or {}, indent=2))


def safetensors_device(device: str | torch.device) -> str:
    """``device`` as safetensors names it: an Accelerator on CPU with several processes says ``cpu:0``,
    which torch accepts and safetensors refuses ("device cpu:0 is invalid")."""
    device = torch.device(device)
    return "cpu" if device.type == "cpu" else str(device)


def load_checkpoint(
    directory: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any] | None:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns its state, or None if absent."""
    directory = Path(directory)
    if not (directory / STATE_FILE).exists():
        return None
    for name, module in modules.items():
        module.load_state_dict(load_file(str(directory / f"{name}.safetensors"), device=safetensors_device(map_location)))
    extra_path = directory / "optimizer.pt"
    if extra_path.exists() and (optimizer is not None or scheduler is not None):
        extra = torch.load(extra_path, map_location=map_location, weights_only=True)
        if optimizer is not None and "optimizer" in extra:
            optimizer.load_state_dict(extra["optimizer"])
        if scheduler is not None and "scheduler" in extra:
            scheduler.load_state_dict(extra["scheduler"])
    return json.loads((directory / STATE_FILE).read_text())


def resume(
    directory: str | Path,
    fingerprint: str,
    what: str,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    map_location: str | torch.device = "cpu",
    max_step: int | None = None,
) -> dict[str, Any] | None:
    """The one resume rule of every training loop (ReID, MAFE, VAE, MCDM): restore the checkpoint in
    ``directory`` only when it was written for the same ``fingerprint`` (settings, seed, data); else
    None and the caller starts afresh, so a changed config retrains instead of silently continuing.

    ``max_step``: the run's length, for loops whose fingerprint leaves it out (raising it continues a
    finished run). A checkpoint past it belongs to a longer run; resuming it would hand back more
    training than the settings ask for, so the run starts afresh.
    """
    state_file = Path(directory) / STATE_FILE
    if not state_file.exists():
        return None
    saved = json.loads(state_file.read_text())
    if saved.get("fingerprint") != fingerprint:
        print(f"{what}: checkpoint in {directory} is for other settings or data; starting afresh")
        return None
    if max_step is not None and int(saved.get("step", 0)) > max_step:
        print(f"{what}: checkpoint in {directory} is at step {saved['step']}, past this run's {max_step} steps; "
              f"starting afresh")
        return None
    return load_checkpoint(directory, modules, optimizer, scheduler, map_location)
