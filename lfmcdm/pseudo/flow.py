"""Pseudo optical flow between the label-free phase frames (OpenCV DIS by default, Farnebäck optional).

The paper distils UnSAMFlow; a classical estimator keeps the demo offline and CPU-fast and is
pluggable through ``pseudo.flow.method``. Per video four flows are stored, in the contract's
order ``[ED->ES, ES->ED, MID->ED, MID->ES]``; "A->B" is forward flow: pixel ``p`` of frame A
moves to ``p + flow(p)`` in frame B (OpenCV's ``calcOpticalFlow*(A, B)`` convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lfmcdm.atomic import save_npy
from lfmcdm.settings.pseudo import FlowConfig

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def flow_pairs(ed: int, es: int) -> list[tuple[int, int]]:
    """(source, target) frame pairs of the four contract flows."""
    mid = (ed + es) // 2
    return [(ed, es), (es, ed), (mid, ed), (mid, es)]


def _prepare(frame: np.ndarray, cfg: FlowConfig) -> np.ndarray:
    """uint8 frame, blurred so that the estimator follows tissue rather than frame-to-frame speckle."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if cfg.pre_blur_sigma > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), cfg.pre_blur_sigma)
    return frame


def _dis(cfg: FlowConfig) -> cv2.DISOpticalFlow:
    d = cfg.dis
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[d.preset])
    dis.setFinestScale(d.finest_scale)
    dis.setPatchSize(d.patch_size)
    dis.setPatchStride(d.patch_stride)
    dis.setGradientDescentIterations(d.grad_descent_iterations)
    dis.setVariationalRefinementIterations(d.variational_refinement_iterations)
    dis.setVariationalRefinementAlpha(d.variational_refinement_alpha)
    dis.setVariationalRefinementDelta(d.variational_refinement_delta)
    dis.setVariationalRefinementGamma(d.variational_refinement_gamma)
    return dis


def compute_flow(frame_a: np.ndarray, frame_b: np.ndarray, cfg: FlowConfig | None = None) -> np.ndarray:
    """Forward flow ``(H, W, 2)`` float32 (dx, dy) in pixels from ``frame_a`` to ``frame_b`` (uint8)."""
    cfg = cfg or FlowConfig()
    a, b = _prepare(frame_a, cfg), _prepare(frame_b, cfg)
    if cfg.method == "dis":
        return _dis(cfg).calc(a, b, None).astype(np.float32)
    f = cfg.farneback
    return cv2.calcOpticalFlowFarneback(
        a, b, None, f.pyr_scale, f.levels, f.winsize, f.iterations, f.poly_n, f.poly_sigma, 0
    ).astype(np.float32)


def video_flows(clip: np.ndarray, ed: int, es: int, cfg: FlowConfig | None = None) -> np.ndarray:
    """The contract's four flows of one clip: float16 ``(4, H, W, 2)``."""
    return np.stack([compute_flow(clip[a], clip[b], cfg) for a, b in flow_pairs(ed, es)]).astype(np.float16)


@dataclass(frozen=True)
class FlowJob:
    """One video's flows, computed in a worker process (picklable; the worker reads and writes files)."""

    clip_path: str
    out_path: str
    ed: int
    es: int
    cfg: FlowConfig


def flow_one(job: FlowJob) -> str:
    """Worker entry point: compute and atomically save one video's flows; returns the output path."""
    clip = np.load(job.clip_path, mmap_mode="r")
    save_npy(job.out_path, video_flows(clip, job.ed, job.es, job.cfg))
    return job.out_path


def warp_backward(frame_b: np.ndarray, flow_ab: np.ndarray) -> np.ndarray:
    """Frame A reconstructed from frame B through the forward flow A->B (``A(p) ~ B(p + flow(p))``).

    Used to check a flow's direction: with the right sign the reconstruction is close to A.
    """
    h, w = flow_ab.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = np.asarray(flow_ab, dtype=np.float32)
    return cv2.remap(np.asarray(frame_b, dtype=np.float32), xx + flow[..., 0], yy + flow[..., 1],
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def end_point_error(flow: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean Euclidean distance between two flows over ``mask`` (NaN on an empty mask)."""
    if not mask.any():
        return float("nan")
    diff = np.asarray(flow, dtype=np.float32)[mask] - np.asarray(truth, dtype=np.float32)[mask]
    return float(np.linalg.norm(diff, axis=-1).mean())
