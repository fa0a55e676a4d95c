"""Out-of-fold assembly and paired statistics on made-up predictions whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from tracer.analysis.cross_validation import (
    cv_accuracy,
    out_of_fold,
    paired_bootstrap,
    stratified_ci,
)


def test_paired_difference_is_exact_and_its_interval_tight_when_errors_differ_by_a_constant():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    e = np.abs(rng.normal(0.1, 0.02, size=500))  # positive errors: |e + 0.05| = |e| + 0.05
    res = paired_bootstrap(y, y + e + 0.05, y + e, strata=np.arange(500) % 5)
    assert res["mae"]["diff"] == pytest.approx(0.05)
    assert res["mae"]["ci95"] == pytest.approx([0.05, 0.05])  # paired: the shared noise cancels
    assert res["wins"] == 0 and res["n_strata"] == 5


def test_a_difference_inside_the_noise_straddles_zero_and_a_real_one_does_not():
    rng = np.random.default_rng(1)
    y = np.zeros(400)
    a, b = rng.normal(0, 0.1, 400), rng.normal(0, 0.1, 400)
    same = paired_bootstrap(y, a, a[::-1])  # the same errors on other structures: diff 0
    assert same["mae"]["diff"] == pytest.approx(0, abs=1e-15)
    assert same["mae"]["ci95"][0] < 0 < same["mae"]["ci95"][1]
    better = paired_bootstrap(y, 0.5 * a, b, strata=np.arange(400) % 4)
    assert better["mae"]["ci95"][1] < 0 and better["wins"] == 4
    # the paired interval is narrower than the unpaired one when errors are correlated
    c = a + rng.normal(0, 0.01, 400)
    paired = paired_bootstrap(y, a, c)["mae"]["ci95"]
    ia, ic = stratified_ci(y, a, np.zeros(400)), stratified_ci(y, c, np.zeros(400))
    assert paired[1] - paired[0] < (ia[1] - ia[0]) / 3 and ic[0] < ia[1]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1, 2], [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap([1, np.nan], [1, 2], [1, 2])


def _frame():
    return pd.DataFrame({"id": ["a", "b", "c", "a", "b"], "set": ["test", "test", "test", "val",
                                                                 "val"],
                         "fold": [0, 1, 1, 1, 0], "y_true": [1.0, 2.0, 3.0, 1.0, 2.0],
                         "mean": [1.1, 2.0, 2.5, 1.0, 2.0], "std": [0.1] * 5})  # fmt: skip


def test_out_of_fold_takes_each_id_once_and_names_gaps_and_repeats():
    oof = out_of_fold(_frame(), ["c", "a", "b"])
    assert list(oof["id"]) == ["c", "a", "b"] and list(oof["fold"]) == [1, 0, 1]
    with pytest.raises(ValueError, match=r"in no fold's test part, e.g. \['d'\]"):
        out_of_fold(_frame(), ["a", "b", "c", "d"])
    twice = pd.concat([_frame(), _frame().iloc[:1]])
    with pytest.raises(ValueError, match="more than one fold"):
        out_of_fold(twice, ["a", "b", "c"])


def test_cv_accuracy_reports_per_fold_and_pairs():
    oof = out_of_fold(_frame(), ["a", "b", "c"])
    rec = cv_accuracy(oof, {"m": oof["mean"], "zero": np.zeros(3)}, [("m", "zero")],
                      n_resamples=200)  # fmt: skip
    assert rec["models"]["m"]["mae"] == pytest.approx(0.2)
    assert rec["models"]["m"]["per_fold_mae"] == pytest.approx([0.1, 0.25])
    pair = rec["paired"][0]
    assert pair["diff"] == pytest.approx(0.2 - 2.0) and pair["fold_wins"] == 2


def test_run_to_run_on_made_up_retrainings():
    from tracer.analysis.cross_validation import run_to_run

    base = pd.DataFrame({"id": list("abcd"), "set": ["test"] * 3 + ["val"],
                         "y_true": [0.0, 1.0, 2.0, 3.0],
                         "member_0": [0.1, 1.0, 2.0, 3.0]})  # fmt: skip
    other = base.assign(member_0=[0.1, 1.3, 2.0, 9.0])
    rec = run_to_run({"x": base, "y": other})
    assert rec["test_mae"] == pytest.approx({"x": 0.1 / 3, "y": 0.4 / 3})
    [pair] = rec["pairs"]
    assert pair["max_abs_prediction_diff"] == pytest.approx(0.3)  # the val row is not compared
    assert pair["test_mae_diff"] == pytest.approx(-0.1)
    assert (pair["a"], pair["b"], rec["n_test"]) == ("x", "y", 3)
    assert pair["median_abs_prediction_diff"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="run 'y' predicts other test ids than 'x'"):
        run_to_run({"x": base, "y": other.iloc[1:]})


def test_paired_bootstrap_rmse_and_wins_by_hand():
    from tracer.analysis.cross_validation import paired_bootstrap

    y = np.zeros(6)
    a = np.array([0.1, -0.1, 0.1, -0.1, 0.1, -0.1])  # |error| 0.1 everywhere
    b = np.array([0.3, -0.3, 0.3, -0.1, 0.1, -0.1])  # 0.3 in stratum 0, 0.1 in stratum 1
    out = paired_bootstrap(y, a, b, strata=[0, 0, 0, 1, 1, 1])
    assert out["rmse"]["diff"] == pytest.approx(0.1 - np.sqrt((3 * 0.09 + 3 * 0.01) / 6))
    assert out["mae"]["diff"] == pytest.approx(0.1 - 0.2)
    assert out["wins"] == 1  # a tie in stratum 1 is not a win
    assert out["n"] == 6 and out["n_strata"] == 2
    same = paired_bootstrap(y, a, a)
    assert same["mae"]["ci95"] == [0.0, 0.0] and same["rmse"]["ci95"] == [0.0, 0.0]
    one = paired_bootstrap([0.0], [0.1], [0.2])  # a single structure is enough
    assert one["mae"]["diff"] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="non-empty and of one length"):
        paired_bootstrap([0.0, 1.0], [0.1], [0.2])
    with pytest.raises(ValueError, match="non-finite values"):
        paired_bootstrap([0.0], [np.nan], [0.2])


def test_cv_accuracy_record_against_independent_computations():
    from tracer.analysis.cross_validation import cv_accuracy, paired_bootstrap

    rng = np.random.default_rng(4)
    n = 90
    fold = np.repeat([0, 1, 2], 30)
    y = rng.normal(size=n)
    a = y + rng.normal(scale=0.1, size=n)
    b = y + rng.normal(scale=0.2, size=n)
    oof = pd.DataFrame({"y_true": y, "fold": fold})
    rec = cv_accuracy(oof, {"a": a, "b": b}, [("a", "b")])
    assert (rec["n"], rec["n_folds"]) == (90, 3)
    # the MAE interval: structures resampled within each fold, 2,000 times, seed 0
    r = np.random.default_rng(0)
    groups = [np.flatnonzero(fold == f) for f in range(3)]
    idx = np.concatenate([g[r.integers(0, 30, size=(2000, 30))] for g in groups], axis=1)
    ref = np.quantile(np.abs(a[idx] - y[idx]).mean(1), [0.025, 0.975])
    np.testing.assert_allclose(rec["models"]["a"]["mae_ci95"], ref, rtol=1e-12)
    assert rec["models"]["a"]["per_fold_mae"] == pytest.approx(
        [np.abs(a - y)[fold == f].mean() for f in range(3)])  # fmt: skip
    (pair,) = rec["paired"]
    ref_pair = paired_bootstrap(y, a, b, strata=fold)
    assert pair == {"a": "a", "b": "b", "metric": "mae", "diff": ref_pair["mae"]["diff"],
                    "ci95": ref_pair["mae"]["ci95"], "fold_wins": ref_pair["wins"],
                    "rmse_diff": ref_pair["rmse"]["diff"], "rmse_ci95": ref_pair["rmse"]["ci95"],
                    "n": 90}  # fmt: skip


def test_baseline_folds_become_out_of_fold_predictions_and_gaps_are_named(tmp_path):
    from tracer.analysis.cross_validation import baseline_oof

    ids = [f"m{i}" for i in range(6)]
    y = np.array([0.0, -1.0, 0.5, -2.0, 1.0, -0.5])
    oof = pd.DataFrame({"id": ids, "y_true": y})
    for f in range(2):  # fold f tests ids f, f+2, f+4; the rest is its training part
        test = ids[f::2]
        rows = pd.DataFrame({"id": ids, "set": ["test" if i in test else "train" for i in ids],
                             "fold": f, "y_true": y, "mean": y + 0.1 * (f + 1)})  # fmt: skip
        (tmp_path / "cgcnn" / f"fold_{f}").mkdir(parents=True)
        rows.to_parquet(tmp_path / "cgcnn" / f"fold_{f}" / "predictions.parquet", index=False)
    got = baseline_oof(tmp_path, 2, oof)
    assert list(got) == ["cgcnn"]  # no schnet or alignn folder: not run, not an error
    np.testing.assert_allclose(got["cgcnn"], y + [0.1, 0.2] * 3)
    kept = pd.read_parquet(tmp_path / "oof_cgcnn.parquet")
    assert list(kept["id"]) == ids and list(kept["fold"]) == [0, 1] * 3
    with pytest.raises(ValueError, match="targets differ"):
        baseline_oof(tmp_path, 2, oof.assign(y_true=y + 1))
    with pytest.raises(FileNotFoundError, match=r"folds \[2\]"):
        baseline_oof(tmp_path, 3, oof)


def test_alignn_fold_files_without_fold_column_or_mean_are_read(tmp_path):
    from tracer.analysis.cross_validation import baseline_oof

    ids = ["a", "b", "c", "d"]
    y = np.array([0.0, -1.0, 0.5, -2.0])
    for f in range(2):
        test = ids[f::2]
        rows = pd.DataFrame({"id": test, "set": "test", "y_true": y[f::2], "y_pred": y[f::2] - 1})
        (tmp_path / "alignn" / f"fold_{f}").mkdir(parents=True)
        rows.to_parquet(tmp_path / "alignn" / f"fold_{f}" / "predictions.parquet", index=False)
    got = baseline_oof(tmp_path, 2, pd.DataFrame({"id": ids, "y_true": y}))
    np.testing.assert_allclose(got["alignn"], y - 1)
    assert list(pd.read_parquet(tmp_path / "oof_alignn.parquet")["fold"]) == [0, 1, 0, 1]


def _resampled(y, a, b, strata, n, seed):
    """An independent fold-stratified resampling: the same draws as documented (one generator,
    strata in sorted order, each drawing ``n × size`` indices)."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in np.unique(strata):
        g = np.flatnonzero(strata == s)
        parts.append(g[rng.integers(0, g.size, size=(n, g.size))])
    idx = np.concatenate(parts, axis=1)
    return np.abs(a[idx] - y[idx]).mean(1), np.abs(b[idx] - y[idx]).mean(1)


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_paired_interval_quantiles_and_defaults_against_an_independent_resampling(confidence):
    rng = np.random.default_rng(3)
    y = rng.normal(size=90)
    a, b = y + rng.normal(0, 0.3, 90), y + rng.normal(0, 0.4, 90)
    strata = np.arange(90) % 3
    ma, mb = _resampled(y, a, b, strata, 2000, 0)  # the defaults: 2000 resamples, seed 0
    lo, hi = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    got = paired_bootstrap(y, a, b, strata=strata, confidence=confidence)
    assert got["mae"]["ci95"] == pytest.approx(list(np.quantile(ma - mb, [lo, hi])), abs=1e-12)
    assert stratified_ci(y, a, strata) == pytest.approx(list(np.quantile(ma, [0.025, 0.975])))
    # cv_accuracy passes its own n_resamples on to both
    oof = pd.DataFrame({"y_true": y, "fold": strata})
    rec = cv_accuracy(oof, {"a": a, "b": b}, [("a", "b")], n_resamples=300)
    ma3, mb3 = _resampled(y, a, b, strata, 300, 0)
    assert rec["models"]["a"]["mae_ci95"] == pytest.approx(list(np.quantile(ma3, [0.025, 0.975])))
    assert rec["paired"][0]["ci95"] == pytest.approx(list(np.quantile(ma3 - mb3, [0.025, 0.975])))


def test_refusals_name_what_is_wrong():
    with pytest.raises(
        ValueError, match=r"^y, pred_a and pred_b must be non-empty and of one length$"
    ):
        paired_bootstrap([], [], [])
    with pytest.raises(ValueError, match=r"^non-finite values$"):
        paired_bootstrap([1.0], [np.inf], [1.0])
    frame = pd.DataFrame({"id": [f"x{i}" for i in range(7)] * 2, "set": "test"})
    with pytest.raises(ValueError) as twice:
        out_of_fold(frame, [f"x{i}" for i in range(7)])
    assert (
        str(twice.value) == "ids in more than one fold's test part: ['x0', 'x1', 'x2', 'x3', 'x4']"
    )
    once = frame.iloc[:1]
    with pytest.raises(ValueError) as never:
        out_of_fold(once, [f"x{i}" for i in range(8)])
    assert str(never.value) == "7 ids in no fold's test part, e.g. ['x1', 'x2', 'x3', 'x4', 'x5']"


def test_fold_files_keep_their_own_fold_column_and_a_fresh_index(tmp_path):
    from tracer.analysis.cross_validation import read_folds

    for f in range(2):
        rows = pd.DataFrame({"id": [f"a{f}", f"b{f}"], "fold": 5 - f}, index=[7, 8])
        (tmp_path / f"fold_{f}").mkdir()
        rows.to_parquet(tmp_path / f"fold_{f}" / "predictions.parquet")
    got = read_folds(tmp_path, 2)
    assert list(got.index) == [0, 1, 2, 3] and list(got["fold"]) == [5, 5, 4, 4]


def test_baseline_out_of_fold_file_goes_where_asked_without_an_index(tmp_path):
    from tracer.analysis.cross_validation import baseline_oof

    ids = ["a", "b"]
    y = np.array([0.0, -1.0])
    for f in range(2):
        rows = pd.DataFrame({"id": [ids[f]], "set": "test", "fold": f, "y_true": [y[f]],
                             "mean": [y[f] + 0.1]}, index=[9])  # fmt: skip
        (tmp_path / "run" / "schnet" / f"fold_{f}").mkdir(parents=True)
        rows.to_parquet(tmp_path / "run" / "schnet" / f"fold_{f}" / "predictions.parquet")
    (tmp_path / "out").mkdir()
    baseline_oof(tmp_path / "run", 2, pd.DataFrame({"id": ids, "y_true": y}), tmp_path / "out")
    assert not (tmp_path / "run" / "oof_schnet.parquet").exists()
    kept = pd.read_parquet(tmp_path / "out" / "oof_schnet.parquet")
    assert list(kept.columns) == ["id", "fold", "set", "y_true", "y_pred"]
    assert list(kept.index) == [0, 1]
