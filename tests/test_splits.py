import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from tracer.data.splits import (
    SplitLeakError,
    assert_leak_free,
    duplicate_groups,
    leak_report,
    load_split,
    random_group_split,
    save_split,
    set_sizes,
    split_sha256,
)


@pytest.fixture(scope="module")
def small_table(flla_table):
    t = flla_table.iloc[:300].copy()
    t["reduced_formula"] = [s.composition.reduced_formula for s in t.structure]
    return t.reset_index(drop=True)


def test_set_sizes_follow_the_paper():
    assert set_sizes(36029, (0.8, 0.1, 0.1)) == (28823, 3602, 3604)
    with pytest.raises(ValueError):
        set_sizes(10, (0.8, 0.1))


def test_random_split_deterministic_disjoint_complete():
    ids = [f"id-{i}" for i in range(1000)]
    a = random_group_split(ids, np.arange(1000), seed=42)
    b = random_group_split(ids, np.arange(1000), seed=42)
    c = random_group_split(ids, np.arange(1000), seed=7)
    assert a == b and a != c
    assert [len(a[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert sorted(i for v in a.values() for i in v) == sorted(ids)


def test_groups_stay_together():
    ids = [f"id-{i}" for i in range(200)]
    groups = np.arange(200) // 4
    split = random_group_split(ids, groups, seed=1)
    where = {i: k for k, v in split.items() for i in v}
    for g in range(50):
        assert len({where[f"id-{i}"] for i in range(4 * g, 4 * g + 4)}) == 1


def test_duplicate_groups_finds_translated_copy(small_table):
    t = small_table.iloc[:40].copy()
    copy = t.iloc[5].copy()
    s = copy.structure.copy()
    s.translate_sites(list(range(len(s))), [0.13, 0.02, 0.4])
    copy["structure"], copy["id"] = s, "copy-of-5"
    t = pd.concat([t, copy.to_frame().T], ignore_index=True)
    labels = duplicate_groups(t.reduced_formula, t.structure)
    assert labels[5] == labels[len(t) - 1]
    assert len(set(labels)) <= len(t) - 1


def test_leak_report_catches_planted_leaks(small_table):
    ids = list(small_table.id)
    split = random_group_split(ids, np.arange(len(ids)), seed=42)
    assert leak_report(split, small_table)["leak_free"]
    # 1) the same id in two sets
    leaky = {k: list(v) for k, v in split.items()}
    leaky["test"].append(leaky["train"][0])
    rep = leak_report(leaky, small_table)
    assert not rep["leak_free"] and rep["id_overlaps"]
    with pytest.raises(SplitLeakError, match=leaky["train"][0]):
        assert_leak_free(rep)
    # 2) an equivalent structure under another id in test
    twin = small_table[small_table.id == split["train"][3]].copy()
    twin["id"] = "twin"
    table2 = pd.concat([small_table, twin], ignore_index=True)
    leaky2 = {k: list(v) for k, v in split.items()}
    leaky2["test"].append("twin")
    rep2 = leak_report(leaky2, table2)
    assert not rep2["leak_free"]
    assert ("train", split["train"][3], "test", "twin") in rep2["structure_overlaps"]


def test_save_and_load_split_roundtrip_and_tamper(tmp_path, small_table):
    ids = list(small_table.id)
    split = random_group_split(ids, np.arange(len(ids)), seed=42)
    rep = leak_report(split, small_table)
    path = save_split(
        tmp_path / "s.json",
        split,
        dataset="flla",
        dataset_sha256="x",
        table_sha256="y",
        seed=42,
        fractions=[0.8, 0.1, 0.1],
        method="m",
        leak=rep,
    )
    doc = load_split(path)
    assert doc["train"] == split["train"] and doc["sizes"]["test"] == len(split["test"])
    text = path.read_text().replace(split["test"][0], "tampered", 1)
    path.write_text(text)
    with pytest.raises(ValueError, match="split_sha256"):
        load_split(path)


def test_saved_split_file_holds_every_field_by_name(tmp_path):
    """The split file's fields, each by its name and value, written into a folder that does not
    exist yet; its hash is the sha256 of the compact JSON of the three id lists."""
    split = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    leak = {"leak_free": False, "n_pairs_compared": 7, "id_overlaps": {"train/test": ["a"]},
            "structure_overlaps": [("train", "a", "test", "d")]}  # fmt: skip
    path = save_split(tmp_path / "new" / "deeper" / "s.json", split, dataset="flla",
                      dataset_sha256="d" * 64, table_sha256="t" * 64, seed=5,
                      fractions=(0.5, 0.25, 0.25), method="random", leak=leak)  # fmt: skip
    doc = json.loads(path.read_text())
    compact = '{"train":["a","b"],"val":["c"],"test":["d"]}'
    assert split_sha256(split) == hashlib.sha256(compact.encode()).hexdigest()
    assert doc == {
        "dataset": "flla",
        "dataset_sha256": "d" * 64,
        "table_sha256": "t" * 64,
        "seed": 5,
        "fractions": [0.5, 0.25, 0.25],
        "method": "random",
        "sizes": {"train": 2, "val": 1, "test": 1},
        "split_sha256": hashlib.sha256(compact.encode()).hexdigest(),
        "leak_check": {
            "leak_free": False,
            "n_pairs_compared": 7,
            "id_overlaps": {"train/test": ["a"]},
            "structure_overlaps": [["train", "a", "test", "d"]],
        },
        "train": ["a", "b"],
        "val": ["c"],
        "test": ["d"],
    }
