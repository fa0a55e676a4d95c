import shutil

import pytest
import yaml
from conftest import REPO

from tracer.pipeline.config import (
    active_profile,
    load_params,
    params_sha256,
    stage_parameters,
    use_profile,
)


@pytest.fixture
def repo_copy(tmp_path):
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_params_yaml_is_the_default_profile():
    assert active_profile(REPO) == "default"


def test_stage_parameters_flatten_sections():
    p = {"seed": 42, "split": {"seed": 1, "fractions": [0.8, 0.1, 0.1]}}
    assert stage_parameters(p, ["seed", "split"]) == {
        "seed": 42,
        "split": {"seed": 1, "fractions": [0.8, 0.1, 0.1]},
        "split_seed": 1,
        "split_fractions": [0.8, 0.1, 0.1],
    }
    with pytest.raises(KeyError):
        stage_parameters(p, ["nope"])


def test_hash_ignores_comments_not_values(repo_copy):
    p = load_params(repo_copy / "params.yaml")
    text = (repo_copy / "params.yaml").read_text()
    (repo_copy / "params.yaml").write_text("# a comment\n" + text)
    assert params_sha256(load_params(repo_copy / "params.yaml")) == params_sha256(p)
    p["split"]["seed"] = 7
    assert params_sha256(p) != params_sha256(load_params(repo_copy / "params.yaml"))


def test_use_profile_switches_but_never_overwrites_user_edits(repo_copy):
    use_profile("tiny", repo_copy)
    assert active_profile(repo_copy) == "tiny"
    edited = load_params(repo_copy / "params.yaml")
    edited["split"]["seed"] = 123
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(edited))
    with pytest.raises(FileExistsError, match="--force"):
        use_profile("default", repo_copy)
    assert load_params(repo_copy / "params.yaml")["split"]["seed"] == 123
    use_profile("default", repo_copy, force=True)
    assert active_profile(repo_copy) == "default"
    with pytest.raises(FileNotFoundError, match="unknown profile"):
        use_profile("nope", repo_copy)
