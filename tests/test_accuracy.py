import numpy as np
import pytest

from tracer.analysis.accuracy import (
    PUBLISHED_ACCURACY,
    accuracy_table,
    bootstrap_ci,
    evaluate,
    point_metrics,
    table1,
)


def test_point_metrics_by_hand():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    p = np.array([0.5, 1.0, 2.0, 2.0])
    m = point_metrics(y, p)
    assert m["mae"] == pytest.approx(1.5 / 4)
    assert m["rmse"] == pytest.approx(np.sqrt(1.25 / 4))
    assert m["r2"] == pytest.approx(1 - 1.25 / 5.0)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    p = y + rng.normal(scale=0.1, size=400)
    out = evaluate(y, p, n_resamples=500)
    lo, hi = out["mae_ci95"]
    assert lo < out["mae"] < hi and hi - lo < 0.05
    assert out["n"] == 400
    assert bootstrap_ci(y, p, n_resamples=200, seed=1) == bootstrap_ci(
        y, p, n_resamples=200, seed=1
    )


def test_bootstrap_interval_is_a_95_percent_one():
    """For a mean of n iid absolute errors the 95% interval is about ±1.96 standard errors; a
    90% interval (±1.645) would be 16% narrower and fail."""
    rng = np.random.default_rng(3)
    err = rng.normal(scale=0.1, size=2000)
    y = rng.normal(size=err.size)
    lo, hi = bootstrap_ci(y, y + err, n_resamples=4000, seed=0)["mae_ci95"]
    se = np.abs(err).std(ddof=1) / np.sqrt(err.size)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.06)


def test_constant_targets_leave_r2_undefined_not_a_crash():
    out = bootstrap_ci(np.zeros(50), np.linspace(-1, 1, 50), n_resamples=50)
    assert np.isnan(out["r2_ci95"]).all() and np.isfinite(out["mae_ci95"]).all()


def test_bad_inputs():
    with pytest.raises(ValueError):
        point_metrics([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError):
        point_metrics([1.0], [1.0, 2.0])


def test_table_rows():
    t = accuracy_table({"dummy": evaluate([0.0, 1.0, 2.0], [1.0, 1.0, 1.0], n_resamples=50)})
    assert list(t.model) == ["dummy"] and t.MAE.iloc[0] == pytest.approx(2 / 3)


def test_table1_labels_every_row_with_its_source():
    ours = accuracy_table(
        {"dummy": evaluate([0.0, 1.0, 2.0], [1.0, 1.0, 1.0], n_resamples=50)}, "this run"
    )
    table = table1([ours, ours.iloc[:0]])
    assert list(table.columns[:2]) == ["source", "model"]
    assert table.source.notna().all() and table.source.iloc[0] == "this run"
    assert len(table) == 1 + len(PUBLISHED_ACCURACY)
    published = table.iloc[1:]
    assert not published.source.str.contains("FLLA", case=False).any()  # labelled, not ours
    assert len(table1([ours], published=False)) == 1


def test_bootstrap_intervals_against_an_independent_resampling():
    """The defaults (2,000 resamples, seed 0) against the same resampling done here with
    scikit-learn's metrics."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(5)
    y = rng.normal(size=60)
    p = y + rng.normal(scale=0.3, size=60)
    out = bootstrap_ci(y, p)
    idx = np.random.default_rng(0).integers(0, 60, size=(2000, 60))
    ref = {
        "mae_ci95": [mean_absolute_error(y[i], p[i]) for i in idx],
        "rmse_ci95": [np.sqrt(mean_squared_error(y[i], p[i])) for i in idx],
        "r2_ci95": [r2_score(y[i], p[i]) for i in idx],
    }
    for key, values in ref.items():
        np.testing.assert_allclose(out[key], np.quantile(values, [0.025, 0.975]), rtol=1e-12)


def test_table_columns_and_values_exactly():
    m = {"mae": 0.1, "rmse": 0.2, "r2": 0.9, "mae_ci95": [0.08, 0.12], "n": 395}
    t = accuracy_table({"gemnet_t": m}, "run of record")
    assert t.to_dict("records") == [{"source": "run of record", "model": "gemnet_t", "MAE": 0.1,
                                     "MAE 95% CI": "[0.0800, 0.1200]", "RMSE": 0.2, "R2": 0.9,
                                     "n_test": 395}]  # fmt: skip
    bare = accuracy_table({"x": {"mae": 0.1, "rmse": 0.2, "r2": 0.9}})
    assert list(bare.columns) == ["model", "MAE", "MAE 95% CI", "RMSE", "R2", "n_test"]
    assert bare["MAE 95% CI"].iloc[0] == "[nan, nan]"
    table = table1([t, t], published=False)
    assert list(table.index) == [0, 1] and str(table["n_test"].dtype) == "Int64"


def test_evaluate_is_point_metrics_and_the_default_bootstrap():
    rng = np.random.default_rng(7)
    y = rng.normal(size=30)
    p = y + rng.normal(scale=0.2, size=30)
    assert evaluate(y, p) == {**point_metrics(y, p), **bootstrap_ci(y, p, n_resamples=2000,
                                                                    seed=0), "n": 30}  # fmt: skip
    assert (
        evaluate(y, p, n_resamples=100, seed=3)["mae_ci95"]
        == bootstrap_ci(y, p, n_resamples=100, seed=3)["mae_ci95"]
    )


def test_input_checks_name_the_problem():
    with pytest.raises(ValueError, match=r"shape mismatch: \(2,\) vs \(3,\)"):
        point_metrics([0.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="no samples"):
        point_metrics([], [])
    with pytest.raises(ValueError, match="non-finite values in targets or predictions"):
        point_metrics([0.0, 1.0], [0.0, np.inf])  # only the predictions are bad
    one = point_metrics([1.0], [1.5])  # one structure: MAE and RMSE, R² undefined
    assert one["mae"] == pytest.approx(0.5) and np.isnan(one["r2"])
    assert point_metrics([0.0, 1.0], [0.0, 1.0])["r2"] == pytest.approx(1.0)
    assert point_metrics([0, 1], [0, 2])["mae"] == pytest.approx(0.5)  # integers are fine
