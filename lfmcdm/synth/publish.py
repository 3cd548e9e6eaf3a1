"""Register the evaluated model set as ``lfmcdm-generator`` and move ``champion`` only on evidence.

Called at the end of the ``evaluate`` stage: that is the first point where one consistent set
(the ``models/`` folders a cohort was just generated from) has been *measured*. Each run logs a new
version (pyfunc model: the four model folders as artifacts, signature with a params schema, pinned
requirements). The alias ``champion`` moves to it only when

* there is no champion yet, or
* the new version's **ReID Fréchet distance to real frames** (``frechet_reid_frame_distance``,
  lower is better) beats the champion's, *and* both were measured the same way: same ReID encoder,
  same real reference/held-out videos, same ``evaluate`` settings, same cohort plan settings and
  seed (the version tag ``lfmcdm.eval_key``). Numbers from different yardsticks are never compared;
  such a version stays unpromoted until a person moves the alias (README, "Model registry").
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


from lfmcdm.config import Params
from lfmcdm.data.tables import read_videos
from lfmcdm.eval.privacy import PrivacyFilter
from lfmcdm.fingerprint import content_version
from lfmcdm.layout import GENERATOR_NAME, Layout
from lfmcdm.models.pipeline import check_mafe, check_pair
from lfmcdm.synth.pyfunc import PRIVACY_FILE, SETTINGS_FILE, GeneratorModel

CHAMPION = "champion"
MEASURE = "frechet_reid_frame_distance"  # metrics/eval.json key; lower = closer to real frames
MEASURE_TAG = f"eval.{MEASURE}"
KEY_TAG = "lfmcdm.eval_key"

#: Distributions the generator imports at prediction time, pinned to the installed (= requirements.lock)
#: versions. ``lfmcdm`` itself is not on an index: install the package (wheel or checkout) next to them.
RUNTIME_PACKAGES = ("mlflow", "torch", "numpy", "pandas", "diffusers", "safetensors", "accelerate", "av",
                    "opencv-python-headless", "scipy", "pydantic", "pyyaml", "pyarrow", "tqdm")


def pinned_requirements() -> list[str]:
    """``name==version`` of each runtime package installed here."""
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins


def signature(params: Params):
    """Input columns, and the sampling params with this run's synthesis settings as defaults."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    cfg = params.synthesis
    return ModelSignature(
        inputs=Schema([ColSpec("string", "appearance_video"), ColSpec("string", "motion_video"),
                       ColSpec("long", "seed")]),
        params=ParamSchema([ParamSpec("steps", "long", cfg.steps),
                            ParamSpec("guidance_scale", "double", cfg.guidance_scale),
                            ParamSpec("sampler", "string", cfg.sampler)]))


def settings(params: Params) -> dict[str, Any]:
    """What the generator needs besides weights: how clips were made and how the motion bank encodes."""
    return {"clip_fps": params.data.target_fps, "frame_size": params.data.frame_size,
            "phase": params.pseudo.phase.model_dump(mode="json"), "bank_times_s": list(params.mafe.bank_times_s),
            "device": params.train.device,
            "sampling": {"steps": params.synthesis.steps, "guidance_scale": params.synthesis.guidance_scale,
                         "sampler": params.synthesis.sampler}}


def eval_key(params: Params, layout: Layout) -> str:
    """Identity of the yardstick: two versions' measures are comparable only if this is equal."""
    cfg = params.evaluate
    real = sorted((v["file_name"], v["sha256"], v["split"])
                  for v in read_videos(layout, splits=tuple(cfg.reference_splits) + tuple(cfg.heldout_splits)))
    plan = params.synthesis.model_dump(mode="json", include={"n_videos", "strategy", "appearance_splits",
                                                             "motion_splits", "ef_range", "n_frames"})
    blob = {"reid": content_version(layout.model_dir("reid")), "real": real, "plan": plan,
            "evaluate": cfg.model_dump(mode="json", exclude={"cohort"}), "seed": params.seed}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _privacy_reference(params: Params, layout: Layout, out: Path) -> None:
    """The bundle's privacy filter: the very rule the synthesize stage ships videos by."""
    PrivacyFilter.from_layout(layout, params.synthesis).save(out)


@dataclass(frozen=True)
class Published:
    version: str
    champion: bool
    reason: str


def publish_generator(params: Params, layout: Layout, metrics: dict[str, Any]) -> Published:
    """Log + register the generator from ``models/`` (inside the active MLflow run) and apply the alias rule."""
    import mlflow

    dirs = {k: layout.model_dir(k) for k in ("mcdm", "vae", "mafe", "reid")}
    if layout.model_dir("distill").is_dir():  # the few-step student, for sampler lcm
        dirs["distill"] = layout.model_dir("distill")
        check_pair(dirs["distill"], dirs["vae"])
    check_pair(dirs["mcdm"], dirs["vae"])  # never register an inconsistent set
    check_mafe(dirs["mcdm"], dirs["mafe"])
    with tempfile.TemporaryDirectory(prefix="lfmcdm-generator-") as tmp:
        (Path(tmp) / SETTINGS_FILE).write_text(json.dumps(settings(params), indent=2, sort_keys=True) + "\n")
        _privacy_reference(params, layout, Path(tmp) / PRIVACY_FILE)
        artifacts = {**{k: str(p) for k, p in dirs.items()}, "settings": str(Path(tmp) / SETTINGS_FILE),
                     "privacy": str(Path(tmp) / PRIVACY_FILE)}
        info = mlflow.pyfunc.log_model(name="generator", python_model=GeneratorModel(), artifacts=artifacts,
                                       signature=signature(params), pip_requirements=pinned_requirements(),
                                       registered_model_name=GENERATOR_NAME)
    new = str(info.registered_model_version)
    tags = {KEY_TAG: eval_key(params, layout), **{f"lfmcdm.{k}_version": content_version(p) for k, p in dirs.items()}}
    value = metrics.get(MEASURE)
    if value is not None:
        tags[MEASURE_TAG] = repr(float(value))
    return promote(new, tags)


def promote(new: str, tags: dict[str, str], name: str = GENERATOR_NAME) -> Published:
    """Tag version ``new`` and move ``champion`` to it when the alias rule (module docstring) says so."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, new, key, value)
    try:
        holder = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        holder = None
    moved, reason = _decide(holder.tags if holder else None, tags)
    if moved:
        client.set_registered_model_alias(name, CHAMPION, new)
    return Published(new, moved, reason)


def _decide(holder: dict[str, str] | None, new: dict[str, str]) -> tuple[bool, str]:
    if holder is None:
        return True, "first version"
    if holder.get(KEY_TAG) != new.get(KEY_TAG):
        return False, "champion measured with another yardstick (ReID, real videos or evaluate settings differ)"
    if MEASURE_TAG not in new:
        return False, f"{MEASURE} not computable on this run"
    if MEASURE_TAG not in holder or float(new[MEASURE_TAG]) < float(holder[MEASURE_TAG]):
        return True, f"{MEASURE} {float(new[MEASURE_TAG]):.4g} < champion's {holder.get(MEASURE_TAG, 'n/a')}"
    return False, f"{MEASURE} {float(new[MEASURE_TAG]):.4g} not below champion's {float(holder[MEASURE_TAG]):.4g}"
