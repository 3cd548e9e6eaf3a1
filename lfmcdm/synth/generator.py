"""The trained models behind a cohort, resolved from the MLflow registry by alias.

One object per process (cached): Dask workers and threads load the weights once and reuse them.
CPU results are bit-identical for a given ``train.torch_threads``; Dask workers default to one
thread (OMP_NUM_THREADS=1), so pin it when shards from different runners must match exactly.
Reference frames come from the cached latents of each appearance video at its label-free
end-diastolic frame, so the generated video starts from a real, phase-defined appearance.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from lfmcdm import tracking
from lfmcdm.config import Params
from lfmcdm.data.clips import sha256_file
from lfmcdm.data.tables import load_array, read_videos
from lfmcdm.layout import Layout
from lfmcdm.pseudo.reid import embed_frames, load_reid
from lfmcdm.synth.pipeline import MCDMPipeline
from lfmcdm.synth.plan import SampleSpec
from lfmcdm.train.runtime import configure_threads, resolve_device

MODELS = {"mcdm": "lfmcdm-mcdm", "vae": "lfmcdm-vae", "reid": "lfmcdm-reid"}


@dataclass
class RegistryModels:
    """MCDM + VAE + ReID and the conditioning data they need (implements cohort.CohortModels)."""

    pipe: MCDMPipeline
    reid: torch.nn.Module
    versions: dict[str, str]
    hashes: dict[str, str]
    layout: Layout
    params: Params
    motions: dict[str, np.ndarray] = field(repr=False)
    reference_frames: dict[str, int] = field(repr=False)

    @property
    def fps(self) -> float:
        return float(self.pipe.meta["fps"])

    def reference_latents(self, names: list[str]) -> torch.Tensor:
        return torch.stack([
            torch.from_numpy(np.asarray(load_array(self.layout.latents, n)[self.reference_frames[n]], np.float32))
            for n in names
        ])

    def generate(self, specs: list[SampleSpec]) -> np.ndarray:
        cfg = self.params.synthesis
        out = self.pipe(
            self.reference_latents([s.appearance_source for s in specs]),
            np.stack([self.motions[s.motion_source] for s in specs]),
            seeds=[s.seed for s in specs], n_frames=cfg.n_frames, sampler=cfg.sampler, steps=cfg.steps,
            guidance=cfg.guidance_scale, window_overlap=cfg.window_overlap,
        )
        return out.frames

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return embed_frames(self.reid, frames)


def tree_sha256(folder: Path) -> str:
    """Content hash of a model folder: every file's relative path and sha256, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _resolve(params: Params, root: Path, key: str, alias: str) -> tuple[Path, str]:
    """Registry first (``name@alias``); a clear error if the registry has no such model."""
    try:
        return tracking.resolve_model(MODELS[key], alias, params.tracking, root)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for "not found"
        raise LookupError(f"model {MODELS[key]}@{alias} not found in the MLflow registry "
                          f"({tracking.tracking_uri(params.tracking, root)}): {err}") from err


@functools.lru_cache(maxsize=2)
def _load(root: str, params_json: str) -> RegistryModels:
    params = Params.model_validate_json(params_json)
    layout = Layout(Path(root))
    configure_threads(params.train)  # bit-identical videos need the same torch thread count everywhere
    device = resolve_device(params.train)
    mcdm_dir, mcdm_version = _resolve(params, layout.root, "mcdm", params.synthesis.model_alias)
    vae_dir, vae_version = _resolve(params, layout.root, "vae", "latest")
    reid_dir, reid_version = _resolve(params, layout.root, "reid", "champion")
    motion = pq.read_table(layout.motion)
    names = motion.column("file_name").to_pylist()
    vectors = np.asarray(motion.column("motion").to_pylist(), np.float32)
    mafe_versions = set(motion.column("mafe_version").to_pylist())
    return RegistryModels(
        pipe=MCDMPipeline.from_dirs(mcdm_dir, vae_dir, device=device),
        reid=load_reid(reid_dir, device),
        versions={"mcdm": mcdm_version, "vae": vae_version, "reid": reid_version,
                  "mafe": ",".join(sorted(str(v) for v in mafe_versions))},
        hashes={"mcdm": tree_sha256(mcdm_dir), "vae": tree_sha256(vae_dir), "reid": tree_sha256(reid_dir),
                "motion_bank": sha256_file(layout.motion)},
        layout=layout, params=params,
        motions=dict(zip(names, vectors)),
        reference_frames={v["file_name"]: int(v["ed_frame"] or 0) for v in read_videos(layout)},
    )


def load_cohort_models(params: Params, root: Path | str) -> RegistryModels:
    """Models for ``params`` (cached per process: a Dask worker loads them once)."""
    return _load(str(Path(root).resolve()), params.model_dump_json())
