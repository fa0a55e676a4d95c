"""The hybrid flag rule on a hand-made test set where the flags pull in easy compounds."""

import numpy as np
import pytest

from tracer.flags import degeneracy_flag, flag_report, hybrid_scores, transition_metal_flag


def test_flags_and_scores_by_hand():
    comps = [{"Fe", "O"}, {"Na", "Cl"}, {"Cu"}]
    np.testing.assert_array_equal(transition_metal_flag(comps), [1, 0, 1])
    np.testing.assert_array_equal(degeneracy_flag([0.05, -0.2, -0.09]), [1, 0, 1])
    s = hybrid_scores(np.array([0.1, 0.2, 0.0]), [1, 0, 1], [1, 0, 1], 1.0, 0.5, 0.1)
    np.testing.assert_allclose(s, [0.25 + 0.5 + 0.1, 1.0, 0.6])  # σ² scaled by its max 0.04


def test_report_variance_beats_hybrid_when_flags_are_easy():
    # ten structures: two hard ones with large σ and no flags; eight easy transition-metal ones
    err = np.array([0.9, 0.8] + [0.05] * 8)
    sigma = np.array([0.3, 0.2] + [0.05] * 8)
    pred = np.array([-1.0, -2.0] + [0.02] * 8)  # the easy ones predicted near zero
    comps = [{"Na", "Cl"}, {"K", "Br"}] + [{"Fe", "O"}] * 8
    rep = flag_report(err, sigma, pred, comps, k_fraction=0.2, n_trials=500)
    assert rep["k"] == 2
    assert rep["variance_only_mean_abs_error"] == pytest.approx(0.85)
    # α·v: 1 and 0.44 for the hard ones; easy ones 0.028 + 0.5 + 0.1 = 0.628 -> one easy enters
    assert rep["hybrid_mean_abs_error"] == pytest.approx((0.9 + 0.05) / 2)
    assert rep["hybrid_flags"]["tm_share"] == 0.5 and rep["variance_only_flags"]["tm_share"] == 0
    assert rep["random_mean_abs_error"] == pytest.approx(err.mean(), abs=0.03)
    assert len(rep["grid"]) == 27
    with pytest.raises(ValueError, match="one length"):
        flag_report(err, sigma[:3], pred, comps)


def test_report_records_every_key_of_the_contract():
    err = np.array([0.9, 0.8] + [0.05] * 8)
    sigma = np.array([0.3, 0.2] + [0.05] * 8)
    pred = np.array([-1.0, -2.0] + [0.02] * 8)
    comps = [{"Na", "Cl"}, {"K", "Br"}] + [{"Fe", "O"}] * 8
    rep = flag_report(err, sigma, pred, comps, k_fraction=0.2, n_trials=50)
    assert (rep["k_fraction"], rep["n_test"], rep["degeneracy_window_ev"]) == (0.2, 10, 0.1)
    assert rep["hybrid_rule"] == {"alpha": 1.0, "beta": 0.5, "gamma": 0.1}
    assert rep["variance_only_flags"] == {"tm_share": 0.0, "degenerate_share": 0.0}
    assert rep["hybrid_flags"] == {"tm_share": 0.5, "degenerate_share": 0.5}
    assert rep["test_flags"] == {"tm_share": 0.8, "degenerate_share": 0.8}
    assert rep["mean_abs_error_tm"] == pytest.approx(0.05)
    assert rep["mean_abs_error_not_tm"] == pytest.approx(0.85)
    assert rep["mean_abs_error_degenerate"] == pytest.approx(0.05)
    assert rep["random_mean_abs_error_std"] > 0
    cell = next(g for g in rep["grid"] if (g["alpha"], g["beta"], g["gamma"]) == (1.0, 0.5, 0.1))
    assert cell["mean_abs_error"] == rep["hybrid_mean_abs_error"]
    assert cell["tm_share"] == 0.5 and cell["degenerate_share"] == 0.5
    # the random draw is without replacement: with k = n every trial is the whole test set
    whole = flag_report(err, sigma, pred, comps, k_fraction=1.0, n_trials=20)
    assert whole["random_mean_abs_error"] == pytest.approx(err.mean(), abs=1e-12)
    assert whole["random_mean_abs_error_std"] == pytest.approx(0.0, abs=1e-12)
