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
