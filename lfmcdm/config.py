"""Typed, validated configuration read from ``params.yaml``.

Every knob of the pipeline lives in ``params.yaml``; this module turns it into frozen pydantic
objects so that a typo or an out-of-range value fails loudly *with the key's path and line*
instead of being silently ignored deep inside a training loop.

Profiles: ``profile: quality`` deep-merges ``profiles.quality`` over the base sections, so the
tiny CPU demo, the 30-minute quality run and the paper-scale GPU run share one file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from lfmcdm.config_base import Range, Section, SplitFractions
from lfmcdm.settings.diffusion import DiffusionConfig, LatentsConfig, VaeConfig
from lfmcdm.settings.evaluate import EvaluateConfig
from lfmcdm.settings.mafe import MafeConfig
from lfmcdm.settings.phantom import A4cConfig
from lfmcdm.settings.pseudo import PseudoConfig
from lfmcdm.settings.synthesis import SynthesisConfig

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """Raised for an unreadable, unknown or out-of-range setting; the message names file, line and key."""


class PhantomConfig(Section):
    """Synthetic EchoNet-format dataset used when no real data is configured."""

    kind: Literal["a4c", "ellipse"] = Field("a4c", description="a4c: apical four-chamber view; ellipse: one dark ellipse")
    n_videos: int = Field(48, gt=0)
    n_frames: Range = Range(low=64, high=96)
    fps: float = Field(50.0, gt=0)
    size: int = Field(112, ge=32)
    heart_rate_bpm: Range = Range(low=50, high=120)
    ef_percent: Range = Range(low=15, high=80)
    noise_std: Range = Range(low=4, high=14)
    gain: Range = Range(low=0.8, high=1.2)
    splits: SplitFractions = SplitFractions()
    out_dir: str = "data/raw/phantom"
    a4c: A4cConfig = A4cConfig()


class DataConfig(Section):
    """Where the source videos are and how they are normalised on ingest."""

    echonet_root: str | None = None
    target_fps: float = Field(50.0, gt=0)
    frame_size: int = Field(112, ge=16)
    min_frames: int = Field(32, ge=2)
    max_videos: int | None = Field(None, gt=0)
    workers: int = Field(0, ge=0, description="0 = one per CPU core")


class TrackingConfig(Section):
    experiment: str = "lfmcdm"
    tracking_uri: str = "sqlite:///mlflow.db"


class TrainConfig(Section):
    """Settings shared by every training stage."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    num_workers: int = Field(0, ge=0, description="DataLoader workers")
    torch_threads: int = Field(0, ge=0, description="0 = leave torch's default")


class Params(Section):
    """The whole ``params.yaml``."""

    seed: int = 0
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
    synthesis: SynthesisConfig = SynthesisConfig()
    evaluate: EvaluateConfig = EvaluateConfig()

    def section(self, name: str) -> Any:
        """The config object of one section, by name (stages declare the sections they read)."""
        return getattr(self, name)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every mapping key path in a YAML document to its 1-based line number."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key_path = path + (str(key_node.value),)
                lines[key_path] = key_node.start_mark.line + 1
                walk(value_node, key_path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (str(i),)] = item.start_mark.line + 1
                walk(item, path + (str(i),))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


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


def _format_error(err: ValidationError, source: str, lines: dict[tuple[str, ...], int]) -> str:
    out = [f"{source}: invalid configuration"]
    for item in err.errors():
        loc = tuple(str(p) for p in item["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        where = f"{source}:{line}" if line else source
        got = f" (got {item['input']!r})" if item["type"] != "missing" and not isinstance(item["input"], dict) else ""
        out.append(f"  {where}: {'.'.join(loc)}: {item['msg']}{got}")
    return "\n".join(out)


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


def parse_params(raw: dict[str, Any] | None, source: str = PARAMS_FILE, text: str | None = None) -> Params:
    """Validate a raw mapping (already loaded YAML) into :class:`Params`, applying the selected profile."""
    raw = dict(raw or {})
    lines = _key_lines(text) if text else {}
    if isinstance(raw.get("profiles"), dict):
        _check_profiles_keep_dvc_keys(raw["profiles"], source, lines)
    profile = raw.get("profile")
    if profile is not None:
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            line = lines.get(("profile",))
            where = f"{source}:{line}" if line else source
            raise ConfigError(f"{where}: profile: unknown profile {profile!r} (defined: {', '.join(profiles) or 'none'})")
        base = Params().model_dump(exclude={"profiles", "profile"})
        base = _deep_merge(base, {k: v for k, v in raw.items() if k not in ("profiles", "profile")}, "")
        raw = {**_deep_merge(base, profiles[profile], f"profiles.{profile}"), "profile": profile, "profiles": profiles}
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source, lines)) from None


def load_params(path: str | Path = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate ``params.yaml``; ``overrides`` (nested dict) is merged on top, e.g. by tests."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found (run from the repository root or pass --params)")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    if overrides:
        raw = _deep_merge(raw, overrides, "overrides")
    return parse_params(raw, source=str(path), text=text)

