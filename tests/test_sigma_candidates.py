"""The σ study's second part: scores against hand values and scikit-learn/scipy, paired
intervals, the declared rule on made-up ensembles where it must adopt and where it must not."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from tracer.analysis.sigma_candidates import (
    paired_rank_differences,
    rank_scores,
    variance_head_study,
)
from tracer.inference.domain_study import score_sigma, triage_yield


def test_scores_by_hand():
    err = np.arange(10) / 10.0  # the worst 10%: the last structure
    perfect = score_sigma(err, err, fractions=(0.1, 0.3), threshold=0.65)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["auroc_top10"] == 1.0
    # three bad (0.7, 0.8, 0.9): the top 10% (1 structure) catches a third, the top 30% all
    assert perfect["triage_yield"] == {"0.1": pytest.approx(1 / 3), "0.3": 1.0}
    reverse = score_sigma(err, -err, fractions=(0.1,), threshold=0.65)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["auroc_top10"] == 0.0
    assert reverse["triage_yield"]["0.1"] == 0.0
    assert np.isnan(triage_yield(err, err, 0.1, threshold=5.0))  # nothing above the threshold


def test_rank_scores_equal_scipy_and_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    err = rng.exponential(size=300)
    sigma = np.round(err + rng.normal(size=300), 1)  # many ties
    spearman, auroc = rank_scores(err, sigma)
    worst = err >= np.quantile(err, 0.9)
    assert spearman == pytest.approx(spearmanr(sigma, err).statistic, rel=1e-12)
    assert auroc == pytest.approx(roc_auc_score(worst, sigma), rel=1e-12)


def test_paired_differences_zero_for_one_candidate_and_positive_for_a_better_one():
    rng = np.random.default_rng(1)
    err = rng.exponential(size=400)
    noisy = err + rng.normal(0, 1.0, 400)
    same = paired_rank_differences(err, noisy, err, noisy, n_resamples=200)
    assert same["auroc_top10"] == {"diff": 0.0, "ci95": [0.0, 0.0]}
    better = paired_rank_differences(err, err + rng.normal(0, 0.05, 400), err, noisy,
                                     n_resamples=200)  # fmt: skip
    assert better["n"] == 400 and better["auroc_top10"]["ci95"][0] > 0
    assert better["spearman"]["ci95"][0] > 0
    with pytest.raises(ValueError, match="of one length"):
        paired_rank_differences(err, noisy, err[:5], noisy[:5])


def test_resampled_differences_equal_scipy_and_scikit_learn_per_resample():
    """The resamples scored as rows of one array give, resample by resample, scipy's Spearman
    and scikit-learn's AUROC (the draws replayed from the same seed)."""
    rng = np.random.default_rng(4)
    err_a, err_b = rng.exponential(size=60), rng.exponential(size=60)
    sig_a, sig_b = err_a + rng.normal(0, 0.5, 60), np.round(err_b + rng.normal(0, 1, 60), 1)
    got = paired_rank_differences(err_a, sig_a, err_b, sig_b, n_resamples=40, seed=9, chunk=7)
    draws, replay = [], np.random.default_rng(9)
    while len(draws) < 40:
        idx = replay.integers(0, 60, 60)
        if all(0 < (e[idx] >= np.quantile(e[idx], 0.9)).sum() < 60 for e in (err_a, err_b)):
            draws.append(idx)

    def diff(idx):
        out = []
        for err, sig in ((err_a, sig_a), (err_b, sig_b)):
            e, s = err[idx], sig[idx]
            out.append((spearmanr(s, e).statistic, roc_auc_score(e >= np.quantile(e, 0.9), s)))
        return out[0][0] - out[1][0], out[0][1] - out[1][1]

    ref = np.array([diff(idx) for idx in draws])
    for k, key in enumerate(("spearman", "auroc_top10")):
        lo, hi = np.quantile(ref[:, k], [0.025, 0.975])
        assert got[key]["ci95"] == pytest.approx([lo, hi], rel=1e-9)
        assert got[key]["diff"] == pytest.approx(diff(np.arange(60))[k], rel=1e-9)


def _frames(seed=0, n=200, nll_sigma_noise=0.01, nll_extra_error=0.0, shipped_sigma_noise=1.0):
    """Two ensembles' predictions on the same val and test structures; the variance-head
    ensemble's σ_total tracks its errors within ``nll_sigma_noise``."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i}" for i in range(2 * n)]
    y = rng.normal(size=2 * n)
    base = {"id": ids, "set": ["val"] * n + ["test"] * n, "y_true": y}
    err = rng.exponential(0.1, 2 * n) * rng.choice([-1, 1], 2 * n)
    shipped = pd.DataFrame({**base, "mean": y + err,
                            "std": np.abs(err) + np.abs(rng.normal(0, shipped_sigma_noise, 2 * n))})
    err2 = err * rng.choice([0.8, 1.2], 2 * n) + nll_extra_error  # as accurate, other errors
    sigma_total = np.abs(err2) + np.abs(rng.normal(0, nll_sigma_noise, 2 * n)) + 1e-3
    nll = pd.DataFrame({**base, "mean": y + err2, "std": sigma_total / 2,
                        "aleatoric_var": 0.75 * sigma_total**2, "sigma_total": sigma_total})
    return shipped, nll  # fmt: skip


def test_rule_adopts_a_better_sigma_of_equal_accuracy():
    shipped, nll = _frames()
    rep = variance_head_study(shipped, nll, n_resamples=200)
    assert rep["chosen"] == "nll_sigma_total" and rep["adopted"] is True
    assert rep["validation"]["nll_sigma_total"]["auroc_top10"] > 0.95
    assert rep["minus_paper_sigma"]["test"]["nll_sigma_total"]["auroc_top10"]["diff"] > 0
    assert (rep["n_val"], rep["n_test"]) == (200, 200)
    # the conformal half-widths: the validation quantile of |error| / σ, scored on test
    test = nll[nll.set == "test"]
    q = rep["conformal_coverage"]["nll_sigma_total"]["conformal_quantile"]
    inside = np.abs(test.y_true - test["mean"]) <= q * test.sigma_total
    assert rep["conformal_coverage"]["nll_sigma_total"]["coverage95_test"] == inside.mean()


def test_rule_refuses_a_less_accurate_ensemble_and_a_worse_sigma():
    shipped, nll = _frames(nll_extra_error=0.05)  # every prediction 0.05 eV/atom further off
    rep = variance_head_study(shipped, nll, n_resamples=200)
    assert rep["mae"]["validation"]["nll_minus_shipped"]["ci95"][0] > 0
    assert rep["adopted"] is False
    shipped, nll = _frames(nll_sigma_noise=5.0, shipped_sigma_noise=0.01)  # the paper's σ ranks
    rep = variance_head_study(shipped, nll, n_resamples=200)
    assert rep["chosen"] == "paper_sigma" and rep["adopted"] is False


def _two_folds():
    """The frames of two folds (the same ids in each, as a structure's duplicates may be)."""
    a, b = _frames(seed=0), _frames(seed=1)
    return [pd.concat([x[k].assign(fold=f) for f, x in enumerate((a, b))], ignore_index=True)
            for k in (0, 1)], (a, b)  # fmt: skip


def test_folds_are_one_study_with_each_folds_own_conformal_quantile():
    (shipped, nll), folds = _two_folds()
    rep = variance_head_study(shipped, nll, n_resamples=50)
    assert (rep["n_val"], rep["n_test"]) == (400, 400)
    cov = rep["conformal_coverage"]["nll_sigma_total"]
    each = [variance_head_study(*x, n_resamples=10)["conformal_coverage"]["nll_sigma_total"]
            for x in folds]  # fmt: skip
    assert cov["conformal_quantile_per_fold"] == {str(f): e["conformal_quantile"]
                                                  for f, e in enumerate(each)}  # fmt: skip
    # folds of equal size: the pooled coverage is the mean of the folds'
    assert cov["coverage95_test"] == pytest.approx(np.mean([e["coverage95_test"] for e in each]))
    assert "conformal_quantile_per_fold" not in variance_head_study(
        *folds[0], n_resamples=10)["conformal_coverage"]["nll_sigma_total"]  # fmt: skip
    with pytest.raises(ValueError, match="not of the same structures and folds"):
        variance_head_study(shipped, nll.assign(fold=nll.fold[::-1].to_numpy()), n_resamples=10)


def test_refuses_predictions_of_other_structures():
    shipped, nll = _frames()
    with pytest.raises(ValueError, match="val predictions are not of the same structures"):
        variance_head_study(shipped, nll.assign(id=nll.id[::-1].to_numpy()), n_resamples=10)


def test_record_written_with_the_runs_hashes_and_training(tmp_path):
    from tracer.pipeline.record_stages import variance_head_record

    shipped, nll = _frames()
    run = tmp_path / "run"
    (run / "variance_head").mkdir(parents=True)
    prov = {"dataset_sha256": "d" * 64, "split_sha256": "s" * 64}
    (run / "accuracy.json").write_text(json.dumps({"provenance": prov}))
    shipped.to_parquet(run / "gemnet_t.parquet")
    nll.to_parquet(run / "variance_head" / "gemnet_t.parquet")
    member = {"best_epoch": 3, "best_val_mae": 0.07, "epochs_run": 10, "device": "cpu", "seed": 0}
    (run / "variance_head" / "training.json").write_text(
        json.dumps({"wall_time_s": 1.0, "parallel": 1, "members": {"0": member}}))  # fmt: skip
    rep = variance_head_record({"x": 1}, "run", tmp_path, metrics_dir="out", n_resamples=50)
    written = json.loads((tmp_path / "out" / "variance_head.json").read_text())
    assert written["chosen"] == rep["chosen"] and written["unit"] == "eV/atom"
    assert written["training"]["members"]["0"] == {k: member[k] for k in
                                                   ("best_epoch", "best_val_mae", "epochs_run",
                                                    "device")}  # fmt: skip
    assert {k: written["provenance"][k] for k in prov} == prov


def test_tables_for_reading_carry_the_record_and_its_intervals():
    from tracer.analysis.sigma_candidates import variance_head_tables

    rep = variance_head_study(*_frames(), n_resamples=50)
    scores, mae = variance_head_tables(rep)
    assert len(scores) == 8 and list(mae.index) == ["validation", "test"]
    row = scores.loc[("test", "nll_sigma_total")]
    d = rep["minus_paper_sigma"]["test"]["nll_sigma_total"]["auroc_top10"]
    assert row["auroc_top10"] == rep["test"]["nll_sigma_total"]["auroc_top10"]
    expected = "{:+.4f} [{:+.4f}, {:+.4f}]".format(d["diff"], *d["ci95"])
    assert row["auroc - paper σ [95%]"] == expected
    assert pd.isna(scores.loc[("test", "paper_sigma")]["auroc - paper σ [95%]"])
    assert mae.loc["test", "nll"] == rep["mae"]["test"]["nll"]
