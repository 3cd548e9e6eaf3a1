"""``vae``, ``latents`` and ``diffusion`` sections: AutoencoderKL, latent cache, the MCDM UNet."""

from __future__ import annotations

from lfmcdm.config_base import Section


class VaeConfig(Section):
    pass


class LatentsConfig(Section):
    pass


class DiffusionConfig(Section):
    pass
