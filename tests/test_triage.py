"""Triage simulation against hand counts and the hypergeometric law of random checks."""

import math

import numpy as np
import pytest

from tracer.analysis.triage import scaled_budgets, triage_rows, yield_curves


def test_scaled_budgets():
    assert scaled_budgets(3604) == [50, 100, 150, 200, 250, 300]
    assert scaled_budgets(395) == [5, 11, 16, 22, 27, 33]
    assert scaled_budgets(10) == [1, 1, 1, 1, 1, 1]


def test_yields_by_hand():
    err = np.array([0.30, 0.05, 0.12, 0.01, 0.25, 0.02])  # > 0.10: three; > 0.20: two
    sigma = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3])  # σ order: 0, 1, 4, 5, 3, 2
    rows = {(r["budget"], r["threshold"]): r for r in
            triage_rows(err, sigma, [1, 2, 3], [0.10, 0.20], n_trials=20000)}  # fmt: skip
    assert rows[(1, 0.10)]["uncertainty_yield"] == 1.0  # structure 0
    assert rows[(2, 0.10)]["uncertainty_yield"] == 0.5  # 0 bad, 1 good
    assert rows[(3, 0.10)]["uncertainty_yield"] == pytest.approx(2 / 3)  # + 4 bad
    assert rows[(3, 0.10)]["oracle_yield"] == 1.0 and rows[(3, 0.20)]["oracle_yield"] == 2 / 3
    assert rows[(3, 0.20)]["n_bad"] == 2
    for (b, _t), r in rows.items():  # random checks: hypergeometric mean and std of the fraction
        n, k = 6, r["n_bad"]
        p = k / n
        std = math.sqrt(p * (1 - p) / b * (n - b) / (n - 1))
        assert r["random_yield_mean"] == pytest.approx(p, abs=0.01)
        assert r["random_yield_std"] == pytest.approx(std, abs=0.01)
    with pytest.raises(ValueError, match="budgets"):
        triage_rows(err, sigma, [7], [0.1])


def test_yield_curves_recall_reaches_one():
    err = np.array([0.3, 0.0, 0.2, 0.0])
    c = yield_curves(err, np.array([0.1, 0.2, 0.3, 0.0]), 0.1)  # σ order 2, 1, 0, 3
    np.testing.assert_allclose(c["uncertainty_yield"], [1.0, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(c["uncertainty_recall"], [0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(c["oracle_recall"], [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(c["random_recall"], [0.25, 0.5, 0.75, 1.0])


def test_report_rows_carry_paper_values_and_bootstrap_spread():
    from tracer.analysis.triage import triage_report

    rng = np.random.default_rng(1)
    err = rng.exponential(0.08, 400)
    sigma = err + rng.normal(0, 0.02, 400)  # informative σ
    rep = triage_report(err, sigma, n_trials=200, n_bootstrap=100)
    row = next(r for r in rep["rows"] if r["paper_budget"] == 50 and r["threshold"] == 0.10)
    assert row["budget"] == 6 and row["paper_uncertainty_yield"] == 0.340
    spreads = [r["uncertainty_yield_bootstrap_std"] for r in rep["rows"]]
    assert all(s >= 0 for s in spreads) and max(spreads) > 0
    no_paper = next(r for r in rep["rows"] if r["paper_budget"] == 250)
    assert no_paper["paper_uncertainty_yield"] is None
    assert rep["beats_random_by_3_std_everywhere"] and rep["smallest_budget_half_oracle"]
    flat = triage_report(err, np.ones(400), n_trials=200, n_bootstrap=0)
    assert not flat["beats_random_by_3_std_everywhere"]  # an uninformative σ does not pass


def test_yield_curves_every_curve_by_hand():
    err = np.array([0.3, 0.1, 0.2, 0.0])  # 0.1 equals the threshold: not a bad prediction
    c = yield_curves(err, np.array([0.1, 0.2, 0.3, 0.0]), 0.1)  # σ order 2, 1, 0, 3
    np.testing.assert_array_equal(c["budget"], [1, 2, 3, 4])
    np.testing.assert_allclose(c["uncertainty_yield"], [1.0, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(c["oracle_yield"], [1.0, 1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(c["random_yield"], [0.5] * 4)
    one_bad = yield_curves(np.array([0.0, 0.5, 0.0]), np.array([0.3, 0.2, 0.1]), 0.1)
    np.testing.assert_allclose(one_bad["uncertainty_recall"], [0.0, 1.0, 1.0])
    np.testing.assert_allclose(one_bad["oracle_recall"], [1.0, 1.0, 1.0])


def test_yield_curves_break_sigma_ties_in_input_order():
    n = 300
    bad = np.zeros(n)
    bad[[5, 150, 299]] = 1.0
    c = yield_curves(bad, np.ones(n), 0.5)
    np.testing.assert_allclose(c["uncertainty_yield"] * c["budget"], np.cumsum(bad))


def test_report_keys_and_the_paper_values_of_each_row():
    from tracer.analysis.triage import PAPER_TABLE, triage_report

    rng = np.random.default_rng(2)
    err = rng.exponential(0.08, 400)
    sigma = err + rng.normal(0, 0.02, 400)
    rep = triage_report(err, sigma, n_trials=100, n_bootstrap=20)
    assert (rep["n_test"], rep["n_trials"]) == (400, 100)
    for r in rep["rows"]:
        paper = PAPER_TABLE.get((r["paper_budget"], r["threshold"]))
        expected = (None, None, None) if paper is None else paper
        got = (r["paper_uncertainty_yield"], r["paper_random_yield_mean"],
               r["paper_random_yield_std"])  # fmt: skip
        assert got == expected, r


def test_rows_by_hand_with_exact_random_spread():
    # 4 structures, 2 bad; budget 2: every random pair has 0, 1 or 2 bad ones
    err, sigma = np.array([0.5, 0.0, 0.5, 0.0]), np.array([0.4, 0.3, 0.2, 0.1])
    (row,) = triage_rows(err, sigma, [2], [0.1], n_trials=4000, seed=3)
    assert row["uncertainty_yield"] == 0.5 and row["oracle_yield"] == 1.0
    assert row["n_bad"] == 2 and row["budget_fraction"] == 0.5
    # hypergeometric: 0, 1 or 2 bad with probability 1/6, 4/6, 1/6: yield variance 1/12
    assert row["random_yield_mean"] == pytest.approx(0.5, abs=0.02)
    assert row["random_yield_std"] == pytest.approx(np.sqrt(1 / 12), abs=0.02)
    with pytest.raises(ValueError, match=r"^abs_error and sigma must be finite$"):
        triage_rows(np.array([np.nan]), np.array([0.1]), [1], [0.1])
    with pytest.raises(
        ValueError, match=r"^abs_error and sigma must be non-empty and of one length$"
    ):
        triage_rows(err, sigma[:2], [1], [0.1])


def test_rows_margin_and_budget_limits():
    err = np.array([0.5, 0.1, 0.5, 0.0, 0.3, 0.0])  # 0.1 is at the threshold: not bad
    sigma = np.array([0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    rows = triage_rows(err, sigma, [3, 6], [0.1], n_trials=500, seed=1)
    r = rows[0]
    assert r["margin_in_random_std"] == pytest.approx(
        (r["uncertainty_yield"] - r["random_yield_mean"]) / r["random_yield_std"])  # fmt: skip
    assert rows[0]["n_bad"] == 3 and rows[0]["uncertainty_yield"] == pytest.approx(2 / 3)
    assert rows[1]["uncertainty_yield"] == 0.5  # the whole test set is a valid budget
    assert rows[1]["margin_in_random_std"] is None  # no spread when every structure is drawn
    with pytest.raises(ValueError, match="budgets"):
        triage_rows(err, sigma, [0], [0.1])


def test_rows_and_report_against_the_same_draws_done_here():
    """triage_rows' random spread and triage_report's bootstrap spread recomputed from the
    documented draws (defaults: 2,000 permutations from seed 0; 500 resamples from seed 1)."""
    from tracer.analysis.triage import triage_report

    rng = np.random.default_rng(9)
    n = 60
    err = rng.exponential(0.1, n)
    sigma = np.round(err + rng.normal(0, 0.03, n), 1)  # rounded: many ties
    (row,) = triage_rows(err, sigma, [10], [0.1])
    assert row == triage_rows(err, sigma, [10], [0.1], n_trials=2000, seed=0)[0]
    perms = np.argsort(np.random.default_rng(0).random((2000, n)), axis=1)
    yields = (err[perms[:, :10]] > 0.1).mean(1)
    assert row["random_yield_mean"] == pytest.approx(yields.mean(), rel=1e-12)
    assert row["random_yield_std"] == pytest.approx(yields.std(ddof=1), rel=1e-12)
    ranked = np.argsort(-sigma, kind="stable")
    assert row["uncertainty_yield"] == pytest.approx((err[ranked[:10]] > 0.1).mean())
    rep = triage_report(err, sigma, budgets=(150,), thresholds=(0.1,), n_trials=50)
    (r,) = rep["rows"]
    b = r["budget"]
    boot = np.random.default_rng(1)
    values = []
    for _ in range(500):
        idx = boot.integers(0, n, n)
        order = np.argsort(-sigma[idx], kind="stable")
        values.append((err[idx][order][:b] > 0.1).mean())
    assert r["uncertainty_yield_bootstrap_std"] == pytest.approx(np.std(values, ddof=1), 1e-12)
    one = triage_report(err, sigma, budgets=(150,), thresholds=(0.1,), n_trials=50,
                        n_bootstrap=1)  # fmt: skip
    assert one["rows"][0]["uncertainty_yield_bootstrap_std"] is None


def test_triage_report_recomputed_from_its_documented_draws():
    """The report's defaults (2000 trials, seed 0), its rows as triage_rows gives them, the
    bootstrap spread recomputed from its generator (seed + 1, indices 0..n-1, σ ranked with ties
    in input order, |error| > threshold), and both verdicts recomputed from the rows; σ ties at
    the top make the tie order matter."""
    from tracer.analysis.triage import triage_report

    rng = np.random.default_rng(5)
    n = 200
    sigma = rng.random(n)
    sigma[:60] = 2.0  # the 60 largest σ tie
    # the first 17 (the smallest budget, first among the tied) are good, all others bad
    abs_error = np.where(np.arange(n) < 17, 0.01, 0.3) + rng.random(n) * 0.01
    budgets, thresholds = [300, 1800], [0.1]  # 17 and 100 of these 200
    rep = triage_report(abs_error, sigma, budgets=budgets, thresholds=thresholds, n_bootstrap=40)
    assert rep["n_trials"] == 2000 and rep["n_test"] == n
    ours = scaled_budgets(n, budgets)
    rows = triage_rows(abs_error, sigma, sorted(set(ours)), thresholds, n_trials=2000, seed=0)
    order = np.argsort(-sigma, kind="stable")
    boot = np.random.default_rng(1)
    spread = {b: [] for b in ours}
    for _ in range(40):
        idx = boot.integers(0, n, n)
        ranked = abs_error[idx][np.argsort(-sigma[idx], kind="stable")]
        for b in ours:
            spread[b].append(float((ranked[:b] > 0.1).mean()))
    for row, ref in zip(rep["rows"], rows, strict=True):
        b = ref["budget"]
        assert row["uncertainty_yield"] == float((abs_error[order[:b]] > 0.1).mean())
        assert row["random_yield_mean"] == ref["random_yield_mean"]
        assert row["uncertainty_yield_bootstrap_std"] == pytest.approx(np.std(spread[b], ddof=1))
    assert rep["beats_random_by_3_std_everywhere"] == all(
        r["margin_in_random_std"] is not None and r["margin_in_random_std"] >= 3 for r in rows)
    smallest = [r for r in rows if r["budget"] == min(ours)]
    assert rep["smallest_budget_half_oracle"] == all(
        r["uncertainty_yield"] >= 0.5 * r["oracle_yield"] for r in smallest)
    assert rep["smallest_budget_half_oracle"] is False  # the larger budget alone would pass
    assert all(r["uncertainty_yield"] >= 0.5 * r["oracle_yield"] for r in rows
               if r["budget"] != min(ours))  # fmt: skip
    two = triage_report(abs_error, sigma, budgets=budgets, thresholds=thresholds, n_bootstrap=2)
    assert all(r["uncertainty_yield_bootstrap_std"] is not None for r in two["rows"])


def test_triage_boundaries_seed_and_tie_order():
    """A seed other than the default reaches triage_rows; errors exactly at the threshold are
    not bad; a yield of exactly half the oracle's passes; σ ties keep input order in the
    curves."""
    from tracer.analysis.triage import triage_report

    rng = np.random.default_rng(2)
    n = 200
    sigma = np.where(np.arange(n) < 60, 2.0, rng.random(n))
    abs_error = np.where(np.arange(n) < 17, 0.1, 0.3)  # the first 17: exactly at the threshold
    rep = triage_report(abs_error, sigma, budgets=[300], thresholds=[0.1], n_bootstrap=20, seed=3)
    ref = triage_rows(abs_error, sigma, [17], [0.1], n_trials=2000, seed=3)
    assert rep["rows"][0]["random_yield_mean"] == ref[0]["random_yield_mean"]
    assert rep["rows"][0]["uncertainty_yield"] == 0.0
    boot = np.random.default_rng(4)  # seed + 1
    spread = []
    for _ in range(20):
        idx = boot.integers(0, n, n)
        spread.append(float((abs_error[idx][np.argsort(-sigma[idx], kind="stable")][:17] > 0.1)
                            .mean()))  # fmt: skip
    got = rep["rows"][0]["uncertainty_yield_bootstrap_std"]
    assert got == pytest.approx(np.std(spread, ddof=1))
    # exactly half the oracle: 2 checks, one bad among 2 bad in all (oracle yield 1)
    half = triage_report([0.5, 0.0, 0.5, 0.0], [3.0, 2.0, 1.0, 0.0], budgets=[1802],
                         thresholds=[0.1], n_bootstrap=2)  # fmt: skip
    assert half["rows"][0]["budget"] == 2 and half["rows"][0]["uncertainty_yield"] == 0.5
    assert half["smallest_budget_half_oracle"] is True
    # half of an oracle yield below one: 1 bad in 4 checks, 2 bad in all (oracle 0.5)
    quarter = triage_report([0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0], np.arange(8.0)[::-1],
                            budgets=[1802], thresholds=[0.1], n_bootstrap=2)  # fmt: skip
    assert quarter["rows"][0]["uncertainty_yield"] == 0.25
    assert quarter["smallest_budget_half_oracle"] is True
    curves = yield_curves(abs_error + (np.arange(n) == 0) * 0.5, sigma, 0.1)
    # the first 17 of the tied, in input order: only the first is bad
    assert curves["uncertainty_yield"][16] == pytest.approx(1 / 17)


def test_yield_curves_ties_follow_python_stable_sort_and_report_uses_its_trial_count():
    """Curves: σ ties among several values keep input order (Python's stable ``sorted`` as the
    reference; numpy's default sort reorders such ties). Report: its ``n_trials`` reaches the
    random draws of every row."""
    from tracer.analysis.triage import triage_report

    rng = np.random.default_rng(0)
    n = 200
    sigma = rng.integers(0, 3, n).astype(float)
    abs_error = rng.random(n)
    order = sorted(range(n), key=lambda i: -sigma[i])
    expected = np.cumsum(abs_error[order] > 0.5)
    curves = yield_curves(abs_error, sigma, 0.5)
    np.testing.assert_allclose(curves["uncertainty_yield"] * curves["budget"], expected)
    for b in (10, 50, 90):  # the rows rank the same way
        (row,) = triage_rows(abs_error, sigma, [b], [0.5], n_trials=2)
        assert row["uncertainty_yield"] == pytest.approx(expected[b - 1] / b)
    rep = triage_report(abs_error, sigma, budgets=[1802], thresholds=[0.5], n_trials=50,
                        n_bootstrap=2, seed=1)  # fmt: skip
    ref = triage_rows(abs_error, sigma, [100], [0.5], n_trials=50, seed=1)
    assert rep["rows"][0]["random_yield_mean"] == ref[0]["random_yield_mean"]
    assert rep["rows"][0]["random_yield_std"] == ref[0]["random_yield_std"]


@pytest.mark.parametrize(("margin", "passes"), [(3.0, True), (3.5, True), (2.999, False)])
def test_verdict_margin_of_three_random_std_at_its_boundary(monkeypatch, margin, passes):
    """The verdict asks every row to beat random by at least 3 random standard deviations:
    exactly 3 and 3.5 pass, just under 3 fails (rows stubbed to place the margin)."""
    import tracer.analysis.triage as triage

    def rows(abs_error, sigma, budgets, thresholds, **_):
        return [{"budget": b, "threshold": float(t), "n_bad": 1, "uncertainty_yield": 1.0,
                 "random_yield_mean": 0.5, "random_yield_std": 0.1, "oracle_yield": 1.0,
                 "margin_in_random_std": margin} for b in budgets for t in thresholds]  # fmt: skip

    monkeypatch.setattr(triage, "triage_rows", rows)
    rep = triage.triage_report(np.ones(10), np.arange(10.0), n_bootstrap=0)
    assert rep["beats_random_by_3_std_everywhere"] is passes
