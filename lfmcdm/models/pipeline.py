"""``MCDMPipeline``: reference-frame latents + motion vectors + seeds -> uint8 echo videos.

diffusers-style: ``MCDMPipeline.from_pretrained(models_dir)`` loads ``models/vae`` and
``models/mcdm`` (``unet/``, ``conditioner/``, ``scheduler/``, ``mcdm.json``), and ``__call__``
samples with a solver chosen by name (``ddpm``, ``ddim``, ``dpmsolver++``) with classifier-free
guidance between the motion context and the learned null token; a distilled student (``models/distill``,
stage ``distill``) samples with ``lcm`` in 1-4 steps, unguided (the teacher's guidance is baked in)::

    pipe = MCDMPipeline.from_pretrained("models")      # or MCDMPipeline.from_dirs(mcdm_dir, vae_dir)
    out = pipe(pipe.encode_reference(frames), motions, seeds=[0, 1], sampler="dpmsolver++", steps=25, guidance=2.0)
    out.frames  # uint8 (B, F, H, W)

Each sample's initial noise (and DDPM's per-step noise, and extension windows' noise) comes from
its own seed, so a video is reproducible from its seed whatever batch it was generated in.
Videos longer than the trained window are generated in overlapping windows (``window_overlap``).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, LCMScheduler,
                       UNetSpatioTemporalConditionModel)
from tqdm import tqdm

from lfmcdm.atomic import atomic_dir
from lfmcdm.fingerprint import folder_hash
from lfmcdm.layout import MODELS
from lfmcdm.models.conditioning import MotionConditioner
from lfmcdm.models.unet import MCDM
from lfmcdm.models.vae import decode_latents, encode_frames, latent_shape, load_vae

META_FILE = "mcdm.json"
DECODE_BATCH = 64  # frames per VAE decoder call
WINDOW_STREAM, STEP_NOISE_STREAM = 1, 2  # sub-seed streams of one video's seed
DISTILLED_SAMPLER = "lcm"  # the few-step sampler of a distilled student (meta["distilled"] set)
STOCHASTIC = ("ddpm", DISTILLED_SAMPLER)  # samplers that draw fresh noise every step (per-video generators)


class ModelMismatchError(ValueError):
    """An MCDM paired with a VAE it was not trained with (``vae_hash`` in ``mcdm.json``)."""


def check_pair(mcdm_dir: str | Path, vae_dir: str | Path) -> None:
    """Refuse an MCDM whose recorded VAE is not ``vae_dir``: its latents would decode to noise, silently.

    ``train_diffusion`` records the hash of the VAE folder it trained on; a VAE retrained since (or a
    registry "latest" VAE next to an older MCDM champion) has another hash.
    """
    meta_path = Path(mcdm_dir) / META_FILE
    if not meta_path.exists():
        stage = next((m.stage for m in MODELS.values() if m.folder == Path(mcdm_dir).name), "train_diffusion")
        raise FileNotFoundError(f"{mcdm_dir}: no trained MCDM; run `lfmcdm stage {stage}` first")
    recorded = json.loads(meta_path.read_text()).get("vae_hash")
    actual = folder_hash(Path(vae_dir))
    if recorded != actual:
        raise ModelMismatchError(
            f"MCDM {mcdm_dir} was trained on VAE sha256:{str(recorded)[:16]} but {vae_dir} is sha256:{actual[:16]}: "
            f"retrain the MCDM on this VAE (`dvc repro train_diffusion`) or use the VAE it was trained with")


def check_mafe(mcdm_dir: str | Path, mafe_dir: str | Path) -> None:
    """Refuse a MAFE other than the one whose motion bank the MCDM was conditioned on (``mafe_version``)."""
    from lfmcdm.models.mafe import mafe_version

    recorded = json.loads((Path(mcdm_dir) / META_FILE).read_text()).get("mafe_version")
    actual = mafe_version(mafe_dir)
    if recorded != actual:
        raise ModelMismatchError(f"MCDM {mcdm_dir} was conditioned on MAFE {recorded} motion vectors but {mafe_dir} "
                                 f"is {actual}: its motion vectors would mean nothing to the MCDM")


def lcm_from_config(config: dict[str, Any], **overrides: Any) -> LCMScheduler:
    """An LCMScheduler from a (teacher's) scheduler config, without the keys it has no use for.

    The teacher's DDPM config carries ``variance_type``; diffusers warns about it on every sampling.
    """
    accepted = inspect.signature(LCMScheduler.__init__).parameters
    return LCMScheduler.from_config({k: v for k, v in config.items() if k in accepted}, **overrides)


def make_scheduler(name: str, config: dict[str, Any]):
    """A sampling scheduler by name, sharing the training schedule's betas and prediction type."""
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    if name == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=False, set_alpha_to_one=True)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    if name == DISTILLED_SAMPLER:  # the student's saved scheduler config carries its grid and scaling
        return lcm_from_config(config)
    raise ValueError(f"unknown sampler {name!r}; use ddpm, ddim, dpmsolver++ or (a distilled model) lcm")


def save_mcdm(model: MCDM, noise_scheduler: DDPMScheduler, meta: dict[str, Any], out: Path) -> None:
    """Write ``models/mcdm`` atomically: UNet and conditioner (save_pretrained), scheduler, ``mcdm.json``."""
    with atomic_dir(out) as tmp:
        model.unet.save_pretrained(tmp / "unet")
        model.conditioner.save_pretrained(tmp / "conditioner")
        noise_scheduler.save_pretrained(tmp / "scheduler")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


@dataclass
class MCDMOutput:
    frames: np.ndarray | None  # uint8 (B, F, H, W); None for output_type="latent"
    latents: torch.Tensor  # scaled latents (B, F, C, h, w), float32 on CPU


class MCDMPipeline:
    """The trained MCDM (EMA weights) + VAE + noise schedule, ready to sample."""

    def __init__(self, unet: UNetSpatioTemporalConditionModel, conditioner: MotionConditioner, vae: AutoencoderKL,
                 scheduler_config: dict[str, Any], meta: dict[str, Any]):
        self.model = MCDM(unet, conditioner).eval()
        self.vae = vae.eval()
        self.scheduler_config = dict(scheduler_config)
        self.meta = meta

    @classmethod
    def from_pretrained(cls, models_dir: str | Path, device: torch.device | str = "cpu",
                        model: str = "mcdm") -> "MCDMPipeline":
        """Load ``<models_dir>/mcdm`` (``model="distill"``: the few-step student) and ``<models_dir>/vae``."""
        return cls.from_dirs(Path(models_dir) / MODELS[model].folder, Path(models_dir) / MODELS["vae"].folder, device)

    @classmethod
    def from_dirs(cls, mcdm_dir: str | Path, vae_dir: str | Path, device: torch.device | str = "cpu") -> "MCDMPipeline":
        """Load from an MCDM folder and a VAE folder (e.g. resolved from the MLflow registry)."""
        root = Path(mcdm_dir)
        if not (root / META_FILE).exists():
            raise FileNotFoundError(f"{root}: no trained MCDM; run `lfmcdm stage train_diffusion` first")
        unet = UNetSpatioTemporalConditionModel.from_pretrained(str(root / "unet"))
        conditioner = MotionConditioner.from_pretrained(str(root / "conditioner"))
        scheduler_config = DDPMScheduler.load_config(str(root / "scheduler"))
        meta = json.loads((root / META_FILE).read_text())
        return cls(unet, conditioner, load_vae(vae_dir), scheduler_config, meta).to(device)

    def to(self, device: torch.device | str) -> "MCDMPipeline":
        self.model.to(device)
        self.vae.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_reference(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 reference frames ``(B, H, W)`` -> scaled latents ``(B, C, h, w)``."""
        return torch.from_numpy(encode_frames(self.vae, frames, DECODE_BATCH))

    def _initial_noise(self, seeds: list[int], n_frames: int) -> torch.Tensor:
        c, h, w = latent_shape(self.vae)
        return torch.cat([torch.randn((1, n_frames, c, h, w), generator=torch.Generator().manual_seed(s))
                          for s in seeds])

    @torch.no_grad()
    def __call__(self, reference_latents: torch.Tensor, motion: torch.Tensor | np.ndarray, seeds: int | list[int],
                 n_frames: int | None = None, sampler: str = "dpmsolver++", steps: int = 25, guidance: float = 1.0,
                 window_overlap: int = 0, output_type: str = "uint8", progress: bool = False) -> MCDMOutput:
        """Sample ``B`` videos: reference latents ``(B, C, h, w)``, motion ``(B, D)``, one seed per video.

        ``guidance`` > 1 applies classifier-free guidance: ``u + guidance * (c - u)`` with ``c`` the
        motion-conditioned and ``u`` the null-token prediction. ``n_frames`` beyond the trained
        window (``meta["n_frames"]``) are generated window by window: each new window takes as its
        reference the frame ``window_overlap`` frames before the end so far (the last frame when 0),
        and the overlapping frames are cross-faded in latent space.
        """
        b = len(reference_latents)
        seeds = [seeds + i for i in range(b)] if isinstance(seeds, int) else [int(s) for s in seeds]
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} seeds for {b} videos")
        window = int(self.meta["n_frames"])
        total = n_frames or window
        if total > window and not 0 <= window_overlap < window - 1:
            raise ValueError(f"window_overlap must be in [0, {window - 2}] for {window}-frame windows")
        if sampler == DISTILLED_SAMPLER:
            if not self.meta.get("distilled"):
                raise ValueError("sampler lcm needs the distilled model (models/distill, `lfmcdm stage distill`)")
            guidance = 1.0  # the student learned the guided teacher; guiding it again would double it
        motion = torch.as_tensor(np.asarray(motion, np.float32))
        run = dict(motion=motion, sampler=sampler, steps=steps, guidance=guidance, progress=progress)
        video = self._sample_window(reference_latents.float(), seeds, min(total, window), **run)
        k = 0
        while video.shape[1] < total:
            k += 1
            start = video.shape[1] - max(window_overlap, 1)
            window_seeds = [derived_seed(s, WINDOW_STREAM, k) for s in seeds]
            new = self._sample_window(video[:, start], window_seeds, window, **run)
            fade = torch.arange(1, window_overlap + 1, dtype=torch.float32) / (window_overlap + 1)
            fade = fade.view(1, -1, 1, 1, 1)
            blended = (1 - fade) * video[:, start:] + fade * new[:, :window_overlap]
            video = torch.cat([video[:, :start], blended, new[:, max(window_overlap, 1):]], dim=1)
        video = video[:, :total]
        if output_type == "latent":
            return MCDMOutput(None, video)
        frames = decode_latents(self.vae, video.flatten(0, 1), DECODE_BATCH)
        return MCDMOutput(frames.reshape(b, total, *frames.shape[1:]), video)

    def _sample_window(self, reference: torch.Tensor, seeds: list[int], n_frames: int, motion: torch.Tensor,
                       sampler: str, steps: int, guidance: float, progress: bool) -> torch.Tensor:
        """One window of ``n_frames`` latents ``(B, F, C, h, w)`` (float32, CPU) from reference latents."""
        device, b = self.device, len(reference)
        scheduler = make_scheduler(sampler, self.scheduler_config)
        scheduler.set_timesteps(steps, device=device)
        generators = [torch.Generator().manual_seed(derived_seed(s, STEP_NOISE_STREAM)) for s in seeds]
        latents = (self._initial_noise(seeds, n_frames) * scheduler.init_noise_sigma).to(device)
        reference = reference.to(device, torch.float32)
        noise_aug = float(self.meta["added_time_ids"][2])
        if noise_aug > 0:  # the same conditioning augmentation the model was trained with
            noise = torch.cat([torch.randn((1, *reference.shape[1:]), generator=g) for g in generators])
            reference = reference + noise_aug * noise.to(device)
        ids = torch.tensor([self.meta["added_time_ids"]], device=device, dtype=torch.float32).expand(b, -1)
        context = self.model.conditioner(motion.to(device))
        guided = guidance != 1.0
        if guided:  # one batched UNet call: [unconditional; conditional]
            context = torch.cat([self.model.conditioner.null(b), context])
            reference, ids = torch.cat([reference, reference]), torch.cat([ids, ids])
        for t in tqdm(scheduler.timesteps, desc="sample", unit="step", disable=not progress):
            x = torch.cat([latents, latents]) if guided else latents
            x = scheduler.scale_model_input(x, t)
            out = self.model.predict(x, t.expand(len(x)).to(device), reference, context, ids)
            if guided:
                uncond, cond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            kwargs = {"generator": generators} if sampler in STOCHASTIC else {}
            latents = scheduler.step(out, t, latents, **kwargs).prev_sample
        return latents.float().cpu()


def derived_seed(seed: int, *keys: int) -> int:
    """A reproducible seed for a sub-stream of the video seeded ``seed`` (extension windows, DDPM noise),
    unrelated to any other video's seed (``seed + 1`` would be the next video's)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0] >> 2)
