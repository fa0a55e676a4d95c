"""Group k-fold runs: test parts partition the data, groups never straddle two parts, sizes
balanced, the fold file's hashes catch an edited id."""

import json

import numpy as np
import pytest

from tracer.data.folds import group_kfold, load_folds, save_folds


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    groups = np.concatenate([np.arange(400), rng.integers(0, 60, 200)])  # singles and clusters
    ids = [f"id{k}" for k in range(len(groups))]
    return ids, groups


def test_test_parts_partition_and_groups_stay_whole(data):
    ids, groups = data
    runs = group_kfold(ids, groups, k=5, seed=1, val_fraction=0.1)
    tests = [set(r["test"]) for r in runs]
    assert set().union(*tests) == set(ids) and sum(map(len, tests)) == len(ids)
    group_of = dict(zip(ids, groups, strict=True))
    for r in runs:
        parts = {p: {group_of[i] for i in r[p]} for p in ("train", "val", "test")}
        assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"]
        assert not parts["val"] & parts["test"]
        assert len(r["train"]) + len(r["val"]) + len(r["test"]) == len(ids)
        assert abs(len(r["val"]) - 0.1 * len(ids)) <= 30  # whole groups: about 10%
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 30  # the largest group is 13 here


def test_seeded_and_seed_sensitive(data):
    ids, groups = data
    assert group_kfold(ids, groups, seed=1) == group_kfold(ids, groups, seed=1)
    assert group_kfold(ids, groups, seed=1) != group_kfold(ids, groups, seed=2)


def test_refuses_repeated_ids():
    with pytest.raises(ValueError, match="unique"):
        group_kfold(["a", "a", "b"], [0, 1, 2], k=2)


def test_fold_file_round_trip_and_tamper(tmp_path, data):
    ids, groups = data
    runs = group_kfold(ids, groups, k=3)
    path = save_folds(tmp_path / "cv.json", runs, dataset="x", dataset_sha256="d",
                      table_sha256="t", seed=42, val_fraction=0.1)  # fmt: skip
    doc = load_folds(path)
    assert [f["test"] for f in doc["folds"]] == [r["test"] for r in runs]
    raw = json.loads(path.read_text())
    raw["folds"][1]["test"][0], raw["folds"][1]["train"][0] = (
        raw["folds"][1]["train"][0],
        raw["folds"][1]["test"][0],
    )
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="fold 1"):
        load_folds(path)
