"""Fréchet distance between two sets of feature vectors (each summarised as a Gaussian).

    d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

This is the formula behind FID/FVD, applied here to the project's *own* encoders (ReID frame
embeddings, MAFE motion vectors), because Inception/I3D weights cannot be downloaded. The
numbers are therefore not comparable with published FID/FVD values, only with each other and
with the real-vs-real floor the stage reports beside them. With few samples in many dimensions
the estimate is biased upwards (covariances are rank-deficient), which the floor shares.

With more dimensions than samples (motion-bank vectors are thousands of dimensions, cohorts have
tens to thousands of videos) the distance is computed exactly from the samples instead of from
D x D covariances (see :func:`_frechet_from_samples`): same value, no ``sqrtm`` of a huge matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

IMAG_TOLERANCE = 1e-3  # imaginary residue of sqrtm tolerated as round-off (as in pytorch-fid)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(N, D)`` features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least two (N, D) feature vectors, got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> np.ndarray:
    """(S_1 S_2)^(1/2), real part; retried with ``eps`` on the diagonals when singular or complex.

    S_1 S_2 is similar to a PSD matrix, so its square root is real in exact arithmetic;
    a large imaginary part or non-finite result means near-singular covariances, which a tiny
    diagonal offset regularises (the standard treatment of FID implementations).
    """
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all() or (np.iscomplexobj(covmean) and np.abs(covmean.imag).max() > IMAG_TOLERANCE):
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        residue = float(np.abs(covmean.imag).max())
        if residue > IMAG_TOLERANCE:
            warnings.warn(f"Fréchet distance: sqrtm left an imaginary part of {residue:.2e}; using the real part",
                          stacklevel=3)
        covmean = covmean.real
    return covmean


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (>= 0 up to round-off)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mismatched statistics: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm_product(sigma1, sigma2, eps)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def _frechet_from_samples(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of two sample sets from the samples themselves.

    With centred, scaled samples X = (x - mean) / sqrt(N - 1) the covariance is S = X^T X, so
    Tr S = |X|_F^2, and the non-zero eigenvalues of S_a S_b are those of (X_a X_b^T)(X_a X_b^T)^T:
    Tr (S_a S_b)^(1/2) is the sum of the singular values of the N_a x N_b matrix X_a X_b^T.
    Exact (no diagonal offset needed) and O(N_a N_b D) instead of O(D^3).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    xa = (a - a.mean(axis=0)) / np.sqrt(len(a) - 1)
    xb = (b - b.mean(axis=0)) / np.sqrt(len(b) - 1)
    diff = a.mean(axis=0) - b.mean(axis=0)
    nuclear = np.linalg.svd(xa @ xb.T, compute_uv=False).sum()
    return max(float(diff @ diff + (xa**2).sum() + (xb**2).sum() - 2.0 * nuclear), 0.0)


def frechet_between(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float | None:
    """Fréchet distance between two feature sets ``(N, D)``, or None when either has < 2 vectors."""
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return None
    if np.shape(a)[1] > max(len(a), len(b)):  # more dimensions than samples: the sample form is cheaper
        return _frechet_from_samples(a, b)
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b), eps=eps)
