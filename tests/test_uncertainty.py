"""Uncertainty scores against values worked out by hand on small arrays."""

import math

import numpy as np
import pytest
from scipy import stats

from tracer.analysis.uncertainty import (
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

    from tracer.analysis.uncertainty import conformal_quantile

    shipped = json.loads((REPO / "tracer/pretrained/flla_gemnet_t/calibration.json").read_text())
    frame = pd.read_parquet(REPO / "results/flla_full/gemnet_t.parquet")
    val, test = frame[frame["set"] == "val"], frame[frame["set"] == "test"]
    floor = 1e-6
    q = conformal_quantile(val["mean"], np.maximum(val["std"], floor), val["y_true"])
    assert shipped["scale_or_quantile"] == pytest.approx(q, rel=1e-9)
    inside = np.abs(test["y_true"] - test["mean"]) <= q * np.maximum(test["std"], floor)
    assert shipped["test_coverage95"] == pytest.approx(float(inside.mean()), abs=1e-12)


def _gaussian_set(rng, n):
    """Predictions far from zero (a sign error in y − mean shows), σ of varied size, and errors
    wider than σ (so recalibration has work to do); eV/atom."""
    mean = rng.normal(-1.0, 0.5, n)
    sigma = rng.uniform(0.02, 0.2, n)
    return mean, sigma, mean + 1.7 * sigma * rng.normal(0.0, 1.0, n)


def test_report_is_every_key_recomputed_from_the_reference_libraries():
    import uncertainty_toolbox as uct
    from sklearn.metrics import average_precision_score, roc_auc_score
    from uncertainty_toolbox import metrics_calibration as mc
    from uncertainty_toolbox import recalibration as rc

    rng = np.random.default_rng(3)
    vm, vs, vy = _gaussian_set(rng, 200)
    tm, ts, ty = _gaussian_set(rng, 150)
    vs[1], ts[0] = 1e-9, 0.0  # below the floor: floored, and counted
    rep = uncertainty_report((vm, vs, vy), (tm, ts, ty), n_bins=7, top_fraction=0.2,
                             confidence=0.9)  # fmt: skip
    vs_f, ts_f = np.maximum(vs, 1e-6), np.maximum(ts, 1e-6)
    err = np.abs(ty - tm)
    z = stats.norm.ppf(0.95)

    cal = {"nll", "crps", "miscal_area", "coverage95"}
    assert set(rep) == {
        "n_test", "n_val", "n_sigma_floored", "sigma_floor_ev_per_atom", "spearman", "pearson",
        "auroc_top10", "average_precision_top10", "n_flagged_top10", "ause", *cal,
        "recalibration", "sigma_scale", *(f"{k}_recal" for k in cal), "sigma_scale_nll",
        *(f"{k}_nll_scaled" for k in cal), "miscal_area_isotonic", "coverage95_isotonic",
        "conformal_quantile", "conformal_coverage95", "conformal_mean_halfwidth", "curves",
    }  # fmt: skip
    assert rep["recalibration"].startswith("sigma scaling, factor minimising the miscalibration")
    assert (rep["n_test"], rep["n_val"], rep["n_sigma_floored"]) == (150, 200, 2)
    assert rep["sigma_floor_ev_per_atom"] == 1e-6
    assert rep["spearman"] == pytest.approx(stats.spearmanr(ts, err).statistic)
    assert rep["pearson"] == pytest.approx(stats.pearsonr(ts, err).statistic)
    labels = np.zeros(150, bool)
    labels[np.argsort(-err, kind="stable")[:30]] = True
    assert rep["n_flagged_top10"] == 30
    assert rep["auroc_top10"] == pytest.approx(roc_auc_score(labels, ts))
    assert rep["average_precision_top10"] == pytest.approx(average_precision_score(labels, ts))

    def scores(sig):
        return {"nll": uct.nll_gaussian(tm, sig, ty), "crps": uct.crps_gaussian(tm, sig, ty),
                "miscal_area": mc.miscalibration_area(tm, sig, ty),
                "coverage95": np.mean(err <= z * sig)}  # fmt: skip

    scale = rc.get_std_recalibrator(vm, vs_f, vy, criterion="ma_cal")(np.ones(1))[0]
    scale_nll = np.sqrt(np.mean((vy - vm) ** 2 / vs_f**2))
    assert rep["sigma_scale"] == pytest.approx(scale)
    assert rep["sigma_scale_nll"] == pytest.approx(scale_nll)
    for suffix, sig in (("", ts_f), ("_recal", ts_f * scale), ("_nll_scaled", ts_f * scale_nll)):
        for k, v in scores(sig).items():
            assert rep[k + suffix] == pytest.approx(v), k + suffix
    iso = rc.iso_recal(*mc.get_proportion_lists_vectorized(vm, vs_f, vy, prop_type="interval"))
    assert rep["miscal_area_isotonic"] == pytest.approx(
        mc.miscalibration_area(tm, ts_f, ty, recal_model=iso))  # fmt: skip
    z_iso = stats.norm.ppf(0.5 + iso.predict([0.9])[0] / 2)
    assert rep["coverage95_isotonic"] == pytest.approx(np.mean(err <= z_iso * ts_f))
    q = np.sort(np.abs(vy - vm) / vs_f)[math.ceil(201 * 0.9) - 1]
    assert rep["conformal_quantile"] == pytest.approx(q)
    assert rep["conformal_coverage95"] == pytest.approx(np.mean(err <= q * ts_f))
    assert rep["conformal_mean_halfwidth"] == pytest.approx(np.mean(q * ts_f))

    curves = rep["curves"]
    assert set(curves) == {"calibration", "sparsification", "binned"}
    assert curves["calibration"]["expected"] == pytest.approx(np.linspace(0.0, 1.0, 21))
    for key, sig in (("observed", ts_f), ("observed_recal", ts_f * scale)):
        want = mc.get_proportion_lists_vectorized(tm, sig, ty, num_bins=21, prop_type="interval")
        assert curves["calibration"][key] == pytest.approx(want[1]), key
    sparse = sparsification(ts, err)
    assert rep["ause"] == pytest.approx(sparse["ause"])
    assert set(curves["sparsification"]) == {"fractions", "model", "oracle"}
    for k in ("fractions", "model", "oracle"):
        assert curves["sparsification"][k] == pytest.approx(sparse[k]), k
    binned = binned_errors(ts, err, 7)
    assert set(curves["binned"]) == {"mean_sigma", "mae", "rmse", "n"}
    for k, v in binned.items():
        assert curves["binned"][k] == pytest.approx(v), k
    assert len(uncertainty_report((vm, vs, vy), (tm, ts, ty))["curves"]["binned"]["n"]) == 10


def test_edges_of_the_small_functions():
    z = stats.norm.ppf(0.975)
    # a target exactly on the interval's edge is inside; a one-element set is a set
    assert interval_coverage([5.0, 5.0], [1.0, 1.0], [5.0 + z, 5.0]) == 1.0
    assert interval_coverage([-3.0], [0.5], [-3.1]) == 1.0
    assert sigma_scale([-2.0, -2.0], [0.5, 0.5], [-1.0, -3.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"^sigma must be positive to fit a scale$"):
        sigma_scale([0.0, 1.0], [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"^sigma must be positive for normalised conformal"):
        conformal_quantile([0.0, 1.0], [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="of one length"):
        error_sigma_correlation([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="of one length"):
        error_sigma_correlation([], [])
    with pytest.raises(ValueError, match=r"^sigma must be non-negative$"):
        error_sigma_correlation([-0.1, 0.2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"^arrays must be finite$"):
        error_sigma_correlation([np.nan, 0.2], [0.1, 0.2])
    # ranges of exactly 1 are not "constant"; one constant input is enough for None
    assert error_sigma_correlation([0.0, 1.0, 0.5], [0.1, 0.3, 0.2])["spearman"] == 1.0
    assert error_sigma_correlation([0.1, 0.3, 0.2], [0.0, 1.0, 0.5])["spearman"] == 1.0
    constant = error_sigma_correlation([0.2, 0.2, 0.2], [0.0, 1.0, 0.5])
    assert constant == {"spearman": None, "pearson": None}
    # the default: the top 10%, ceil(0.1 · n); all positives is refused
    sigma = np.linspace(0.1, 1.0, 25)
    assert top_error_flagging(sigma, sigma)["n_flagged"] == 3
    assert set(top_error_flagging(sigma, sigma)) == {"auroc", "average_precision", "n_flagged"}
    with pytest.raises(ValueError, match="no positives or no negatives"):
        top_error_flagging(sigma, sigma, fraction=1.0)
    default = sparsification(sigma, sigma)
    assert default["fractions"] == pytest.approx(np.linspace(0.0, 0.99, 100))
    assert set(default) == {"fractions", "model", "oracle", "ause"}


def test_ties_in_sigma_and_error_are_broken_by_position():
    """Sorting is stable: among equal σ (or equal |error|) the earlier point comes first. The
    reference order is Python's sort of (key, position), an independent implementation."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n = 300
    sigma = rng.integers(0, 3, n).astype(float)  # many ties (numpy's default sort is unstable)
    err = np.round(rng.uniform(0.0, 1.0, n), 1)  # ties in |error| too
    by_sigma = [i for _, i in sorted(zip(sigma, range(n), strict=True))]
    bins = np.array_split(np.array(by_sigma), 10)
    assert binned_errors(sigma, err)["mae"] == pytest.approx([err[b].mean() for b in bins])
    keep = [n - int(np.ceil(f * n)) for f in (0.0, 0.5, 0.9)]
    model = sparsification(sigma, err, fractions=[0.0, 0.5, 0.9])["model"]
    assert model == pytest.approx([err[by_sigma[:k]].mean() for k in keep])
    by_error = [i for _, i in sorted(zip(-err, range(n), strict=True))]
    labels = np.zeros(n, bool)
    labels[by_error[:30]] = True
    score = rng.uniform(0.0, 1.0, n)
    assert top_error_flagging(score, err)["auroc"] == pytest.approx(roc_auc_score(labels, score))


def test_report_floor_is_strict_and_too_few_validation_rows_give_no_interval():
    rng = np.random.default_rng(5)
    vm, vs, vy = _gaussian_set(rng, 12)  # ceil(13 · 0.95) = 13 > 12: no finite quantile
    tm, ts, ty = _gaussian_set(rng, 40)
    vs[0], ts[0], ts[1] = 1e-6, 1e-6, 1e-7  # on the floor: not floored; below it: floored
    rep = uncertainty_report((vm, vs, vy), (tm, ts, ty), sigma_floor=1e-6)
    assert rep["n_sigma_floored"] == 1
    assert rep["conformal_quantile"] is None
    assert rep["conformal_coverage95"] is None and rep["conformal_mean_halfwidth"] is None
