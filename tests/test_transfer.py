"""Unit handling and the zero-shot summary of the perovskite transfer, by hand."""

import numpy as np
import pytest

from tracer.transfer import to_ev_per_atom, unit_check, zero_shot_summary


def test_to_ev_per_atom():
    np.testing.assert_allclose(to_ev_per_atom([5.0, -2.5], "eV/cell", [5, 5]), [1.0, -0.5])
    np.testing.assert_allclose(to_ev_per_atom([1.0], "eV/atom", [5]), [1.0])
    with pytest.raises(ValueError, match="unit"):
        to_ev_per_atom([1.0], "kJ/mol", [5])
    with pytest.raises(ValueError, match="positive"):
        to_ev_per_atom([1.0], "eV/cell", [0])


def test_unit_check_reads_the_unit_from_the_data():
    per_atom_truth = np.array([0.2, 0.4, -0.1, 0.8])
    cells = per_atom_truth * 5  # a per-cell target
    pred = per_atom_truth + np.array([0.02, -0.01, 0.03, 0.0])  # a decent per-atom model
    ok = unit_check("eV/cell", cells, [5] * 4, pred)
    assert ok["verdict"] == "consistent"
    assert ok["mae_if_ev_per_cell"] == pytest.approx(0.015)
    wrong = unit_check("eV/atom", cells, [5] * 4, pred)
    assert wrong["verdict"] == "contradicted"
    flat = unit_check("eV/atom", np.zeros(4), [5] * 4, pred)
    assert flat["verdict"] == "undecided"  # zero targets read the same in both units


def test_zero_shot_summary_in_both_units_and_sigma_shift():
    y = np.array([0.1, 0.3])
    mean = np.array([0.2, 0.1])
    out = zero_shot_summary(y, mean, [0.5, 0.05], [5, 5], in_domain_sigma=np.linspace(0, 0.1, 101))
    assert out["mae_ev_per_atom"] == pytest.approx(0.15)
    assert out["mae_ev_per_cell"] == pytest.approx(0.75)
    assert out["in_domain_sigma_p95"] == pytest.approx(0.095)
    assert out["fraction_above_in_domain_p95"] == 0.5
    assert out["median_sigma"] == pytest.approx(0.275)
