"""Uncertainty scores against values worked out by hand on small arrays."""

import math

import numpy as np
import pytest
from scipy import stats

from tracer.uncertainty import (
    binned_errors,
    conformal_quantile,
    error_sigma_correlation,
    interval_coverage,
    sigma_scale,
    sparsification,
    top_error_flagging,
    uncertainty_report,
)


def test_correlations_of_a_monotone_but_curved_relation():
    sigma = np.array([1.0, 2.0, 3.0, 4.0])
    err = sigma**2  # same order: Spearman 1; Pearson of (1,2,3,4) with (1,4,9,16) by hand
    out = error_sigma_correlation(sigma, err)
    assert out["spearman"] == pytest.approx(1.0)
    # deviations from the means 2.5 and 7.5: sum of products 25, sums of squares 5 and 129
    x, y = sigma - 2.5, err - 7.5
    assert out["pearson"] == pytest.approx((x @ y) / math.sqrt((x @ x) * (y @ y)))
    assert out["pearson"] == pytest.approx(25 / math.sqrt(5 * 129))


def test_top_error_flagging_by_hand():
    err = np.array([0.1, 0.2, 0.3, 0.4, 5.0])  # 20%: the one largest error is positive
    perfect = top_error_flagging(np.array([1, 2, 3, 4, 9.0]), err, fraction=0.2)
    assert perfect["auroc"] == 1.0 and perfect["average_precision"] == 1.0
    # the positive ranked second of five: beats 3 of 4 negatives -> AUROC 0.75, AP 1/2
    half = top_error_flagging(np.array([1, 2, 3, 9, 4.0]), err, fraction=0.2)
    assert half["auroc"] == 0.75 and half["average_precision"] == 0.5
    with pytest.raises(ValueError, match="positives"):
        top_error_flagging(np.ones(3), err[:3], fraction=0.0)


def test_sparsification_and_ause_by_hand():
    err = np.array([4.0, 1.0, 3.0, 2.0])
    fr = np.array([0.0, 0.25, 0.5, 0.75])
    # σ ranks the errors exactly: curve equals the oracle, AUSE 0
    good = sparsification(np.array([4.0, 1.0, 3.0, 2.0]), err, fr)
    np.testing.assert_allclose(good["model"], [2.5, 2.0, 1.5, 1.0])
    assert good["ause"] == 0.0
    # reversed σ: removes the smallest errors first -> keeps 4,3,2 then 4,3 then 4
    bad = sparsification(np.array([1.0, 4.0, 2.0, 3.0]), err, fr)
    np.testing.assert_allclose(bad["model"], [2.5, 3.0, 3.5, 4.0])
    gaps = np.array([0.0, 1.0, 2.0, 3.0])
    assert bad["ause"] == pytest.approx(0.25 * (0.5 + 1.5 + 2.5))
    assert bad["ause"] == pytest.approx(np.sum((gaps[1:] + gaps[:-1]) / 2 * 0.25))


def test_binned_errors_equal_count_bins():
    sigma = np.array([0.1, 0.4, 0.2, 0.3])
    err = np.array([1.0, 4.0, 2.0, 3.0])
    out = binned_errors(sigma, err, n_bins=2)
    np.testing.assert_allclose(out["mean_sigma"], [0.15, 0.35])
    np.testing.assert_allclose(out["mae"], [1.5, 3.5])
    np.testing.assert_allclose(out["rmse"], [math.sqrt(2.5), math.sqrt(12.5)])


def test_coverage_scale_and_conformal_by_hand():
    mean = np.zeros(4)
    sigma = np.ones(4)
    y = np.array([0.5, -1.0, 2.5, -3.0])
    assert interval_coverage(mean, sigma, y) == 0.5  # |y| <= 1.96 for two of four
    assert sigma_scale(mean, sigma, y) == pytest.approx(math.sqrt((0.25 + 1 + 6.25 + 9) / 4))
    # n = 4, 80%: ceil(5 * 0.8) = 4th smallest score of (0.5, 1, 2.5, 3) -> 3
    assert conformal_quantile(mean, sigma, y, confidence=0.8) == 3.0
    assert conformal_quantile(mean, sigma, y, confidence=0.95) == math.inf  # n too small
    with pytest.raises(ValueError, match="positive"):
        sigma_scale(mean, np.zeros(4), y)


def test_report_on_gaussian_errors_is_calibrated_and_handles_zero_sigma():
    rng = np.random.default_rng(0)
    n = 4000
    sigma = rng.uniform(0.05, 0.5, size=2 * n)
    y = rng.normal(0.0, sigma)  # errors truly N(0, σ²)
    mean = np.zeros(2 * n)
    half = slice(0, n), slice(n, 2 * n)
    val = (mean[half[0]], sigma[half[0]], y[half[0]])
    test_sigma = sigma[half[1]].copy()
    test_sigma[0] = 0.0
    out = uncertainty_report(val, (mean[half[1]], test_sigma, y[half[1]]))
    assert out["n_sigma_floored"] == 1
    assert 0.93 < out["coverage95"] < 0.97 and out["miscal_area"] < 0.02
    assert out["sigma_scale"] == pytest.approx(1.0, abs=0.05)
    assert 0.93 < out["conformal_coverage95"] < 0.97
    assert out["spearman"] == pytest.approx(stats.spearmanr(test_sigma, np.abs(y[half[1]]))[0])
    assert out["auroc_top10"] > 0.75 and out["ause"] > 0


def test_gaussian_scores_by_hand():
    """Every test point N(0, 1) with target 0: NLL = ½·log 2π, CRPS = 2φ(0) − 1/√π, all inside
    the 95% interval."""
    zeros, ones = np.zeros(8), np.ones(8)
    out = uncertainty_report((zeros, ones, np.linspace(-1, 1, 8)), (zeros, ones, zeros))
    assert out["nll"] == pytest.approx(0.5 * math.log(2 * math.pi))
    assert out["crps"] == pytest.approx(2 * stats.norm.pdf(0) - 1 / math.sqrt(math.pi))
    assert out["coverage95"] == 1.0
    assert out["spearman"] is None and out["pearson"] is None  # constant errors: undefined
    # every target at the mean: each central interval holds all of them, observed proportion 1
    # against expected p, so the miscalibration area is the area between y = 1 and y = p: ½
    assert out["miscal_area"] == pytest.approx(0.5, abs=0.03)


def test_binned_errors_never_makes_empty_bins():
    out = binned_errors(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0]), n_bins=10)
    assert list(out["n"]) == [1, 1, 1] and np.isfinite(out["rmse"]).all()


def test_recalibration_is_fitted_on_validation_not_test():
    """Validation σ half the true spread, test σ right: fitted on validation the scale is ~2
    and the conformal quantile ~2 × 1.96; fitted on test (the wrong split) both would be ~1×."""
    rng = np.random.default_rng(1)
    n = 4000
    sigma = rng.uniform(0.05, 0.5, size=2 * n)
    y_val = rng.normal(0.0, 2 * sigma[:n])
    y_test = rng.normal(0.0, sigma[n:])
    out = uncertainty_report((np.zeros(n), sigma[:n], y_val), (np.zeros(n), sigma[n:], y_test))
    assert out["sigma_scale_nll"] == pytest.approx(2.0, rel=0.05)
    assert out["conformal_quantile"] == pytest.approx(2 * 1.96, rel=0.06)
    assert out["coverage95"] == pytest.approx(0.95, abs=0.02)  # raw test σ is right
    assert out["conformal_coverage95"] > 0.99  # the validation-fitted interval is too wide here


def test_isotonic_recalibration_is_right_on_gaussian_errors():
    rng = np.random.default_rng(2)
    n = 4000
    sigma = rng.uniform(0.05, 0.5, size=2 * n)
    y = rng.normal(0.0, sigma)
    out = uncertainty_report((np.zeros(n), sigma[:n], y[:n]), (np.zeros(n), sigma[n:], y[n:]))
    assert 0.93 < out["coverage95_isotonic"] < 0.97
    assert out["miscal_area_isotonic"] < 0.03


def test_shipped_interval_is_the_validation_conformal_quantile_of_the_run_of_record():
    """calibration.json beside the shipped members holds the split-conformal quantile of the
    GPU run's validation predictions (recomputed here), and its test coverage."""
    import json

    import pandas as pd
    from conftest import REPO

    from tracer.uncertainty import conformal_quantile

    shipped = json.loads((REPO / "tracer/pretrained/flla_gemnet_t/calibration.json").read_text())
    frame = pd.read_parquet(REPO / "results/gpu/gemnet_t.parquet")
    val, test = frame[frame["set"] == "val"], frame[frame["set"] == "test"]
    floor = 1e-6
    q = conformal_quantile(val["mean"], np.maximum(val["std"], floor), val["y_true"])
    assert shipped["scale_or_quantile"] == pytest.approx(q, rel=1e-9)
    inside = np.abs(test["y_true"] - test["mean"]) <= q * np.maximum(test["std"], floor)
    assert shipped["test_coverage95"] == pytest.approx(float(inside.mean()), abs=1e-12)
