"""``lfmcdm-generator`` in the MLflow registry: the pyfunc contract, the VAE/MCDM pairing check, the alias rule."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lfmcdm.data.tables import read_videos
from lfmcdm.layout import Layout

from .conftest import subprocess_env

pytestmark = pytest.mark.e2e

FRESH_PROCESS = textwrap.dedent('''
    import json, sys
    import mlflow, numpy as np, pandas as pd
    model = mlflow.pyfunc.load_model("models:/lfmcdm-generator@champion")
    appearance, motion, out = sys.argv[1:4]
    df = pd.DataFrame({"appearance_video": [appearance] * 3, "motion_video": [motion] * 3, "seed": [7, 7, 8]})
    res = model.predict(df, params={"steps": 2, "guidance_scale": 2.0, "sampler": "ddim"})
    np.savez(out, videos=np.stack(res["video"].to_list()), fps=res["fps"].to_numpy(),
             privacy=res["privacy_score"].to_numpy())
    print(json.dumps({"columns": list(res.columns), "in_repo_cwd": __import__("os").path.exists("dvc.yaml")}))
''')


def _videos(root, split: str) -> str:
    rows = read_videos(Layout(root), (split,))  # usable: with a label-free ED and ES
    return str(root / "data/raw/phantom/Videos" / f"{rows[0]['file_name']}.avi")


def test_champion_generator_makes_videos_in_a_fresh_process(dvc_project, tmp_path):
    """The contract of issue 17: load by alias in a new process (not in the project folder), two videos."""
    env = subprocess_env()
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{dvc_project / 'mlflow.db'}"
    out = tmp_path / "out.npz"
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, _videos(dvc_project, "TEST"),
                           _videos(dvc_project, "TRAIN"), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["columns"][:2] == ["video", "fps"] and not info["in_repo_cwd"]
    res = np.load(out)
    videos = res["videos"]
    assert videos.dtype == np.uint8 and videos.shape[0] == 3 and videos.shape[2:] == (112, 112)
    assert videos.shape[1] == json.loads((dvc_project / "models/mcdm/mcdm.json").read_text())["n_frames"]
    assert np.array_equal(videos[0], videos[1])  # same seed, same video
    assert not np.array_equal(videos[0], videos[2])  # another seed, another video
    assert videos[0].std() > 1  # not a blank clip
    assert np.all(res["fps"] > 0) and np.all(np.abs(res["privacy"]) <= 1.0001)


def test_registered_generator_has_signature_requirements_and_tags(dvc_project):
    import mlflow
    from mlflow import MlflowClient

    from lfmcdm.layout import GENERATOR_NAME
    from lfmcdm.synth.publish import KEY_TAG, MEASURE_TAG

    mlflow.set_tracking_uri(f"sqlite:///{dvc_project / 'mlflow.db'}")
    version = MlflowClient().get_model_version_by_alias(GENERATOR_NAME, "champion")
    assert KEY_TAG in version.tags and MEASURE_TAG in version.tags
    uri = f"models:/{GENERATOR_NAME}@champion"
    sig = mlflow.models.get_model_info(uri).signature
    assert sig.inputs.input_names() == ["appearance_video", "motion_video", "seed"]
    assert {p.name for p in sig.params.params} == {"steps", "guidance_scale", "sampler"}
    reqs = (mlflow.artifacts.download_artifacts(f"{uri}/requirements.txt"))
    import torch

    assert f"torch=={torch.__version__}" in open(reqs).read().split()
    # the bundle is the models/ the cohort came from
    from lfmcdm.fingerprint import content_version

    assert version.tags["lfmcdm.mcdm_version"] == content_version(dvc_project / "models/mcdm")


def test_mismatched_vae_is_a_clear_error(dvc_project, tmp_path):
    """An MCDM next to a VAE it was not trained on fails on load, naming both hashes, in the pyfunc and in synthesis."""
    import mlflow

    from lfmcdm.config import load_params
    from lfmcdm.models.pipeline import ModelMismatchError
    from lfmcdm.synth.publish import settings
    from lfmcdm.synth.pyfunc import GeneratorModel

    models = tmp_path / "models"
    shutil.copytree(dvc_project / "models", models)
    config = models / "vae/config.json"
    vae_cfg = json.loads(config.read_text())
    vae_cfg["scaling_factor"] = float(vae_cfg["scaling_factor"]) * 1.5  # "a retrained VAE"
    config.write_text(json.dumps(vae_cfg))
    (tmp_path / "generator.json").write_text(json.dumps(settings(load_params(dvc_project / "params.yaml"))))
    np.savez(tmp_path / "privacy.npz", train_embeddings=np.zeros((1, 4), np.float32), threshold=np.float64(0.5))
    artifacts = {k: str(models / k) for k in ("mcdm", "vae", "mafe", "reid")}
    artifacts.update(settings=str(tmp_path / "generator.json"), privacy=str(tmp_path / "privacy.npz"))
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=GeneratorModel(), artifacts=artifacts)
    with pytest.raises(ModelMismatchError, match="was trained on VAE sha256:"):
        mlflow.pyfunc.load_model(str(tmp_path / "model"))

    # the synthesize stage refuses the same pair, as one clear CLI error
    project = tmp_path / "project"
    shutil.copytree(dvc_project, project, symlinks=True, ignore=shutil.ignore_patterns("models", "synthetic"))
    shutil.copytree(models, project / "models")
    proc = subprocess.run([sys.executable, "-m", "lfmcdm.cli", "stage", "synthesize", "--no-progress"], cwd=project,
                          env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 2 and "was trained on VAE" in proc.stderr, proc.stderr[-3000:]


def test_champion_moves_only_on_a_better_comparable_measure(tmp_path):
    """The alias rule, on a real (sqlite) MLflow registry."""
    import mlflow
    from mlflow import MlflowClient

    from lfmcdm.synth.publish import KEY_TAG, MEASURE_TAG, promote

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'registry.db'}")
    client = MlflowClient()
    name = "gen-under-test"
    client.create_registered_model(name)

    def new_version(tags: dict[str, str]):
        v = client.create_model_version(name, source=str(tmp_path)).version
        return promote(str(v), tags, name=name)

    def champion() -> str:
        return str(client.get_model_version_by_alias(name, "champion").version)

    assert new_version({KEY_TAG: "k", MEASURE_TAG: "5.0"}).champion and champion() == "1"  # first one
    assert not new_version({KEY_TAG: "k", MEASURE_TAG: "6.0"}).champion  # worse
    assert new_version({KEY_TAG: "k", MEASURE_TAG: "4.0"}).champion and champion() == "3"  # better
    other = new_version({KEY_TAG: "other-yardstick", MEASURE_TAG: "0.1"})  # better number, not comparable
    assert not other.champion and "yardstick" in other.reason
    assert not new_version({KEY_TAG: "k"}).champion  # not measured
    assert champion() == "3"


@pytest.mark.parametrize("folder, stage", [("mcdm", "train_diffusion"), ("distill", "distill")])
def test_missing_model_names_the_stage_that_makes_it(tmp_path, folder, stage):
    """``synthesis.sampler: lcm`` without ``models/distill`` must say to run ``distill``, not train_diffusion."""
    from lfmcdm.models.pipeline import check_pair

    with pytest.raises(FileNotFoundError, match=f"run `lfmcdm stage {stage}` first"):
        check_pair(tmp_path / "models" / folder, tmp_path / "models" / "vae")
