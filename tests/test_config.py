import shutil

import pytest
import yaml
from conftest import REPO

from tracer.pipeline.config import (
    active_profile,
    base_params,
    load_params,
    load_profile,
    merge_settings,
    params_sha256,
    profile_names,
    stage_parameters,
    use_profile,
    with_variance_head,
)


@pytest.fixture
def repo_copy(tmp_path):
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_params_yaml_is_the_default_profile():
    assert active_profile(REPO) == "default"
    assert not (REPO / ".tracer" / "base-params.yaml").exists()  # no profile in use
    assert load_profile("default", REPO) == load_params(REPO / "params.yaml")


def test_variance_head_settings_change_only_the_head_and_the_loss():
    params = load_params(REPO / "params.yaml")
    out = with_variance_head(params)
    assert out["gemnet"]["variance_head"] is True and out["train"]["loss"] == "gaussian_nll"
    assert "variance_head" not in params["gemnet"] and params["train"]["loss"] == "l1"  # unchanged
    rest = {k: v for k, v in out["gemnet"].items() if k != "variance_head"}
    assert rest == {k: v for k, v in params["gemnet"].items() if k != "variance_head"}
    assert {k: v for k, v in out["train"].items() if k != "loss"} == {
        k: v for k, v in params["train"].items() if k != "loss"}
    assert {k: v for k, v in out.items() if k not in ("gemnet", "train")} == {
        k: v for k, v in params.items() if k not in ("gemnet", "train")}


def test_merge_replaces_values_and_merges_mappings():
    base = {"a": 1, "m": {"x": 1, "y": [1, 2]}, "o": {"k": 4}}
    got = merge_settings(base, {"a": 2, "m": {"y": [3]}, "o": {}, "n": None})
    assert got == {"a": 2, "m": {"x": 1, "y": [3]}, "o": {}, "n": None}
    assert base == {"a": 1, "m": {"x": 1, "y": [1, 2]}, "o": {"k": 4}}  # not changed


def test_profiles_are_small_overlays_of_the_base():
    """Each profile file holds only keys whose values differ from the base, and merges into
    complete settings (the same keys as the base, plus the few a profile adds)."""
    base = base_params(REPO)

    def leaves(d, path=()):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from leaves(v, (*path, k))
            else:
                yield (*path, k), v

    flat_base = dict(leaves(base))
    for name in profile_names(REPO)[1:]:
        overlay = yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
        assert overlay.pop("overlay_of") == "params.yaml"
        same = [k for k, v in leaves(overlay) if flat_base.get(k, object()) == v]
        assert same == [], f"{name} repeats the base at {same}"
        merged = load_profile(name, REPO)
        assert set(merged) == set(base), name  # complete settings: every section
        assert all(set(merged[s]) >= set(base[s]) for s in base if isinstance(base[s], dict))
        assert len(list(leaves(overlay))) < len(flat_base) / 2


def test_a_changed_base_reaches_every_profile(repo_copy):
    text = (repo_copy / "params.yaml").read_text().replace("seed: 42", "seed: 43", 1)
    (repo_copy / "params.yaml").write_text(text)
    assert load_profile("full", repo_copy)["seed"] == 43
    assert load_params(repo_copy / "profiles" / "tiny.yaml")["seed"] == 43


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
    # the base came back as it was, comments included
    assert (repo_copy / "params.yaml").read_text() == (REPO / "params.yaml").read_text()
    assert not (repo_copy / ".tracer" / "base-params.yaml").exists()
    with pytest.raises(FileNotFoundError, match="unknown profile"):
        use_profile("nope", repo_copy)


def test_resolved_stages_expand_a_mapping_foreach_and_keep_a_list_one():
    from tracer.pipeline.config import resolved_stages

    stages = {
        "plain": {"cmd": "tracer stage data"},
        "analysis": {"foreach": {"a": "21_a", "b": "22_b"},
                     "do": {"cmd": "tracer run-notebook notebooks/${item}.ipynb",
                            "deps": ["${key}"]}},
        "train": {"foreach": [0, 1], "do": {"cmd": "tracer stage member ${item}"}},
    }  # fmt: skip
    out = resolved_stages(stages)
    assert list(out) == ["plain", "analysis@a", "analysis@b", "train"]
    assert out["analysis@b"] == {"cmd": "tracer run-notebook notebooks/22_b.ipynb", "deps": ["b"]}
    assert out["train"]["cmd"] == "tracer stage member ${item}"  # the list comes from settings
