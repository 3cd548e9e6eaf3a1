"""Typed, validated configuration read from ``params.yaml``.

Every knob of the pipeline lives in ``params.yaml``; this module turns it into frozen pydantic
objects so that a typo or an out-of-range value fails loudly *with the key's path and line*
instead of being silently ignored deep inside a training loop.

Profiles: ``profile: quality`` deep-merges ``profiles.quality`` over the base sections, so the
tiny CPU demo, the 30-minute quality run and the paper-scale GPU run share one file. A value set at
the top level to something other than its built-in default wins over the profile (``dvc exp run -S``
must mean what it says).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from lfmcdm.config_base import Range, Section, SplitFractions, non_empty_path
from lfmcdm.settings.diffusion import DiffusionConfig, LatentsConfig, VaeConfig
from lfmcdm.settings.distill import DistillConfig
from lfmcdm.settings.evaluate import EvaluateConfig
from lfmcdm.settings.loader import ConfigError, key_lines, load_yaml
from lfmcdm.settings.mafe import MafeConfig
from lfmcdm.settings.phantom import A4cConfig
from lfmcdm.settings.pseudo import PseudoConfig
from lfmcdm.settings.synthesis import SynthesisConfig

PARAMS_FILE = "params.yaml"


class PhantomConfig(Section):
    """Synthetic EchoNet-format dataset used when no real data is configured."""

    kind: Literal["a4c", "ellipse"] = Field("a4c", description="a4c: apical four-chamber view; ellipse: one dark ellipse")
    n_videos: int = Field(64, gt=0)
    n_frames: Range = Range(low=64, high=96)
    fps: float = Field(50.0, gt=0)
    size: int = Field(112, ge=32)
    heart_rate_bpm: Range = Range(low=50, high=120)
    ef_percent: Range = Range(low=15, high=80)
    noise_std: Range = Range(low=4, high=14)
    gain: Range = Range(low=0.8, high=1.2)
    splits: SplitFractions = SplitFractions(TRAIN=0.625, VAL=0.1875, TEST=0.1875)  # 40 / 12 / 12 of 64
    out_dir: str = "data/raw/phantom"
    workers: int = Field(0, ge=0, description="processes rendering videos; 0 = one per CPU core (same files either way)")
    a4c: A4cConfig = A4cConfig()

    @field_validator("out_dir")
    @classmethod
    def _out_dir_not_empty(cls, value: str) -> str:
        return non_empty_path(value)


class DataConfig(Section):
    """Where the source videos are and how they are normalised on ingest."""

    echonet_root: str | None = None
    target_fps: float = Field(50.0, gt=0)
    frame_size: int = Field(112, ge=16)
    min_frames: int = Field(32, ge=2)
    max_videos: int | None = Field(None, gt=0)
    workers: int = Field(0, ge=0, description="0 = one per CPU core")
    max_table_mb: int = Field(64, gt=0, description="FileList.csv / VolumeTracings.csv larger than this are refused")
    max_video_mb: int = Field(256, gt=0, description="video files larger than this are quarantined unread")
    max_frames: int = Field(4096, gt=0, description="decoding stops (and the video is quarantined) past this")
    fps_tolerance: float | None = Field(0.02, ge=0, description="relative; container fps vs FileList FPS; null = off")

    @field_validator("echonet_root")
    @classmethod
    def _root_not_empty(cls, value: str | None) -> str | None:
        return None if value is None else non_empty_path(value)


class TrackingConfig(Section):
    experiment: str = "lfmcdm"
    tracking_uri: str = "sqlite:///mlflow.db"


class TrainConfig(Section):
    """Settings shared by every training stage."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    num_workers: int = Field(0, ge=0, description="DataLoader workers")
    torch_threads: int = Field(0, ge=0, description="0 = leave torch's default")
    channels_last: bool = Field(False, description="the VAE trains and bulk-encodes (cache_latents) in "
                                "channels-last memory format: the same model up to rounding, 1.2-1.5x faster on "
                                "CPU (oneDNN); off in the demo, whose synthetic-only EF R^2 moved with the rounding")
    malloc_cache_mb: int = Field(1024, ge=0, description="glibc keeps freed memory for reuse by allocations up "
                                 "to this size (MB) in every stage process: no page faults for each step's "
                                 "tensors (MCDM training 1.15x faster on CPU); 0 = glibc's defaults")


class Params(Section):
    """The whole ``params.yaml``."""

    seed: int = Field(0, ge=0, le=2**32 - 1, description="numpy/torch seeds must be non-negative 32-bit")
    profile: str | None = None
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    phantom: PhantomConfig = PhantomConfig()
    data: DataConfig = DataConfig()
    tracking: TrackingConfig = TrackingConfig()
    train: TrainConfig = TrainConfig()
    pseudo: PseudoConfig = PseudoConfig()
    mafe: MafeConfig = MafeConfig()
    vae: VaeConfig = VaeConfig()
    latents: LatentsConfig = LatentsConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    distill: DistillConfig = DistillConfig()
    synthesis: SynthesisConfig = SynthesisConfig()
    evaluate: EvaluateConfig = EvaluateConfig()

    def section(self, name: str) -> Any:
        """The config object of one section, by name (stages declare the sections they read)."""
        return getattr(self, name)


def _deep_merge(base: dict[str, Any], override: dict[str, Any], path: str) -> dict[str, Any]:
    """Merge ``override`` into ``base`` recursively (unknown keys are caught by validation afterwards)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}.{key}"
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value, where)
        else:
            merged[key] = value
    return merged


_UNSET = object()


def _apply_profile(base: dict[str, Any], profile: dict[str, Any], defaults: Any, explicit: Any) -> dict[str, Any]:
    """Lay ``profile`` over ``base``, except where params.yaml's top level sets a non-default value.

    Explicit values win: ``dvc exp run -S synthesis.n_videos=128`` (or an edit) changes the top level,
    and a profile that silently replaced it would make ``dvc exp show``/``params diff`` show values that
    were never used. A profile fills in the values still at their built-in defaults.
    """
    merged = copy.deepcopy(base)
    for key, value in profile.items():
        default = defaults.get(key, _UNSET) if isinstance(defaults, dict) else _UNSET
        mine = explicit.get(key, _UNSET) if isinstance(explicit, dict) else _UNSET
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _apply_profile(merged[key], value, default, mine)
        elif mine is _UNSET or mine == default:
            merged[key] = value
    return merged


def _where(loc: tuple[str, ...], source: str, lines: dict[tuple[str, ...], int], profile: str | None) -> str:
    """``file:line: key.path`` for an error at ``loc``: the line that set the value, in the profile if it did."""
    for n in range(len(loc), 0, -1):
        if profile is not None and ("profiles", profile, *loc[:n]) in lines:
            return f"{source}:{lines[('profiles', profile, *loc[:n])]}: profiles.{profile}.{'.'.join(loc)}"
        if loc[:n] in lines:
            return f"{source}:{lines[loc[:n]]}: {'.'.join(loc)}"
    return f"{source}: {'.'.join(loc)}"


def _format_errors(err: ValidationError, source: str, lines: dict[tuple[str, ...], int], profile: str | None) -> list[str]:
    out = []
    for item in err.errors():
        loc = tuple(str(p) for p in item["loc"])
        got = f" (got {item['input']!r})" if item["type"] != "missing" and not isinstance(item["input"], dict) else ""
        out.append(f"  {_where(loc, source, lines, profile)}: {item['msg']}{got}")
    return out


#: Keys dvc.yaml reads from params.yaml's top level (``${synthesis.cohort}`` names its outputs): a profile
#: that overrode one would make DVC look for outputs the stages never write.
DVC_TEMPLATED = (("synthesis", "cohort"),)


def _check_profiles_keep_dvc_keys(profiles: dict[str, Any], source: str, lines: dict[tuple[str, ...], int]) -> None:
    for name, overrides in profiles.items():
        for path in DVC_TEMPLATED:
            node: Any = overrides
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if node is not None:
                line = lines.get(("profiles", name, *path))
                where = f"{source}:{line}" if line else source
                raise ConfigError(f"{where}: profiles.{name}.{'.'.join(path)}: dvc.yaml reads this key from the top "
                                  f"level of params.yaml; set it there, not in a profile")


def _with_profile(raw: dict[str, Any], profiles: dict[str, Any], profile: str) -> dict[str, Any]:
    """The raw mapping with ``profiles[profile]`` laid over the base sections (see :func:`_apply_profile`)."""
    defaults = Params().model_dump(mode="json", exclude={"profiles", "profile"})
    explicit = {k: v for k, v in raw.items() if k not in ("profiles", "profile")}
    base = _deep_merge(defaults, explicit, "")
    overrides = profiles[profile] if isinstance(profiles[profile], dict) else {}
    return {**_apply_profile(base, overrides, defaults, explicit), "profile": profile, "profiles": profiles}


def _validate(raw: dict[str, Any]) -> Params:
    """Strict validation: JSON-mode strict types, so ``true`` is no int, ``"5"`` no number and lists become tuples."""
    try:
        text = json.dumps(raw, allow_nan=True, default=str)
    except (TypeError, ValueError) as err:
        raise ValueError(f"not representable as plain data: {err}") from None
    return Params.model_validate_json(text, strict=True)


def parse_params(raw: dict[str, Any] | None, source: str = PARAMS_FILE, text: str | None = None) -> Params:
    """Validate a raw mapping (already loaded YAML) into :class:`Params`, applying the selected profile.

    Every profile is validated, selected or not (a typo in ``profiles.paper`` must not wait for the
    paper run to surface); errors inside a profile point at the profile's line.
    """
    raw = dict(raw or {})
    lines = key_lines(text) if text else {}
    profiles = raw.get("profiles") if isinstance(raw.get("profiles"), dict) else {}
    _check_profiles_keep_dvc_keys(profiles, source, lines)
    profile = raw.get("profile")
    line = lines.get(("profile",))
    where = f"{source}:{line}" if line else source
    if profile is not None and (not isinstance(profile, str) or profile not in profiles):
        raise ConfigError(f"{where}: profile: unknown profile {profile!r} (defined: {', '.join(profiles) or 'none'})")
    if "profile" in raw and profile is None and profiles:  # dvc.yaml's stages read `profiles.${profile}`: null breaks every stage
        raise ConfigError(f"{where}: profile: null, but dvc.yaml reads profiles.${{profile}}; name one of "
                          f"{', '.join(profiles)} (a profile of {{}} means no overrides)")
    errors: list[str] = []
    result: Params | None = None
    for name in [profile, *(p for p in profiles if p != profile)]:
        # a profile's own values are checked over the defaults too: an explicit top-level value may
        # outrank one of them here, but the profile still must not hold a value that can never load
        candidates = [raw] if name is None else [_with_profile(raw, profiles, name), _with_profile({}, profiles, name)]
        for n, candidate in enumerate(candidates):
            try:
                params = _validate(candidate)
            except ValidationError as err:
                errors += _format_errors(err, source, lines, name)
                continue
            if name == profile and n == 0:
                result = params
    if errors or result is None:
        raise ConfigError("\n".join([f"{source}: invalid configuration", *dict.fromkeys(errors)]))
    return result


def load_params(path: str | Path = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate ``params.yaml``; ``overrides`` (nested dict) is merged on top, e.g. by tests."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found (run from the repository root or pass --params)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    raw = load_yaml(text, str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    if overrides:
        raw = _deep_merge(raw, overrides, "overrides")
    return parse_params(raw, source=str(path), text=text)
