"""Scoring a cross-validation folder: the variance-head members' record read from their folds."""

import json

import pytest
from test_sigma_candidates import _two_folds

from tracer.analysis.sigma_candidates import variance_head_study
from tracer.pipeline.cv_records import VARIANCE_HEAD, cv_variance_head


def _write_folds(folder, frame, members):
    for f, part in frame.groupby("fold"):
        (folder / f"fold_{f}").mkdir(parents=True)
        part.to_parquet(folder / f"fold_{f}" / "predictions.parquet", index=False)
        (folder / f"fold_{f}" / "training.json").write_text(json.dumps({"members": members}))


def test_variance_head_record_is_the_study_over_the_folds_with_training(tmp_path):
    (shipped, nll), _ = _two_folds()
    member = {"seed": 0, "best_epoch": 3, "best_val_mae": 0.07, "epochs_run": 10,
              "train_time_s": 1.5, "device": "cpu", "compiled": False}  # fmt: skip
    _write_folds(tmp_path / VARIANCE_HEAD, nll, {"0": member})
    rep = cv_variance_head(tmp_path, shipped, 2, n_resamples=50)
    ref = variance_head_study(shipped, nll, n_resamples=50)
    assert {k: rep[k] for k in ref} == ref
    assert rep["training"] == {f: {"0": {k: member[k] for k in ("best_epoch", "best_val_mae",
                                                              "epochs_run", "train_time_s",
                                                              "device")}}
                               for f in ("0", "1")}  # fmt: skip


def test_a_fold_without_predictions_is_named(tmp_path):
    (shipped, nll), _ = _two_folds()
    _write_folds(tmp_path / VARIANCE_HEAD, nll[nll.fold == 0], {})
    with pytest.raises(FileNotFoundError, match=r"folds \[1\] have no predictions.parquet"):
        cv_variance_head(tmp_path, shipped, 2)
