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


def _rock_salt(a: float, species=("Na", "Cl")):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(species),
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip


def _cscl(a: float, species=("Cs", "Cl")):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_duplicate_labels_by_hand_numbered_by_first_appearance():
    """Labels on hand-made crystals: a translated copy and a 1% larger cell are NaCl again,
    NaCl in the CsCl structure is not; every other record is its own group; numbers follow
    first appearance."""
    nacl = _rock_salt(5.64)
    moved = nacl.copy()
    moved.translate_sites(list(range(len(moved))), [0.1, 0.2, 0.3])
    records = [
        ("CsCl", _cscl(4.12)),
        ("NaCl", nacl),
        ("KBr", _rock_salt(6.6, ("K", "Br"))),
        ("NaCl", _cscl(3.4, ("Na", "Cl"))),
        ("NaCl", moved),
        ("NaCl", _rock_salt(5.7)),
        ("CsCl", _cscl(4.12)),
        ("KBr", _cscl(4.0, ("K", "Br"))),  # a formula with two members that do not match
    ]
    labels = duplicate_groups([f for f, _ in records], [s for _, s in records])
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 2, 3, 1, 1, 0, 4]


def test_leak_report_counts_pairs_of_equal_formula_across_sets():
    """Only pairs with one reduced formula in two different sets are compared: 2 × 1 NaCl
    pairs train/test, 1 × 1 CsCl pair train/val; none within a set, none across formulas."""
    table = pd.DataFrame(
        {
            "id": ["n1", "n2", "n3", "c1", "c2", "k1"],
            "reduced_formula": ["NaCl", "NaCl", "NaCl", "CsCl", "CsCl", "KBr"],
            "structure": [_rock_salt(5.64), _cscl(3.4, ("Na", "Cl")), _rock_salt(5.66),
                          _cscl(4.12), _cscl(4.3), _rock_salt(6.6, ("K", "Br"))],
        }
    )  # fmt: skip
    split = {"train": ["n1", "n2", "c1"], "val": ["c2", "k1"], "test": ["n3"]}
    rep = leak_report(split, table)
    assert rep["n_pairs_compared"] == 3
    assert sorted(rep["structure_overlaps"]) == [("train", "c1", "val", "c2"),
                                                 ("train", "n1", "test", "n3")]  # fmt: skip
    assert rep["id_overlaps"] == {} and rep["leak_free"] is False


def test_leak_message_names_the_first_ten_of_each_kind():
    report = {
        "leak_free": False,
        "id_overlaps": {"train&test": [f"i{k:02d}" for k in range(12)]},
        "structure_overlaps": [("train", f"a{k:02d}", "val", f"b{k:02d}") for k in range(12)],
    }
    with pytest.raises(SplitLeakError) as err:
        assert_leak_free(report)
    ids = [f"i{k:02d}" for k in range(10)]
    pairs = "; ".join(f"train:a{k:02d} ≡ val:b{k:02d}" for k in range(10))
    assert str(err.value) == f"split leaks between sets: ids in train&test: {ids}; {pairs}"
    assert_leak_free({"leak_free": True, "id_overlaps": {}, "structure_overlaps": []})


def test_set_sizes_and_split_defaults_by_hand():
    assert set_sizes(100, (0.7, 0.2, 0.1)) == (70, 20, 10)
    assert set_sizes(10, (0.55, 0.25, 0.2)) == (5, 2, 3)
    for bad in [(0.8, 0.2), (0.5, 0.5, 0.5), (0.8, 0.1, 0.1 + 1e-6)]:
        with pytest.raises(ValueError, match=r"fractions must be three numbers summing to 1, got"):
            set_sizes(10, bad)
    ids = [f"id-{i}" for i in range(200)]
    default = random_group_split(ids, np.arange(200))
    assert default == random_group_split(ids, np.arange(200), seed=42)
    assert default != random_group_split(ids, np.arange(200), seed=43)
    with pytest.raises(ValueError, match="differ in length"):
        random_group_split(ids, np.arange(199))
