"""params.yaml parsing: unknown keys and bad values fail with the key path and line."""

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
    path.write_text("profile: big\nphantom: {n_videos: 48}\nprofiles:\n  big:\n    phantom: {n_videos: 99}\n")
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
