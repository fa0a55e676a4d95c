"""Failure groups on a hand-made table: memberships, per-group MAE and σ, worst list."""

import numpy as np
import pandas as pd
import pytest

from tracer.analysis.failures import CHEMISTRY_CLASSES, failure_report, group_masks, group_stats


@pytest.fixture
def frame():
    rows = [  # id, formula, n_atoms, composition, y_true, mean, std
        ("a", "Cu1", 1, {"Cu": 1.0}, 0.0, 0.5, 0.30),
        ("b", "O2", 2, {"O": 1.0}, 0.1, -0.2, 0.20),
        ("c", "Fe2O3", 10, {"Fe": 0.4, "O": 0.6}, -1.5, -1.4, 0.05),
        ("d", "Na1Cl1", 8, {"Na": 0.5, "Cl": 0.5}, -2.1, -2.0, 0.02),
        ("e", "C60", 60, {"C": 1.0}, 0.2, 0.25, 0.04),
        ("f", "Ba1Ti1O3", 5, {"Ba": 0.2, "Ti": 0.2, "O": 0.6}, -3.4, -3.3, 0.01),
    ]
    cols = ["id", "formula", "n_atoms", "composition", "y_true", "mean", "std"]
    return pd.DataFrame(rows, columns=cols)


def test_memberships(frame):
    masks = group_masks(frame)
    chem = {k: list(frame.id[v]) for k, v in masks["by_chemistry"].items()}
    assert chem["elemental solids"] == ["a", "b", "e"]
    assert chem["oxygen-rich or O-only"] == ["b", "c", "f"]
    assert chem["1-2 atom cells (metal dimers and others)"] == ["a", "b"]
    assert chem["large carbon cages / molecular crystals"] == ["e"]
    assert chem["transition-metal compounds"] == ["c", "f"]
    assert list(frame.id[masks["by_natoms"][">=33"]]) == ["e"]
    assert list(frame.id[masks["by_nelements"]["3"]]) == ["f"]
    assert list(frame.id[masks["by_energy"]["< -3"]]) == ["f"]
    assert list(frame.id[masks["by_energy"][">= 0"]]) == ["a", "b", "e"]
    assert set(CHEMISTRY_CLASSES) == set(chem)


def test_group_stats_by_hand(frame):
    out = group_stats(frame, {"small": frame.n_atoms <= 2, "none": np.zeros(6, bool)})
    assert out["small"] == {"n": 2, "mae": pytest.approx(0.4), "mean_sigma": pytest.approx(0.25)}
    assert out["none"] == {"n": 0, "mae": None, "mean_sigma": None}


def test_report_worst_and_group_correlation(frame):
    rep = failure_report(frame, n_worst=2, min_group=1)
    assert [w["id"] for w in rep["worst"]] == ["a", "b"]
    assert rep["worst"][0]["abs_error"] == pytest.approx(0.5)
    assert rep["worst"][0]["sigma"] == 0.30
    assert rep["group_error_sigma_spearman"] > 0.5  # the large-error groups are large-σ groups
    assert rep["worst_sigma_percentile"] > 80
    with pytest.raises(ValueError, match="non-finite"):
        failure_report(frame.assign(mean=[np.nan, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="columns"):
        failure_report(frame.drop(columns="composition"))


def _rows(specs):
    """Frame of (n_atoms, composition, y_true, mean, std) rows, ids r00, r01, ..."""
    cols = ["n_atoms", "composition", "y_true", "mean", "std"]
    out = pd.DataFrame(specs, columns=cols)
    out.insert(0, "formula", [f"F{i}" for i in range(len(out))])
    out.insert(0, "id", [f"r{i:02d}" for i in range(len(out))])
    return out


def test_every_group_boundary_by_hand():
    """Cell-size bins include both ends, element counts 1-4 and >= 5, energy bins [lo, hi),
    and the chemistry rules at their thresholds (fractions >= 0.5, at least 20 atoms, at most
    2 atoms)."""
    nacl = {"Na": 0.5, "Cl": 0.5}
    sizes = [1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33]
    frame = _rows([(n, nacl, -0.5, -0.5, 0.1) for n in sizes])
    natoms = {k: list(frame.n_atoms[v]) for k, v in group_masks(frame)["by_natoms"].items()}
    assert natoms == {"1-2": [1, 2], "3-4": [3, 4], "5-8": [5, 8], "9-16": [9, 16],
                      "17-32": [17, 32], ">=33": [33]}  # fmt: skip

    comps = [{el: 1 / k for el in ["Na", "Cl", "K", "Br", "Rb", "I"][:k]} for k in range(1, 7)]
    frame = _rows([(8, c, -0.5, -0.5, 0.1) for c in comps])
    nel = {k: list(frame.id[v]) for k, v in group_masks(frame)["by_nelements"].items()}
    assert nel == {"1": ["r00"], "2": ["r01"], "3": ["r02"], "4": ["r03"], ">=5": ["r04", "r05"]}

    ys = [-3.5, -3.0, -2.0, -1.0, -0.5, 0.0, 1.0]
    frame = _rows([(8, nacl, y, y, 0.1) for y in ys])
    energy = {k: list(frame.y_true[v]) for k, v in group_masks(frame)["by_energy"].items()}
    assert energy == {"< -3": [-3.5], "[-3, -2)": [-3.0], "[-2, -1)": [-2.0],
                      "[-1, 0)": [-1.0, -0.5], ">= 0": [0.0, 1.0]}  # fmt: skip

    cases = [  # (n_atoms, composition) -> chemistry classes
        (20, {"C": 0.5, "H": 0.5}),  # carbon cage at both thresholds
        (19, {"C": 0.5, "H": 0.5}),  # one atom too few
        (40, {"C": 0.4, "H": 0.6}),  # too little carbon
        (40, {"H": 0.5, "N": 0.5}),  # no carbon at all
        (3, {"O": 0.5, "Mg": 0.5}),  # oxygen fraction exactly 0.5; three atoms: not small
        (2, {"Mg": 0.5, "S": 0.5}),  # two atoms: small
    ]
    frame = _rows([(n, c, -0.5, -0.5, 0.1) for n, c in cases])
    chem = {k: list(frame.id[v]) for k, v in group_masks(frame)["by_chemistry"].items()}
    assert chem == {
        "elemental solids": [],
        "oxygen-rich or O-only": ["r04"],
        "1-2 atom cells (metal dimers and others)": ["r05"],
        "large carbon cages / molecular crystals": ["r00"],
        "transition-metal compounds": [],
    }


def test_report_defaults_keys_and_values_by_hand(frame):
    """The whole report on the hand-made table: every key, the worst list's fields, the class
    descriptions, and the groups of at least ``min_group`` structures summed over groupings."""
    rep = failure_report(frame, min_group=3)
    assert set(rep) == {"by_natoms", "by_nelements", "by_energy", "by_chemistry", "worst",
                        "group_error_sigma_spearman", "n_groups_compared",
                        "worst_sigma_percentile", "chemistry_classes", "n", "mae"}  # fmt: skip
    # groups of >= 3: one element {a, b, e}; energy >= 0 {a, b, e}; elemental; O-rich {b, c, f}
    assert rep["n_groups_compared"] == 4
    assert rep["n"] == 6
    assert rep["mae"] == pytest.approx((0.5 + 0.3 + 0.1 + 0.1 + 0.05 + 0.1) / 6)
    assert rep["chemistry_classes"] == {k: v[0] for k, v in CHEMISTRY_CLASSES.items()}
    assert all(isinstance(v, str) for v in rep["chemistry_classes"].values())
    assert rep["worst"][1] == {"id": "b", "formula": "O2", "abs_error": pytest.approx(0.3),
                               "sigma": 0.2, "y_true": 0.1, "y_pred": -0.2}  # fmt: skip
    # the defaults: 20 worst, groups of at least 5 structures
    many = _rows([(8, {"Na": 0.5, "Cl": 0.5}, -0.5, -0.5 + (0.2 if i % 3 == 0 else 0.1), 0.1)
                  for i in range(60)])  # fmt: skip
    rep = failure_report(many)
    # ties (equal errors) keep the table's order: the 20 largest are r00, r03, ..., r57
    assert [w["id"] for w in rep["worst"]] == [f"r{i:02d}" for i in range(0, 60, 3)]
    five = _rows([(8, {"Na": 0.5, "Cl": 0.5}, -0.5, -0.4, 0.1)] * 5)
    assert failure_report(five)["n_groups_compared"] == 3  # 5-8 atoms, 2 elements, [-1, 0)
    assert failure_report(five.iloc[:4])["n_groups_compared"] == 0


def test_group_correlation_needs_three_groups():
    nacl = {"Na": 0.5, "Cl": 0.5}
    three = _rows([(8, nacl, -0.5, -0.4, 0.1), (8, nacl, -0.5, -0.3, 0.2)])
    assert failure_report(three, min_group=2)["n_groups_compared"] == 3
    assert failure_report(three, min_group=2)["group_error_sigma_spearman"] is not None
    two = _rows([(8, nacl, -0.5, -0.4, 0.1), (8, nacl, 0.5, 0.7, 0.2)])
    rep = failure_report(two, min_group=2)
    assert rep["n_groups_compared"] == 2 and rep["group_error_sigma_spearman"] is None
    none = failure_report(two, min_group=3)
    assert none["n_groups_compared"] == 0 and none["group_error_sigma_spearman"] is None


def test_targets_that_are_not_numbers_are_named(frame):
    odd = frame.assign(y_true=pd.Series([None, 0.1, -1.5, -2.1, 0.2, -3.4], dtype=object))
    with pytest.raises(ValueError, match="non-finite target or prediction for id 'a'"):
        failure_report(odd)
