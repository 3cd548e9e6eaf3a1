"""The trained models behind a cohort, loaded from the pipeline's own ``models/`` outputs.

Synthesis reads the DVC-tracked ``models/`` folders (not the MLflow registry), so ``dvc exp run
--temp``/``--queue`` - which copy the workspace without ``mlflow.db`` - reproduce it, and a cohort
always matches the models its DVC lock names. The registry records the same folders (each version
is tagged with its folder's content hash, the ``*_version`` the manifest carries).

One object per process (cached): Dask workers and threads load the weights once and reuse them.
CPU results are bit-identical for a given ``train.torch_threads``; Dask workers default to one
thread (OMP_NUM_THREADS=1), so pin it when shards from different runners must match exactly.
Reference frames come from the cached latents of each appearance video at its label-free
end-diastolic frame, so the generated video starts from a real, phase-defined appearance.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lfmcdm.config import Params
from lfmcdm.data.clips import sha256_file
from lfmcdm.data.tables import load_array, read_videos
from lfmcdm.fingerprint import content_version, folder_hash
from lfmcdm.layout import MODELS, Layout
from lfmcdm.models.pipeline import DISTILLED_SAMPLER, MCDMPipeline, check_pair
from lfmcdm.models.reid import embed_frames, load_reid
from lfmcdm.runtime import configure_threads, resolve_device
from lfmcdm.synth.plan import SampleSpec



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


def _model_dir(layout: Layout, key: str) -> Path:
    """``models/<key>``, or a clear error naming the stage that writes it."""
    path = layout.model_dir(key)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no trained model; run `lfmcdm stage {MODELS[key].stage}` (or `dvc repro`) first")
    return path


@functools.lru_cache(maxsize=2)
def _load(root: str, params_json: str) -> RegistryModels:

    params = Params.model_validate_json(params_json)
    layout = Layout(Path(root))
    configure_threads(params.train)  # bit-identical videos need the same torch thread count everywhere
    device = resolve_device(params.train)
    generator = "distill" if params.synthesis.sampler == DISTILLED_SAMPLER else "mcdm"  # lcm: the few-step student
    mcdm_dir, vae_dir, reid_dir = (_model_dir(layout, k) for k in (generator, "vae", "reid"))
    check_pair(mcdm_dir, vae_dir)
    bank = layout.read_motion_bank()
    return RegistryModels(
        pipe=MCDMPipeline.from_dirs(mcdm_dir, vae_dir, device=device),
        reid=load_reid(reid_dir, device),
        versions={"mcdm": content_version(mcdm_dir), "vae": content_version(vae_dir), "reid": content_version(reid_dir),
                  "mafe": bank.mafe_version or ""},
        hashes={"mcdm": folder_hash(mcdm_dir), "vae": folder_hash(vae_dir), "reid": folder_hash(reid_dir),
                "motion_bank": sha256_file(layout.motion)},
        layout=layout, params=params,
        motions=bank.vectors,
        reference_frames={v["file_name"]: int(v["ed_frame"] or 0) for v in read_videos(layout)},
    )


def load_cohort_models(params: Params, root: Path | str) -> RegistryModels:
    """Models for ``params`` (cached per process: a Dask worker loads them once)."""
    return _load(str(Path(root).resolve()), params.model_dump_json())
