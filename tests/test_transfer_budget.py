"""The budget comparison on planted fold folders: decided on validation against the run-to-run
spread, test errors per cell paired per fold."""

import json

import numpy as np
import pandas as pd
import pytest

from tracer.analysis.transfer_budget import RUNS, budget_report

IDS = [f"c{i}" for i in range(8)]
FOLDS = {"folds": [{"fold": 0, "test": IDS[:4]}, {"fold": 1, "test": IDS[4:]}]}
Y = np.linspace(-1.0, 0.4, 8)  # eV/atom


def _write(root, val, test_err, folds=(0, 1)):
    for k in folds:
        d = root / f"fold_{k}"
        d.mkdir(parents=True, exist_ok=True)
        for name in RUNS:
            (d / f"{name}.json").write_text(json.dumps(
                {"best_val_mae": val[name][k], "epochs_run": 40, "best_epoch": 39}))
            ids = FOLDS["folds"][k]["test"]
            y = Y[[IDS.index(i) for i in ids]]
            pd.DataFrame({"id": ids, "set": "test", "y_true": y,
                          "y_pred": y + test_err}).to_parquet(d / f"{name}.parquet")


def _report(tmp_path, longer_val, rerun_val=None):
    base_val = {n: [0.0070, 0.0072] for n in RUNS}
    _write(tmp_path / "base", base_val, 0.010)
    pd.DataFrame({"id": IDS, "n_atoms": 5}).to_parquet(tmp_path / "base" / "zero_shot.parquet")
    _write(tmp_path / "longer", {n: longer_val for n in RUNS}, 0.008)
    _write(tmp_path / "rerun", {n: rerun_val or [0.0071, 0.0072] for n in RUNS}, 0.0101)
    return budget_report(FOLDS, tmp_path / "base", tmp_path / "longer", tmp_path / "rerun")


def test_a_validation_gain_beyond_the_run_to_run_spread_is_adopted(tmp_path):
    out = _report(tmp_path, [0.0060, 0.0062])
    d = out["decision"]
    assert d["run_to_run_val_mae_ev_per_atom"] == pytest.approx(1e-4)
    assert d["val_mae_longer_minus_base_ev_per_atom"]["scratch_all"] == pytest.approx(-0.001)
    assert d["adopt_longer"]
    paired = out["runs"]["scratch_all"]["paired_ev_per_cell"]["longer_minus_base"]
    assert paired["mae"]["diff"] == pytest.approx(5 * (0.008 - 0.010))  # eV per cell
    assert paired["n"] == 8 and paired["n_strata"] == 2


def test_a_gain_inside_the_run_to_run_spread_is_not(tmp_path):
    # longer better by 5e-5 on validation, but two trainings of one base run differ by 3e-4:
    # the test error still drops (planted), which must not decide
    out = _report(tmp_path, [0.00695, 0.00715], rerun_val=[0.0073, 0.0072])
    assert not out["decision"]["adopt_longer"]
    assert out["runs"]["scratch_all"]["test_mae_ev_per_cell"]["mean_longer"] == pytest.approx(0.04)
