"""The MCDM denoiser: diffusers ``UNetSpatioTemporalConditionModel`` + the motion conditioner.

Inputs per video (latent space):

* channels: the noisy video latent ``(F, C, h, w)`` concatenated with the reference frame's
  latent repeated over the F frames (appearance, and the starting phase of the heartbeat), so the
  UNet has ``2 C`` input channels and predicts ``C`` (the v-prediction target);
* cross-attention: the motion vector projected to ``motion_tokens`` tokens (null token when dropped);
* ``added_time_ids``: SVD's micro-conditioning, three fixed numbers ``[fps, motion_bucket_id,
  noise_aug_strength]`` from ``diffusion.added_time_ids`` (constant, so a learned bias; kept because
  the SVD UNet requires them, and recorded in ``models/mcdm/mcdm.json`` so sampling feeds the same).
"""

from __future__ import annotations

import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch import nn

from lfmcdm.models.conditioning import MotionConditioner
from lfmcdm.settings.diffusion import DiffusionConfig

N_TIME_IDS = 3  # fps, motion bucket, noise augmentation (SVD)
UP_OF_DOWN = {"CrossAttnDownBlockSpatioTemporal": "CrossAttnUpBlockSpatioTemporal",
              "DownBlockSpatioTemporal": "UpBlockSpatioTemporal"}


def build_unet(cfg: DiffusionConfig, latent_channels: int, latent_size: int) -> UNetSpatioTemporalConditionModel:
    """A fresh UNet: ``2 * latent_channels`` in (noisy + reference), ``latent_channels`` out."""
    return UNetSpatioTemporalConditionModel(
        sample_size=latent_size,
        in_channels=2 * latent_channels,
        out_channels=latent_channels,
        down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(UP_OF_DOWN[t] for t in reversed(cfg.down_block_types)),
        block_out_channels=tuple(cfg.block_out_channels),
        addition_time_embed_dim=cfg.addition_time_embed_dim,
        projection_class_embeddings_input_dim=N_TIME_IDS * cfg.addition_time_embed_dim,
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        num_attention_heads=tuple(cfg.num_attention_heads),
        num_frames=cfg.n_frames,
    )


def build_conditioner(cfg: DiffusionConfig, motion_dim: int) -> MotionConditioner:
    return MotionConditioner(motion_dim=motion_dim, cross_attention_dim=cfg.cross_attention_dim,
                             tokens=cfg.motion_tokens, hidden=cfg.motion_hidden)


def time_ids(cfg: DiffusionConfig) -> list[float]:
    """The fixed ``added_time_ids`` values (documented in the module docstring)."""
    ids = cfg.added_time_ids
    return [float(cfg.time_ids_fps), float(ids.motion_bucket_id), float(ids.noise_aug_strength)]


class MCDM(nn.Module):
    """UNet + conditioner as one module, so optimiser, EMA, DDP and checkpoints see one thing."""

    def __init__(self, unet: UNetSpatioTemporalConditionModel, conditioner: MotionConditioner):
        super().__init__()
        self.unet = unet
        self.conditioner = conditioner

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, reference: torch.Tensor, motion: torch.Tensor,
                drop: torch.Tensor | None, added_time_ids: torch.Tensor) -> torch.Tensor:
        """Training forward: context from motion vectors (null token where ``drop``), then the UNet."""
        return self.predict(noisy, timesteps, reference, self.conditioner(motion, drop), added_time_ids)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, reference: torch.Tensor, context: torch.Tensor,
                added_time_ids: torch.Tensor) -> torch.Tensor:
        """Model output ``(B, F, C, h, w)`` for noisy latents ``(B, F, C, h, w)``, references ``(B, C, h, w)``
        and a ready cross-attention ``context`` ``(B, tokens, dim)``."""
        ref = reference.unsqueeze(1).expand(-1, noisy.shape[1], -1, -1, -1)
        return self.unet(torch.cat([noisy, ref.to(noisy.dtype)], dim=2), timesteps, encoder_hidden_states=context,
                         added_time_ids=added_time_ids, return_dict=False)[0]
