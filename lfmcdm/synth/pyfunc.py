"""``lfmcdm-generator``: one consistent model set (MCDM + VAE + MAFE + ReID) as an MLflow pyfunc model.

What a downstream user loads, in any process where the ``lfmcdm`` package is installed (the model
pickles this class by reference; the weights travel as MLflow artifacts, not as repository paths)::

    import mlflow, pandas as pd
    gen = mlflow.pyfunc.load_model("models:/lfmcdm-generator@champion")
    out = gen.predict(pd.DataFrame({"appearance_video": ["a.avi"], "motion_video": ["b.avi"], "seed": [7]}),
                      params={"steps": 25, "guidance_scale": 2.0, "sampler": "dpmsolver++"})
    out.loc[0, "video"]   # uint8 (frames, 112, 112);  out.loc[0, "fps"]

Per row: the appearance video's label-free end-diastolic frame (the ingest phase estimator) is the
reference frame; the motion video's motion trajectory from its label-free ED (``mafe.bank_times_s``)
is encoded by the bundled MAFE, exactly as the motion bank encodes training videos; the bundled
ReID scores the result against the training patients (``privacy_score``, ``privacy_pass``), as
the cohort's privacy filter does. Same seed, same video (per-seed noise, see ``MCDMPipeline``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:  # MLflow is a dependency of the package; the guard keeps this importable for type checkers only
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: Artifact keys of the bundle: the four model folders, the settings, the privacy reference.
ARTIFACTS = ("mcdm", "vae", "mafe", "reid", "settings", "privacy")
SETTINGS_FILE = "generator.json"
PRIVACY_FILE = "privacy.npz"
INPUT_COLUMNS = ("appearance_video", "motion_video", "seed")


class GeneratorModel(PythonModel):
    """MLflow ``PythonModel``: DataFrame of (appearance video, motion video, seed) rows -> videos."""

    def load_context(self, context) -> None:
        from lfmcdm.eval.privacy import PrivacyFilter
        from lfmcdm.models.mafe import load_mafe
        from lfmcdm.models.pipeline import MCDMPipeline, check_pair, check_mafe
        from lfmcdm.models.reid import load_reid
        from lfmcdm.runtime import resolve_device
        from lfmcdm.settings.pseudo import PhaseConfig

        art = {k: Path(v) for k, v in context.artifacts.items()}
        self.settings = json.loads(art["settings"].read_text())
        check_pair(art["mcdm"], art["vae"])  # a clear error, before any weights are used
        check_mafe(art["mcdm"], art["mafe"])
        from lfmcdm.config import TrainConfig

        self.device = resolve_device(TrainConfig(device=self.settings.get("device", "auto")))
        self.pipe = MCDMPipeline.from_dirs(art["mcdm"], art["vae"], device=self.device)
        self.student = (MCDMPipeline.from_dirs(art["distill"], art["vae"], device=self.device)  # sampler lcm
                        if "distill" in art else None)
        self.mafe = load_mafe(art["mafe"], self.device)
        self.reid = load_reid(art["reid"], self.device)
        self.phase = PhaseConfig.model_validate(self.settings["phase"])
        self.privacy = PrivacyFilter.load(art["privacy"])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"lfmcdm-generator: input lacks column(s) {missing}; expected {list(INPUT_COLUMNS)}")
        sampling = {**self.settings["sampling"], **{k: v for k, v in (params or {}).items() if v is not None}}
        rows = [self._one(str(r.appearance_video), str(r.motion_video), int(r.seed), sampling)
                for r in model_input.itertuples(index=False)]
        return pd.DataFrame(rows, columns=["video", "fps", "reference_frame", "privacy_score", "privacy_pass"])

    # ---- one row -----------------------------------------------------------------------------
    def _clip(self, path: str) -> np.ndarray:
        """The video as ingest would store it: grayscale uint8, resampled to the training frame rate."""
        from lfmcdm.data.video_io import read_gray, resample_indices

        if not Path(path).is_file():
            raise FileNotFoundError(f"lfmcdm-generator: no video file {path}")
        frames, fps = read_gray(path)
        size = int(self.settings["frame_size"])
        if frames.shape[1:] != (size, size):
            raise ValueError(f"lfmcdm-generator: {path} is {frames.shape[2]}x{frames.shape[1]}, expected {size}x{size}")
        return frames[resample_indices(len(frames), fps, float(self.settings["clip_fps"]))]

    def _one(self, appearance: str, motion: str, seed: int, sampling: dict[str, Any]) -> dict[str, Any]:
        from lfmcdm.data.phase import estimate_phase
        from lfmcdm.models.motion_vectors import motion_trajectories, trajectory_pairs
        from lfmcdm.models.pipeline import DISTILLED_SAMPLER
        from lfmcdm.models.reid import embed_frames

        fps = float(self.settings["clip_fps"])
        look = self._clip(appearance)
        ed = estimate_phase(look, fps, self.phase).ed
        if ed is None:  # no visible cycle: any frame is as good a reference; say so
            log.warning("lfmcdm-generator: no label-free ED in %s; frame 0 is the reference", appearance)
        reference = self.pipe.encode_reference(look[[ed or 0]])
        beat = self._clip(motion)
        phase = estimate_phase(beat, fps, self.phase)
        if not phase.ok:
            raise ValueError(f"lfmcdm-generator: no label-free ED/ES in the motion video {motion}: {phase.status}")
        pairs = trajectory_pairs(beat, phase.ed, phase.es, fps, self.settings["bank_times_s"])
        vector = motion_trajectories(self.mafe, [pairs], 1, len(pairs), self.device)
        sampler = str(sampling["sampler"])
        pipe = self.student if sampler == DISTILLED_SAMPLER else self.pipe
        if pipe is None:
            raise ValueError("lfmcdm-generator: sampler lcm needs the distilled student; this version bundles none")
        video = pipe(reference, vector, seeds=[seed], sampler=sampler,
                          steps=int(sampling["steps"]), guidance=float(sampling["guidance_scale"])).frames[0]
        score = self.privacy.score(embed_frames(self.reid, video))
        return {"video": video, "fps": float(self.pipe.meta["fps"]), "reference_frame": int(ed or 0),
                "privacy_score": score, "privacy_pass": self.privacy.passes(score)}
