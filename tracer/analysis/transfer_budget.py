"""Whether a longer fine-tuning budget pays on the CMR folds, decided on validation.

At the transfer study's budget every run's best epoch was its last, so a longer budget is the
first thing to try. :func:`budget_report` compares runs of one name (fine-tuned member 0,
``finetune_all_member0``; one model from scratch, ``scratch_all``) trained at the base budget
and at a longer one on the same folds, seeds and settings, and measures the run-to-run spread
from a second training of the base runs (same seed and settings, another GPU of the same kind:
what GPU non-determinism alone moves).

The rule, fixed before the longer runs were scored (:data:`RULE`): the longer budget is adopted
only if, for every run name, its validation MAE (eV/atom, mean over the folds it ran) is below
the base budget's on those folds by more than the run-to-run spread — the largest absolute
difference in validation MAE between the two trainings of one base run. Test errors (eV per
cell) are reported beside it with fold-stratified paired bootstraps; they do not decide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.analysis.cross_validation import paired_bootstrap

RUNS = ("finetune_all_member0", "scratch_all")
RULE = (
    "longer budget adopted only if, for every run name, its mean validation MAE over the folds "
    "it ran is below the base budget's by more than the run-to-run spread (largest |difference| "
    "in validation MAE between two trainings of one base run); test MAEs do not decide"
)


def _run(fold_dir: Path, name: str, test: Sequence[str], per_cell: np.ndarray) -> dict[str, Any]:
    summary = json.loads((fold_dir / f"{name}.json").read_text())
    frame = pd.read_parquet(fold_dir / f"{name}.parquet")
    frame = frame[frame["set"] == "test"].set_index("id").loc[list(test)]
    return {"val": float(summary["best_val_mae"]), "epochs": int(summary["epochs_run"]),
            "best_epoch": int(summary["best_epoch"]),
            "pred": frame["y_pred"].to_numpy(float) * per_cell,
            "y": frame["y_true"].to_numpy(float) * per_cell}  # fmt: skip


def budget_report(
    folds: dict[str, Any],
    base_dir: str | Path,
    longer_dir: str | Path,
    rerun_dir: str | Path,
    *,
    runs: Sequence[str] = RUNS,
) -> dict[str, Any]:
    """The budget comparison on the folds present in ``longer_dir`` (``fold_<k>/<run>.json`` and
    ``.parquet`` as ``tracer train-transfer-cv`` writes them; ``base_dir`` also holds
    ``zero_shot.parquet``, whose ``n_atoms`` turn eV/atom into eV per cell). ``rerun_dir``: the
    base runs trained a second time. Differences are longer − base (negative: longer is better)."""

    base_dir, longer_dir, rerun_dir = Path(base_dir), Path(longer_dir), Path(rerun_dir)
    per_atoms = pd.read_parquet(base_dir / "zero_shot.parquet").set_index("id")["n_atoms"]
    ran = sorted(int(p.name.split("_")[1]) for p in longer_dir.glob("fold_*")
                 if all((p / f"{n}.json").exists() for n in runs))  # fmt: skip
    if not ran:
        raise FileNotFoundError(f"{longer_dir}: no fold with every run of {list(runs)}")
    out: dict[str, Any] = {"rule": RULE, "folds": ran, "runs": {}}
    spread: list[float] = []
    for name in runs:
        rows = {"base": [], "longer": [], "rerun": []}
        for k in ran:
            test = list(folds["folds"][k]["test"])
            cells = per_atoms.loc[test].to_numpy(float)
            for budget, d in (("base", base_dir), ("longer", longer_dir), ("rerun", rerun_dir)):
                rows[budget].append(_run(d / f"fold_{k}", name, test, cells) | {"fold": k})
        strata = np.concatenate([np.full(len(r["y"]), r["fold"]) for r in rows["base"]])
        y = np.concatenate([r["y"] for r in rows["base"]])

        def pred(budget: str, rows: dict[str, list[dict[str, Any]]] = rows) -> np.ndarray:
            return np.concatenate([r["pred"] for r in rows[budget]])

        def per_fold(key: str, budget: str, rows: dict[str, list[Any]] = rows) -> list[Any]:
            return [r[key] for r in rows[budget]]

        def test_mae(budget: str, rows: dict[str, list[Any]] = rows) -> list[float]:
            return [float(np.mean(np.abs(r["pred"] - r["y"]))) for r in rows[budget]]

        spread += [abs(a - b) for a, b in zip(per_fold("val", "rerun"), per_fold("val", "base"),
                                              strict=True)]  # fmt: skip
        out["runs"][name] = {
            "epochs": {b: sorted(set(per_fold("epochs", b))) for b in rows},
            "best_epoch": {b: per_fold("best_epoch", b) for b in rows},
            "val_mae_ev_per_atom": {b: per_fold("val", b) for b in rows},
            "test_mae_ev_per_cell": {b: test_mae(b) for b in rows}
            | {f"mean_{b}": float(np.mean(test_mae(b))) for b in rows},
            "paired_ev_per_cell": {
                f"{b}_minus_base": paired_bootstrap(y, pred(b), pred("base"), strata=strata)
                for b in ("longer", "rerun")
            },
        }
    run_to_run = max(spread)
    gains = {name: float(np.mean(r["val_mae_ev_per_atom"]["longer"])
                         - np.mean(r["val_mae_ev_per_atom"]["base"]))
             for name, r in out["runs"].items()}  # fmt: skip
    adopt = all(g < -run_to_run for g in gains.values())
    out["decision"] = {
        "val_mae_longer_minus_base_ev_per_atom": gains,
        "run_to_run_val_mae_ev_per_atom": run_to_run,
        "adopt_longer": adopt,
        "reading": ("the longer budget lowers every run's validation MAE by more than the "
                    "run-to-run spread" if adopt else
                    "the longer budget does not lower every run's validation MAE by more than "
                    "the run-to-run spread"),
    }  # fmt: skip
    return out
