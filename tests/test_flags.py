"""The hybrid flag rule on a hand-made test set where the flags pull in easy compounds."""

import numpy as np
import pytest

from tracer.analysis.flags import (
    degeneracy_flag,
    flag_count,
    flag_report,
    hybrid_scores,
    transition_metal_flag,
)


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


def test_flag_helpers_at_their_edges():
    from tracer.analysis.flags import top_k

    np.testing.assert_array_equal(degeneracy_flag([0.1, -0.1, 0.0999], 0.1), [0, 0, 1])
    assert degeneracy_flag([0.5], 0.1).dtype == np.float64
    flat = hybrid_scores(np.zeros(3), [1, 0, 0], [0, 0, 1], 1.0, 0.5, 0.1)
    np.testing.assert_allclose(flat, [0.5, 0.0, 0.1])  # σ all zero: no division by zero
    ties = np.tile([1.0, 0.0], 500)  # ties broken by position (numpy's default sort does not)
    np.testing.assert_array_equal(top_k(ties, 500), np.arange(0, 1000, 2))


def test_report_defaults_window_and_edge_cases():
    rng = np.random.default_rng(8)
    err = rng.exponential(0.1, 40)
    sigma = err + rng.normal(0, 0.01, 40)
    pred = rng.normal(0, 0.3, 40)
    comps = [{"Fe", "O"} if k % 3 else {"Na", "Cl"} for k in range(40)]
    default = flag_report(err, sigma, pred, comps)
    assert default == flag_report(err, sigma, pred, comps, n_trials=2000, seed=0,
                                  degeneracy_window_ev=0.1)  # fmt: skip
    wide = flag_report(err, sigma, pred, comps, degeneracy_window_ev=0.5, n_trials=10)
    assert wide["test_flags"]["degenerate_share"] > default["test_flags"]["degenerate_share"]
    # the random draws: k of n without replacement, 2,000 times from seed 0, std with ddof 1
    r = np.random.default_rng(0)
    k = default["k"]
    means = [err[r.choice(40, k, replace=False)].mean() for _ in range(2000)]
    assert default["random_mean_abs_error_std"] == pytest.approx(np.std(means, ddof=1), 1e-12)
    assert [flag_count(0.075, n) for n in (3600, 3938, 395, 5)] == [270, 295, 30, 1]
    assert flag_count(0.5, 3) == 2 and flag_count(0.001, 10) == 1  # halves up; never zero
    tiny = flag_report(err, sigma, pred, comps, k_fraction=0.001, n_trials=5)
    assert tiny["k"] == 1
    all_tm = flag_report(err[:5], sigma[:5], pred[:5], [{"Fe"}] * 5, n_trials=5)
    assert all_tm["mean_abs_error_not_tm"] is None and all_tm["mean_abs_error_tm"] is not None
    none_tm = flag_report(err[:5], sigma[:5], pred[:5], [{"Na"}] * 5, n_trials=5)
    assert none_tm["mean_abs_error_tm"] is None and none_tm["mean_abs_error_not_tm"] is not None
    far = flag_report(err[:5], sigma[:5], np.full(5, -2.0), [{"Na"}] * 5, n_trials=5)
    assert far["mean_abs_error_degenerate"] is None
    one = flag_report(err[:1], sigma[:1], pred[:1], comps[:1], n_trials=5)  # one structure
    assert one["k"] == 1
    with pytest.raises(ValueError, match="inputs must be non-empty and of one length"):
        flag_report([], [], [], [])
