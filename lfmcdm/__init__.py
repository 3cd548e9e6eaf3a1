"""lfmcdm: label-free motion-conditioned diffusion for cardiac ultrasound, as a reproducible pipeline."""

__version__ = "0.1.0"
