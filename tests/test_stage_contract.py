"""dvc.yaml agrees with what each stage declares it reads (lfmcdm.stages.STAGES; docs/design.md, "How to add a stage").

Drift here is silent in production: a param missing from dvc.yaml means `dvc repro` skips a stage whose
output is stale; a deleted or moved code path in ``deps`` means DVC no longer notices code changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lfmcdm.config import load_params
from lfmcdm.layout import MODELS, Layout
from lfmcdm.stages import STAGES, declared_params

REPO = Path(__file__).resolve().parents[1]
PROFILE_PARAMS = {"profile", "profiles.${profile}"}  # every stage: a profile may override any key


def _dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _path(dep) -> str:
    return dep if isinstance(dep, str) else next(iter(dep))


def test_dvc_has_every_stage_in_pipeline_order():
    stages = _dvc_stages()
    assert list(stages) == list(STAGES)
    assert all(stage["cmd"] == f"lfmcdm stage {name}" for name, stage in stages.items())


@pytest.mark.parametrize("name", list(STAGES))
def test_dvc_params_are_the_declared_params(name):
    dvc = set(_dvc_stages()[name].get("params", []))
    assert PROFILE_PARAMS <= dvc, f"{name}: dvc.yaml params lack the profile switch"
    declared = set(STAGES[name].params)
    assert dvc - PROFILE_PARAMS == declared, (
        f"{name}: only in dvc.yaml {sorted(dvc - PROFILE_PARAMS - declared)}, only declared {sorted(declared - dvc)}")


@pytest.mark.parametrize("name", list(STAGES))
def test_dvc_data_deps_are_the_declared_inputs(name):
    deps = [_path(d) for d in _dvc_stages()[name].get("deps", [])]
    data = {d for d in deps if not d.startswith("lfmcdm/")}
    declared = set(STAGES[name].inputs)
    assert data == declared, f"{name}: only in dvc.yaml {sorted(data - declared)}, only declared {sorted(declared - data)}"


@pytest.mark.parametrize("name", list(STAGES))
def test_dvc_code_deps_exist_and_include_the_stage(name):
    """Moved or deleted modules must not linger in deps (DVC would stop watching the code)."""
    code = [_path(d) for d in _dvc_stages()[name].get("deps", []) if _path(d).startswith("lfmcdm/")]
    assert f"lfmcdm/stages/{name}.py" in code
    missing = [c for c in code if not (REPO / c).exists()]
    assert not missing, f"{name}: dvc.yaml deps that do not exist: {missing}"


def test_declarations_resolve_against_params_and_layout(tmp_path):
    """Every declared param key exists; every declared input is a path the Layout (or the source folder) names."""
    params = load_params(REPO / "params.yaml")
    layout = Layout(tmp_path)
    known = {getattr(layout, attr) for attr in dir(Layout) if isinstance(getattr(Layout, attr), property)}
    source = layout.source_root(params)
    known |= {source, source.parent, layout.synthetic / params.synthesis.cohort, *map(layout.model_dir, MODELS)}
    for info in STAGES.values():
        assert set(declared_params(params, info.params)) == set(info.params)
        for item in info.inputs:
            path = layout.root / item.replace("${synthesis.cohort}", params.synthesis.cohort)
            assert path in known, f"{info.name}: input {item} is not a Layout path"


@pytest.mark.parametrize("name", list(STAGES))
def test_dvc_metrics_file_is_the_stage_metrics_file(name):
    metrics = [_path(m) for m in _dvc_stages()[name].get("metrics", [])]
    assert metrics in ([], [f"metrics/{STAGES[name].metrics_name}.json"])
