"""params.yaml parsing: unknown keys and bad values fail with the key path and line."""

import re

import pytest

from lfmcdm.config import ConfigError, load_params

from .conftest import REPO


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.phantom.size == 112
    assert params.data.target_fps > 0


def test_unknown_key_names_path_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nphantom:\n  n_videos: 4\n  n_vidoes: 5\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    message = str(err.value)
    assert "phantom.n_vidoes" in message
    assert f"{path}:4" in message


def test_bad_value_names_path_line_and_value(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  target_fps: -3\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert "data.target_fps" in str(err.value)
    assert ":2" in str(err.value)
    assert "-3" in str(err.value)


def test_range_must_be_ordered(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("phantom:\n  ef_percent: {low: 80, high: 10}\n")
    with pytest.raises(ConfigError, match="phantom.ef_percent"):
        load_params(path)


def test_profile_overrides_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: big\nphantom: {n_videos: 64}\nprofiles:\n  big:\n    phantom: {n_videos: 99}\n")
    params = load_params(path)
    assert params.phantom.n_videos == 99  # the top level holds the default: the profile applies
    assert params.phantom.fps == 50.0  # untouched keys keep their base value


def test_explicit_values_win_over_the_profile(tmp_path):
    """`dvc exp run -S phantom.n_videos=4` under a profile makes 4 videos (issue 17): what exp show says."""
    path = tmp_path / "params.yaml"
    path.write_text("profile: big\nphantom: {n_videos: 4, fps: 50.0}\n"
                    "profiles:\n  big:\n    phantom: {n_videos: 99, fps: 25.0}\n")
    params = load_params(path)
    assert params.phantom.n_videos == 4  # explicit (non-default) value wins
    assert params.phantom.fps == 25.0  # at its default: the profile's value


def test_repo_params_top_level_is_the_builtin_defaults():
    """Profiles apply where the top level holds the default; so params.yaml must spell out the defaults."""
    from lfmcdm.config import Params

    params = load_params(REPO / "params.yaml")
    assert params.model_dump(exclude={"profiles", "profile"}) == Params().model_dump(exclude={"profiles", "profile"})
    quality = load_params(REPO / "params.yaml", {"profile": "quality"})
    assert quality.synthesis.n_videos == 64 and quality.phantom.n_videos == 160


def test_unknown_profile_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: nope\nprofiles: {big: {}}\n")
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_params(path)


def test_null_profile_is_an_error_when_profiles_exist(tmp_path):
    """dvc.yaml's params read ``profiles.${profile}``: with ``profile: null`` every stage would fail to resolve."""
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\nprofile:\nprofiles: {demo: {}, big: {}}\n")
    with pytest.raises(ConfigError, match=r"params.yaml:2: profile: null.*demo, big"):
        load_params(path)


def test_profile_with_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: big\nprofiles:\n  big:\n    phantom: {n_vids: 3}\n")
    with pytest.raises(ConfigError, match="phantom.n_vids"):
        load_params(path)


def test_profile_may_not_change_keys_dvc_yaml_templates(tmp_path):
    # dvc.yaml names the synthesis outputs data/synthetic/${synthesis.cohort} from params.yaml's top level
    path = tmp_path / "params.yaml"
    path.write_text("profiles:\n  big:\n    synthesis:\n      cohort: other\n")
    with pytest.raises(ConfigError, match=r"params.yaml:4: profiles.big.synthesis.cohort: dvc.yaml reads"):
        load_params(path)
    path.write_text("synthesis: {cohort: other}\nprofiles:\n  big:\n    synthesis: {n_videos: 3}\n")
    assert load_params(path).synthesis.cohort == "other"


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    return str(err.value)


@pytest.mark.parametrize("text, key, line, why", [
    ("phantom:\n  n_videos: true\n", "phantom.n_videos", 2, "valid integer"),  # was silently 1
    ("phantom:\n  n_videos: '48'\n", "phantom.n_videos", 2, "valid integer"),
    ("seed: -1\n", "seed", 1, "greater than or equal to 0"),
    ("data:\n  target_fps: .inf\n", "data.target_fps", 2, "finite"),
    ("data:\n  target_fps: 1e400\n", "data.target_fps", 2, "finite"),
    ("data:\n  echonet_root: ''\n", "data.echonet_root", 2, "not an empty string"),
    ("data:\n  fps_tolerance: -0.1\n", "data.fps_tolerance", 2, "greater than or equal to 0"),
])
def test_strict_types_and_ranges(tmp_path, text, key, line, why):
    message = _error(tmp_path, text)
    assert f"params.yaml:{line}: {key}:" in message and why in message


def test_duplicate_key_names_both_lines(tmp_path):
    message = _error(tmp_path, "seed: 1\ndata:\n  workers: 1\n  workers: 2\n")
    assert "params.yaml:4: key 'workers' is given twice" in message and "first at line 3" in message


def test_unselected_profile_is_validated(tmp_path):
    message = _error(tmp_path, "phantom: {n_videos: 4}\nprofiles:\n  big:\n    phantom:\n      n_vidoes: 9\n")
    assert "params.yaml:5: profiles.big.phantom.n_vidoes: Extra inputs" in message


def test_error_in_selected_profile_points_at_the_profile_line(tmp_path):
    message = _error(tmp_path, "profile: big\nphantom:\n  n_videos: 4\nprofiles:\n  big:\n    phantom:\n      n_videos: 0\n")
    assert "params.yaml:7: profiles.big.phantom.n_videos" in message
    assert "params.yaml:3" not in message  # not the base key's line


def test_yaml_12_core_schema(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  mixed_precision: no\nsynthesis:\n  cohort: yes\nprofile:\nseed: 010\n")
    params = load_params(path)
    assert params.train.mixed_precision == "no"  # YAML 1.1 would say False
    assert params.synthesis.cohort == "yes"
    assert params.profile is None and params.seed == 10  # empty = null; leading zeros are decimal, not octal
    path.write_text("train:\n  mixed_precision: false\n")
    assert "mixed_precision" in _error(tmp_path, "train:\n  mixed_precision: false\n")


def test_dvc_rewritten_params_load_identically(tmp_path):
    """`dvc exp run -S` rewrites params.yaml with ruamel in YAML 1.2 style ("no" -> no, null -> empty)."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    apply_overrides(str(path), ["seed=0"])  # DVC's own code path for -S; the value is unchanged
    rewritten = path.read_text()
    assert "mixed_precision: no " in rewritten and '"no"' not in rewritten  # really rewritten, DVC style
    assert re.search(r"\n  max_videos: +#", rewritten)  # null written as an empty value
    assert load_params(path) == load_params(REPO / "params.yaml")
