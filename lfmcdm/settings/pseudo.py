"""``pseudo`` section: label-free cardiac phase, pseudo optical flow, self-supervised ReID.

Defaults are the tiny CPU demo profile; each sub-section is read by one part of the stage
(``phase`` also by ingest, which computes the phase in its workers).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lfmcdm.config_base import Section


class PhaseConfig(Section):
    """Label-free ED/ES of every beat: ventricles found as the moving blood nearer the apex (lfmcdm/data/phase.py)."""

    min_frames: int = Field(16, ge=4, description="shorter clips are flagged, not estimated")
    blank_level: float = Field(8.0, ge=0, description="a clip whose brightest pixel is at or below this is blank")
    spatial_sigma: float = Field(2.0, ge=0, description="Gaussian blur (px) that averages out speckle before analysis")
    temporal_sigma: float = Field(0.7, ge=0, description="Gaussian smoothing of the cardiac signal (frames)")
    sector_erode_px: int = Field(5, ge=1, description="erosion (px) of the sector mask, to drop its flickering edge")
    min_region_px: int = Field(64, ge=1, description="fewer analysed pixels than this: use the whole sector")
    dark_softness: float = Field(0.25, gt=0, description="width of the soft blood threshold, in std of the mean image")
    loading_fraction: float = Field(0.25, gt=0, lt=1, description="pixels loading at least this share of the "
                                    "strongest on the main mode form the chamber groups")
    minor_group_share: float = Field(0.2, ge=0, le=1, description="a counter-phase group weaker than this share "
                                     "of the main one is ignored (one chamber)")
    atria_weight: float = Field(6.0, ge=0, le=10, description="weight of the atria's blood area (the anti-phase "
                                "chambers below the ventricles), subtracted from the ventricles' in the cardiac "
                                "signal: atrial volume peaks at end-systole (0 = ventricles only)")
    basal_exclude: float = Field(0.5, ge=0, lt=1, description="share of the ventricles' moving pixels farthest from "
                                 "the apex (their base, where opening valve leaflets swing in) left out of the signal")
    es_refine_frames: int = Field(3, ge=0, description="each ES moves to the minimum of the ventricles' apical "
                                  "blood area within this many frames (0 = off): the valve leaflets swing into the "
                                  "base and the atria peak as the mitral valve opens, both after ES")
    es_refine_basal_exclude: float = Field(0.85, ge=0, lt=1, description="share of the ventricles' moving pixels "
                                           "nearest the valves left out of that apical signal")
    min_depth_gap: float = Field(0.05, gt=0, description="anti-phase groups 2x this share of the sector depth apart: "
                                 "the upper one is the ventricles (apical view); chosen ventricles that far *below* = "
                                 "no confidence")
    max_systole_share: float = Field(0.55, gt=0, lt=1, description="systole longer than this share of the cycle "
                                     "= ED/ES look swapped (confidence falls to 0 over the next 10 %)")
    min_beat_swing: float = Field(0.35, ge=0, le=1, description="beats with a smaller ED-ES swing (share of the "
                                  "median) are noise, not beats")
    edge_turn: float = Field(0.15, ge=0, le=1, description="an ED (ES) at a clip edge without its partner must "
                             "fall (be fallen into) by this share of the median swing")
    single_beat_confidence: float = Field(0.6, ge=0, le=1, description="periodicity evidence of a clip too short "
                                          "to measure a period")
    min_confidence: float = Field(0.35, ge=0, le=1, description="below this the clip is flagged with the reason")
    min_motion_rms: float = Field(1.0, ge=0, description="weaker dominant mode (RMS gray levels) = no motion")
    min_dominance: float = Field(1.15, ge=1, description="lower 1st/2nd singular value ratio = noise only")
    min_period_s: float = Field(0.3, gt=0, description="shortest cardiac period searched (200 bpm)")
    max_period_s: float = Field(2.0, gt=0, description="longest cardiac period searched (30 bpm)")
    min_periodicity: float = Field(0.2, ge=-1, le=1, description="autocorrelation a period peak must reach to be trusted")
    max_lag_share: float = Field(0.75, gt=0, le=1, description="longest trusted lag / clip length")
    period_peak_share: float = Field(0.8, gt=0, le=1, description="first peak this close to the top is the period")
    es_window: float = Field(0.6, gt=0, le=1, description="ES is searched this share of a period after ED")
    min_systole_frames: int = Field(2, ge=1, description="smallest ES - ED gap (frames)")

    @model_validator(mode="after")
    def _period_order(self) -> "PhaseConfig":
        if self.min_period_s >= self.max_period_s:
            raise ValueError(f"min_period_s ({self.min_period_s}) must be < max_period_s ({self.max_period_s})")
        return self


class DisConfig(Section):
    """OpenCV DIS optical flow (``cv2.DISOpticalFlow``); the preset sets anything not listed."""

    preset: Literal["ultrafast", "fast", "medium"] = "medium"
    finest_scale: int = Field(0, ge=0)
    patch_size: int = Field(8, ge=4)
    patch_stride: int = Field(3, ge=1)
    grad_descent_iterations: int = Field(25, ge=1)
    variational_refinement_iterations: int = Field(5, ge=0)
    variational_refinement_alpha: float = Field(20.0, ge=0, description="smoothness weight")
    variational_refinement_delta: float = Field(5.0, ge=0, description="colour constancy weight")
    variational_refinement_gamma: float = Field(10.0, ge=0, description="gradient constancy weight")


class FarnebackConfig(Section):
    """OpenCV Farnebäck optical flow (``cv2.calcOpticalFlowFarneback``)."""

    pyr_scale: float = Field(0.5, gt=0, lt=1)
    levels: int = Field(3, ge=1)
    winsize: int = Field(15, ge=3)
    iterations: int = Field(3, ge=1)
    poly_n: int = Field(5, ge=3)
    poly_sigma: float = Field(1.2, gt=0)


class FlowConfig(Section):
    """Pseudo optical flow between the label-free ED/ES/mid frames."""

    method: Literal["dis", "farneback"] = "dis"
    pre_blur_sigma: float = Field(1.0, ge=0, description="Gaussian blur (px) applied to both frames to tame speckle")
    workers: int = Field(0, ge=0, description="processes estimating the phase, then the flows; 0 = one per CPU core")
    dis: DisConfig = DisConfig()
    farneback: FarnebackConfig = FarnebackConfig()


class ReidConfig(Section):
    """Self-supervised re-identification encoder (NT-Xent on frame pairs of one video)."""

    input_size: int = Field(64, ge=16, description="frames are resized to this square before the CNN")
    channels: tuple[int, ...] = Field((16, 32, 64, 64), min_length=1, description="conv widths, one stride-2 block each")
    embed_dim: int = Field(64, ge=2)
    pooled: int = Field(2, ge=1, description="last feature map is average-pooled to pooled x pooled (coarse layout)")
    steps: int = Field(300, ge=0)
    batch_videos: int = Field(32, ge=2, description="videos per batch (two frames each); capped by the TRAIN count")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    temperature: float = Field(0.1, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    gain_jitter: float = Field(0.2, ge=0, description="augmentation: multiplicative brightness jitter")
    gamma_jitter: float = Field(0.2, ge=0, description="augmentation: log-gamma jitter")
    noise_std: float = Field(6.0, ge=0, description="augmentation: additive Gaussian noise (gray levels)")
    shift_px: int = Field(4, ge=0, description="augmentation: max translation (px)")
    embed_batch: int = Field(256, ge=1, description="frames per forward pass when embedding")
    eval_exclude_frames: int = Field(10, ge=0, description="top-1 skips own frames this close to the query")
    eval_queries_per_video: int = Field(16, ge=1, description="query frames per video (evenly spaced) for top-1")
    eval_splits: tuple[Literal["TRAIN", "VAL", "TEST"], ...] = Field(("VAL", "TEST"), min_length=1)


class PseudoConfig(Section):
    phase: PhaseConfig = PhaseConfig()
    flow: FlowConfig = FlowConfig()
    reid: ReidConfig = ReidConfig()
