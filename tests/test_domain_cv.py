"""The applicability domain pooled over folds: shares with exact intervals, the MAE ratio, the
shifted kinds, the declared verdicts (each able to fail), and records that do not fit their
predictions refused."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from tracer.analysis.domain_cv import domain_cv_tables, pooled_domain, proportion
from tracer.pipeline.cv_records import DOMAIN, cv_domain, record_cv_domain

KINDS = ("strained", "rattled")


def _fold(fold, n, n_flagged, *, detection=0.95, val_detection=None, seed=0):
    """A fold's predictions (``n`` test and 10 validation rows) and its ood.json-like record
    (400 validation structures: a fit is accepted from 93% detection on validation): the first
    ``n_flagged`` test structures flagged, with errors ten times the others'."""
    val_detection = detection if val_detection is None else val_detection
    rng = np.random.default_rng([seed, fold])
    ids = [f"f{fold}-{k}" for k in range(n)]
    y = rng.normal(size=n)
    err = rng.uniform(0.01, 0.1, n)
    err[:n_flagged] *= 10
    test = pd.DataFrame({"id": ids, "set": "test", "fold": fold, "y_true": y, "mean": y + err})
    val = pd.DataFrame({"id": [f"v{fold}-{k}" for k in range(10)], "set": "val", "fold": fold,
                        "y_true": 0.0, "mean": 0.0})  # fmt: skip
    mae_flagged = float(err[:n_flagged].mean()) if n_flagged else float("nan")
    record = {
        "n_train": 100, "n_val": 400, "n_test": n,
        "flagged_fraction_val": 0.03, "flagged_fraction_test": n_flagged / n,
        "mae_flagged": mae_flagged, "mae_unflagged": float(err[n_flagged:].mean()),
        "mae_ratio": mae_flagged / float(err[n_flagged:].mean()),
        "representation_quantile": 0.99, "strain_quantile": 0.01, "range_quantile": 0.001,
        "checks_fired_test": {"strain": n_flagged},
        "flagged_test": [{"id": ids[k], "abs_error": float(err[k]), "reasons": ["strain"]}
                         for k in range(n_flagged)],
        "shift_detection": {kind: {"what": kind, "n": n, "flagged_fraction": detection,
                                   "flagged_fraction_val": val_detection}
                            for kind in KINDS},
    }  # fmt: skip
    return record, pd.concat([val, test], ignore_index=True)


def test_proportion_is_clopper_pearson():
    rep = proportion(22, 395)
    alpha = 0.05
    assert rep["fraction"] == pytest.approx(22 / 395)
    assert rep["ci95"][0] == pytest.approx(beta.ppf(alpha / 2, 22, 395 - 22 + 1))
    assert rep["ci95"][1] == pytest.approx(beta.ppf(1 - alpha / 2, 22 + 1, 395 - 22))
    assert proportion(0, 10)["ci95"][0] == 0.0
    with pytest.raises(ValueError, match="k=11, n=10"):
        proportion(11, 10)


def test_pooled_share_ratio_and_shifts():
    folds = [_fold(0, 400, 12), _fold(1, 300, 9, detection=0.85)]
    rep = pooled_domain(folds, n_resamples=200)
    assert rep["n"] == 700 and rep["flagged"]["k"] == 21
    assert rep["flagged"]["fraction"] == pytest.approx(0.03)
    err = np.concatenate([(r["mean"] - r["y_true"]).abs()[r["set"] == "test"] for _, r in folds])
    flagged = np.r_[np.arange(400) < 12, np.arange(300) < 9]
    assert rep["mae_ratio"] == pytest.approx(err[flagged].mean() / err[~flagged].mean())
    lo, hi = rep["mae_ratio_ci95"]
    assert lo < rep["mae_ratio"] < hi
    # detection pooled by counts: (0.95 * 400 + 0.85 * 300) / 700
    assert rep["shift_detection"]["strained"]["fraction"] == pytest.approx(635 / 700)
    assert rep["shift_detection"]["strained"]["per_fold"] == [0.95, 0.85]
    assert rep["checks_fired_test"] == {"strain": 21}
    assert [p["worst_detection"] for p in rep["per_fold"]] == [0.95, 0.85]
    v = rep["verdicts"]
    assert v["flagged_met"] and v["mae_ratio_met"] and v["shifts_met"]
    assert v["flagged_met_with_margin"] == (rep["flagged"]["ci95"][1] <= 0.05)


def test_each_verdict_can_fail():
    many = pooled_domain([_fold(0, 400, 30), _fold(1, 400, 20)], n_resamples=50)
    assert not many["verdicts"]["flagged_met"]  # 50 of 800 = 6.25%
    few = pooled_domain([_fold(0, 2000, 40), _fold(1, 2000, 40)], n_resamples=50)
    assert few["verdicts"]["flagged_met_with_margin"]  # 2% of 4,000: the upper end under 5%
    missed = pooled_domain([_fold(0, 400, 12, detection=0.8), _fold(1, 400, 12)], n_resamples=50)
    assert not missed["verdicts"]["shifts_met"]  # 0.875 pooled
    flat = _fold(0, 400, 12)
    rows = flat[1].copy()
    rows.loc[rows["set"] == "test", "mean"] = rows["y_true"] + 0.05  # flagged no worse
    flat[0]["flagged_test"] = [dict(r, abs_error=0.05) for r in flat[0]["flagged_test"]]
    assert not pooled_domain([(flat[0], rows)], n_resamples=50)["verdicts"]["mae_ratio_met"]


def test_the_refusal_rule_is_judged_on_the_accepted_folds_only():
    refused, kept = _fold(0, 400, 12, detection=0.8), _fold(1, 400, 12, detection=0.95)
    rep = pooled_domain([refused, kept], n_resamples=50)
    assert [p["accepted"] for p in rep["per_fold"]] == [False, True]
    assert rep["accepted_folds"] == [1] and rep["accepted"]["n"] == 400
    assert [p["fold"] for p in rep["accepted"]["per_fold"]] == [1]  # the fold keeps its number
    assert rep["accepted"]["shift_detection"]["strained"]["fraction"] == pytest.approx(0.95)
    assert not rep["verdicts"]["shifts_met"] and rep["verdicts"]["refusal_rule"] == "holds"
    # accepted on validation (95%), under the goal on test (85%): the rule fails
    optimistic = _fold(1, 400, 12, detection=0.85, val_detection=0.95)
    assert pooled_domain([refused, optimistic],
                         n_resamples=50)["verdicts"]["refusal_rule"] == "fails"  # fmt: skip
    none = pooled_domain([refused, _fold(1, 400, 12, detection=0.92)], n_resamples=50)
    assert none["accepted_folds"] == [] and none["accepted"] is None
    assert none["verdicts"]["refusal_rule"] == "no fold accepted"
    _, per_fold = domain_cv_tables(rep["accepted"])
    assert list(per_fold.index) == [1] and per_fold.loc[1, "accepted"]


def _split(record_and_rows):
    record, rows = record_and_rows
    return {**record, "design": "split-tails", "strain_low_quantile": 0.005}, rows


def test_a_search_design_is_sharper_only_with_three_accepted_folds_and_the_rule_holding():
    good = [_split(_fold(f, 400, 12, detection=0.95)) for f in range(3)]
    weak = [_split(_fold(f, 400, 12, detection=0.8)) for f in (3, 4)]
    rep = pooled_domain(good + weak, n_resamples=50)
    assert rep["design"] == "split-tails" and rep["verdicts"]["design_sharper"]
    assert rep["per_fold"][0]["chosen"]["strain_low_quantile"] == 0.005
    two = pooled_domain(good[:2] + weak, n_resamples=50)  # two accepted of four: not enough
    assert two["verdicts"]["refusal_rule"] == "holds" and not two["verdicts"]["design_sharper"]
    optimistic = [_split(_fold(f, 400, 12, detection=0.85, val_detection=0.95))
                  for f in range(3)]  # fmt: skip
    failing = pooled_domain(optimistic + weak, n_resamples=50)
    assert failing["verdicts"]["refusal_rule"] == "fails"
    assert not failing["verdicts"]["design_sharper"]
    tied = pooled_domain([_fold(f, 400, 12) for f in range(3)], n_resamples=50)
    assert tied["design"] == "tied" and "design_sharper" not in tied["verdicts"]
    assert tied["per_fold"][0]["chosen"]["strain_low_quantile"] is None


def _budget(record_and_rows, budget=0.035):
    record, rows = _split(record_and_rows)
    return {**record, "max_val_flagged": budget}, rows


def test_a_smaller_budget_holds_only_with_the_flagged_share_met_as_well():
    good = [_budget(_fold(f, 400, 12)) for f in range(3)]  # 3% flagged, detection 95%
    rep = pooled_domain(good, n_resamples=50)
    assert rep["max_val_flagged"] == 0.035 and rep["verdicts"]["budget_holds"]
    assert rep["per_fold"][0]["max_val_flagged"] == 0.035
    too_many = pooled_domain([_budget(_fold(f, 400, 24)) for f in range(3)], n_resamples=50)
    assert too_many["verdicts"]["design_sharper"]  # accepted, rule holds ...
    assert not too_many["verdicts"]["budget_holds"]  # ... but 6% flagged
    weak = [_budget(_fold(f, 400, 12, detection=0.8)) for f in range(3, 5)]
    assert not pooled_domain(good[:2] + weak, n_resamples=50)["verdicts"]["budget_holds"]
    default = pooled_domain([_split(_fold(f, 400, 12)) for f in range(3)], n_resamples=50)
    assert default["max_val_flagged"] == 0.04 and "budget_holds" not in default["verdicts"]


def test_records_that_do_not_fit_their_predictions_are_refused():
    rec, rows = _fold(0, 100, 5)
    with pytest.raises(ValueError, match=r"fold 0: ood\.json has 99 test structures"):
        pooled_domain([(dict(rec, n_test=99), rows)])
    stranger = dict(rec, flagged_test=rec["flagged_test"] + [{"id": "elsewhere",
                                                              "abs_error": 0.1}])
    with pytest.raises(ValueError, match="flagged ids not in its test part: \\['elsewhere'\\]"):
        pooled_domain([(stranger, rows)])
    other = dict(rec, flagged_test=[dict(r, abs_error=r["abs_error"] + 0.01)
                                    for r in rec["flagged_test"]])  # fmt: skip
    with pytest.raises(ValueError, match="not the same members"):
        pooled_domain([(other, rows)])
    with pytest.raises(ValueError, match="every structure or none"):
        pooled_domain([_fold(0, 100, 0)])


def test_cv_domain_reads_the_folds_and_names_a_missing_one(tmp_path):
    folds = [_fold(0, 200, 6), _fold(1, 200, 8)]
    for f, (rec, rows) in enumerate(folds):
        d = tmp_path / DOMAIN / f"fold_{f}"
        d.mkdir(parents=True)
        rows.to_parquet(d / "predictions.parquet", index=False)
        if f == 0:
            (d / "ood.json").write_text(json.dumps(rec))
    with pytest.raises(FileNotFoundError, match=r"folds \[1\] have no ood.json"):
        cv_domain(tmp_path, 2)
    (tmp_path / DOMAIN / "fold_1" / "ood.json").write_text(json.dumps(folds[1][0]))
    assert cv_domain(tmp_path, 2, n_resamples=50) == pooled_domain(folds, n_resamples=50)


def test_a_domain_only_run_is_recorded_with_its_own_fold_file(tmp_path):
    folds = [_fold(0, 200, 6), _fold(1, 200, 8, detection=0.8)]
    for f, (rec, rows) in enumerate(folds):
        d = tmp_path / DOMAIN / f"fold_{f}"
        d.mkdir(parents=True)
        rows.to_parquet(d / "predictions.parquet", index=False)
        (d / "ood.json").write_text(json.dumps(rec))
    fold_file = {"k": 2, "dataset_sha256": "data-sha", "cv_sha256": "folds-sha"}
    out = tmp_path / "out"
    out.mkdir()
    rec = record_cv_domain(tmp_path, fold_file, {}, device="NVIDIA H200", n_resamples=50,
                           folds_path="data/splits/other_seed.json", out_dir=out)  # fmt: skip
    written = json.loads((out / "cv_domain.json").read_text())
    assert written["provenance"]["folds"] == "data/splits/other_seed.json"
    assert written["provenance"]["split_sha256"] == "folds-sha"
    assert written["accepted_folds"] == rec["accepted_folds"] == [0]
    assert sorted(p.name for p in out.iterdir()) == ["cv_domain.json"]  # no other record


def test_tables_show_each_measure_against_its_goal():
    rep = pooled_domain([_fold(0, 400, 30), _fold(1, 400, 20, detection=0.8)], n_resamples=50)
    summary, per_fold = domain_cv_tables(rep)
    assert list(summary.index) == ["share of test structures flagged", "MAE flagged / unflagged",
                                   "shifted: strained", "shifted: rattled"]  # fmt: skip
    assert summary.loc["share of test structures flagged", "value"] == round(50 / 800, 3)
    assert not summary.loc["share of test structures flagged", "met"]
    assert summary.loc["shifted: strained", "value"] == 0.875
    assert not summary.loc["shifted: strained", "met"]
    assert summary.loc["MAE flagged / unflagged", "met"]
    assert list(per_fold["test flagged"]) == [0.075, 0.05]
    assert list(per_fold["worst shift detection"]) == [0.95, 0.8]
    assert list(per_fold["worst on validation"]) == [0.95, 0.8]


def test_the_goals_are_recorded_and_match_the_fit_domain_warning():
    from tracer.analysis import domain_cv
    from tracer.inference.domain_study import MIN_DETECTION

    assert domain_cv.MIN_DETECTION == MIN_DETECTION
    rep = pooled_domain([_fold(0, 400, 12)], n_resamples=50, min_detection=0.96)
    assert rep["verdicts"]["min_detection"] == 0.96 and not rep["verdicts"]["shifts_met"]
    summary, _ = domain_cv_tables(rep)
    assert summary.loc["shifted: strained", "goal"] == ">= 96%"
