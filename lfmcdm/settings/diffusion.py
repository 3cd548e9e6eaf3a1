"""``vae``, ``latents`` and ``diffusion`` sections: AutoencoderKL, latent cache, the MCDM UNet.

Defaults are the tiny CPU demo (minutes on 2 cores); ``profiles.quality`` and ``profiles.paper`` in
params.yaml scale them up. Shapes: a 4-block VAE downsamples 112 px frames by 8 to the paper's
4x14x14 latents; the UNet handles 14 -> 7 -> 4 (-> 2) by forwarding the skip sizes on the way up,
so no cropping or padding of latents is needed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lfmcdm.config_base import Section

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
Sampler = Literal["ddpm", "ddim", "dpmsolver++"]
UNET_NORM_GROUPS = 32  # hard-wired in diffusers' spatio-temporal blocks


class VaeConfig(Section):
    """The frame autoencoder (diffusers ``AutoencoderKL``, 1 grayscale channel, trained from scratch)."""

    block_out_channels: list[int] = Field([8, 16, 32, 64], min_length=1,
                                          description="one entry per resolution; n entries downsample by 2**(n-1)")
    layers_per_block: int = Field(1, ge=1)
    latent_channels: int = Field(4, ge=1)
    norm_num_groups: int = Field(8, ge=1)
    steps: int = Field(300, ge=1, description="optimiser steps")
    batch_size: int = Field(12, ge=1, description="frames per step")
    crop_size: int | None = Field(None, ge=8, description="train on random square crops of this side (the "
                                  "VAE is convolutional; a crop costs its share of pixels); null = whole frames")
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    recon_loss: Literal["l1", "mse"] = "l1"
    kl_weight: float = Field(1e-6, ge=0)
    ssim_weight: float = Field(0.0, ge=0, description="weight of a (1 - SSIM) term; 0 disables it")
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(25, ge=1)
    val_frames: int = Field(128, ge=1, description="VAL frames (evenly spread) for val_psnr / val_ssim")
    scale_frames: int = Field(512, ge=1, description="TRAIN frames encoded to estimate the latent std")

    @model_validator(mode="after")
    def _groups_divide_channels(self) -> "VaeConfig":
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups ({self.norm_num_groups}) must divide every block_out_channels "
                             f"entry, not {bad}")
        return self

    @model_validator(mode="after")
    def _crop_fits_the_encoder(self) -> "VaeConfig":
        if self.crop_size is not None and self.crop_size % self.total_stride:
            raise ValueError(f"crop_size ({self.crop_size}) must be a multiple of {self.total_stride} "
                             "(the encoder's downsampling)")
        return self

    @property
    def total_stride(self) -> int:
        """The encoder's downsampling: each block after the first halves the resolution."""
        return 2 ** (len(self.block_out_channels) - 1)

    def latent_size(self, frame_size: int) -> int:
        """Side of a frame's latent."""
        return frame_size // self.total_stride


class LatentsConfig(Section):
    """Encoding every clip once into ``data/processed/latents``."""

    batch_size: int = Field(64, ge=1, description="frames per encoder call")


class AddedTimeIds(Section):
    """SVD's three micro-conditioning ids, fed as fixed values (the UNet needs them; we don't vary them).

    They enter as sinusoidal embeddings added to the timestep embedding, so constant values act as a
    learned bias. ``noise_aug_strength`` is also the std of Gaussian noise added to the reference
    latent in training and sampling (SVD's conditioning augmentation); 0 disables it.
    """

    fps: float | None = Field(None, gt=0, description="None = diffusion.fps")
    motion_bucket_id: float = 127.0
    noise_aug_strength: float = Field(0.0, ge=0)


class CavityConfig(Section):
    """Cavity area by dark-pixel thresholding (lfmcdm.eval.cavity), for motion_area_r."""

    blur_sigma: float = Field(2.0, gt=0, description="Gaussian blur (px) that removes speckle before thresholding")
    dark_fraction: float = Field(0.5, gt=0, lt=1, description="dark = below this share of the sector median")
    region_fraction: float = Field(0.7, gt=0, le=1, description="central box (share of width/height) searched")
    sector_erode_px: int = Field(5, ge=1, description="sector erosion that keeps the fan's edge out")
    region: Literal["lv", "box"] = Field("lv", description="lv: search the LV's label-free region (the moving "
                                         "chambers nearer the apex); box: the central box (all dark pixels)")
    lv_close_px: int = Field(3, ge=1, description="closing (px) that joins the LV's moving pixels into one blob")
    lv_min_px: int = Field(30, ge=1, description="a smaller moving blob is no LV: fall back to the central box")


class MotionEvalConfig(Section):
    """motion_area_r: regenerate a few VAL/TEST phantom videos from their own reference + motion."""

    videos: int = Field(8, ge=1)
    sampler: Sampler = "dpmsolver++"
    steps: int = Field(10, ge=1)
    guidance: float = Field(1.5, ge=1.0, description="classifier-free guidance scale (1 = no guidance)")
    seed: int = 1234
    cavity: CavityConfig = CavityConfig()


class DiffusionConfig(Section):
    """The motion-conditioned video diffusion model (diffusers ``UNetSpatioTemporalConditionModel``)."""

    n_frames: int = Field(16, ge=2, description="frames per training window")
    fps: float = Field(16.0, gt=0, description="frame rate of the generated videos (clips are subsampled)")
    block_out_channels: list[int] = Field([32, 64], min_length=1)
    down_block_types: list[str] = Field(
        ["DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"],
        description="the up blocks mirror these (CrossAttnDown* -> CrossAttnUp*, Down* -> Up*)")
    layers_per_block: int = Field(1, ge=1)
    num_attention_heads: list[int] = Field([2, 4], min_length=1)
    cross_attention_dim: int = Field(64, ge=1)
    addition_time_embed_dim: int = Field(32, ge=2)
    added_time_ids: AddedTimeIds = AddedTimeIds()
    motion_tokens: int = Field(1, ge=1, description="cross-attention tokens the motion vector is projected to")
    motion_hidden: int = Field(128, ge=1, description="hidden width of the motion projection MLP")
    window_start: Literal["ed", "random"] = Field(
        "ed", description="ed: windows begin at the label-free end-diastole (phase.parquet ed_frame; random "
                          "where unknown) so the reference has a known phase, as in synthesis; random: anywhere")
    reference: Literal["window_start", "random"] = Field(
        "window_start", description="reference frame: the window's first frame (anchors the phase) or any frame")
    cond_dropout: float = Field(0.1, ge=0, le=1, description="p(motion -> learned null token), for guidance")
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    prediction_type: Literal["v_prediction"] = "v_prediction"
    timestep_shift: float = Field(
        3.0, gt=0, description="training timesteps t = T * s u / (1 + (s - 1) u), u ~ U(0, 1): 1 = uniform; > 1 "
                               "trains the high-noise steps, where a window's motion is decided, more often")
    steps: int = Field(250, ge=1, description="optimiser steps")
    batch_size: int = Field(4, ge=1, description="windows per step (per process)")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1.5e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="upper bound of the EMA decay")
    ema_power: float = Field(0.5, gt=0, description="EMA warmup: decay = 1 - (1 + step) ** -power")
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(25, ge=1)
    val_videos: int = Field(8, ge=1, description="VAL videos for the fixed-noise validation loss")
    val_timesteps: int = Field(4, ge=1, description="fixed timesteps per VAL video")
    motion_eval: MotionEvalConfig = MotionEvalConfig()

    @model_validator(mode="after")
    def _consistent_blocks(self) -> "DiffusionConfig":
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.num_attention_heads) != n:
            raise ValueError("block_out_channels, down_block_types and num_attention_heads need one entry per block")
        for t in self.down_block_types:
            if t not in ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"):
                raise ValueError(f"unknown down block type {t!r}")
        for c, h in zip(self.block_out_channels, self.num_attention_heads):
            if c % UNET_NORM_GROUPS:
                raise ValueError(f"block channels must be multiples of {UNET_NORM_GROUPS} (the UNet's GroupNorm), "
                                 f"not {c}")
            if c % h:
                raise ValueError(f"num_attention_heads {h} must divide block channels {c}")
        return self

    @property
    def time_ids_fps(self) -> float:
        return self.added_time_ids.fps if self.added_time_ids.fps is not None else self.fps
