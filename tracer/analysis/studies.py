"""Reports of the study runs: the domain module's table across seeds and the transfer study's
errors and learning curve, in eV/atom and eV per cell."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tracer.analysis.accuracy import point_metrics


def test_predictions(out_dir: str | Path, name: str) -> pd.DataFrame:
    """A run's test rows (``y_true``, ``y_pred`` in eV/atom), indexed by id."""
    frame = pd.read_parquet(Path(out_dir) / f"{name}.parquet")
    return frame[frame["set"] == "test"].set_index("id")


def per_atom_and_cell(y: Any, pred: Any, n_atoms: Any) -> dict[str, float]:
    """MAE and RMSE in eV/atom and in eV per cell (× each structure's atom count), and R²."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    n = np.asarray(n_atoms, dtype=float)
    atom, cell = point_metrics(y, pred), point_metrics(y * n, pred * n)
    return {
        "mae_ev_per_atom": atom["mae"],
        "rmse_ev_per_atom": atom["rmse"],
        "mae_ev_per_cell": cell["mae"],
        "rmse_ev_per_cell": cell["rmse"],
        "r2": atom["r2"],
    }


def _across_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std and a 95% Student-t interval of the mean over seeds (None for one)."""

    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return {"mean": float(x.mean()), "std": None, "ci95": None, "n_seeds": int(x.size)}
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    mean = float(x.mean())
    return {
        "mean": mean,
        "std": float(x.std(ddof=1)),
        "ci95": [mean - half, mean + half],
        "n_seeds": int(x.size),
    }


def domain_report(
    out_dir: str | Path,
    *,
    variants: Sequence[str],
    seeds: Sequence[int],
    prefix: str = "domain",
    domain_of: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Per variant: test MAE, RMSE, R² (eV/atom; means over seeds, with ``mae_seeds`` and the
    interval across seeds), parameters, s/epoch and peak memory. With ``domain_of`` (test id →
    domain), the MAE of each domain's test structures as well (``mae_by_domain``)."""
    out = Path(out_dir)
    report: dict[str, Any] = {}
    for mode in variants:
        per_seed, summaries, by_domain = [], [], []
        for seed in seeds:
            name = f"{prefix}_{mode}_seed{seed}"
            test = test_predictions(out, name)
            per_seed.append(point_metrics(test["y_true"].to_numpy(), test["y_pred"].to_numpy()))
            summaries.append(json.loads((out / f"{name}.json").read_text()))
            if domain_of is not None:
                dom = test.index.map(domain_of)
                err = (test["y_pred"] - test["y_true"]).abs()
                by_domain.append({str(d): float(err[dom == d].mean()) for d in sorted(set(dom))})
        maes = [m["mae"] for m in per_seed]
        peaks = [s["peak_mem_gib"] for s in summaries if s["peak_mem_gib"] is not None]
        entry: dict[str, Any] = {
            "mae": float(np.mean(maes)),
            "rmse": float(np.mean([m["rmse"] for m in per_seed])),
            "r2": float(np.mean([m["r2"] for m in per_seed])),
            "mae_seeds": dict(zip(map(str, seeds), maes, strict=True)),
            "mae_across_seeds": _across_seeds(maes),
            "params": int(summaries[0]["num_params"]),
            "s_per_epoch": float(np.median([s["s_per_epoch"] for s in summaries])),
            "peak_mem_gib": max(peaks) if peaks else None,
            "device": summaries[0]["device"],
            "n_train": int(summaries[0]["n_train"]),
            "epochs_run": [int(s["epochs_run"]) for s in summaries],
        }
        if by_domain:
            entry["mae_by_domain"] = {
                d: float(np.mean([b[d] for b in by_domain])) for d in by_domain[0]
            }
        report[mode] = entry
    return report


def learning_curve(
    tests: dict[str, pd.DataFrame],
    full_member: str,
    n_all: int,
    scores: Callable[[pd.Series, pd.Series], dict[str, float]],
) -> list[dict[str, float]]:
    """Test MAE (eV/atom and eV/cell) from pre-trained weights and from scratch for each
    learning-curve size (runs ``finetune_n<n>``/``scratch_n<n>`` among ``tests``, the test rows
    by run name) and for all ``n_all`` training structures (``full_member`` and
    ``scratch_all``); ``scores(y_true, y_pred)`` as :func:`per_atom_and_cell` gives them."""
    y = tests[full_member]["y_true"]
    sizes = sorted({int(n.split("_n")[1]) for n in tests if n.startswith("scratch_n")})
    curve = []
    for n in [*sizes, n_all]:
        pre = tests[f"finetune_n{n}" if n != n_all else full_member]
        scratch = tests[f"scratch_n{n}" if n != n_all else "scratch_all"]
        a, b = scores(y, pre["y_pred"]), scores(y, scratch["y_pred"])
        curve.append(
            {
                "n_train": n,
                "pretrained_mae_ev_per_atom": a["mae_ev_per_atom"],
                "scratch_mae_ev_per_atom": b["mae_ev_per_atom"],
                "pretrained_mae_ev_per_cell": a["mae_ev_per_cell"],
                "scratch_mae_ev_per_cell": b["mae_ev_per_cell"],
            }
        )
    return curve


def transfer_report(
    out_dir: str | Path, runs: Sequence[Any], atoms_per_structure: dict[str, int]
) -> dict[str, Any]:
    """Test errors of the fine-tuned ensemble (mean of the ``finetune_all_*`` members), of one
    fine-tuned member on average, of the model trained from scratch, and the learning curve
    (``n_train`` → test MAE from pre-trained weights and from scratch), in eV/atom and in eV
    per cell (× the structure's atom count). ``runs``: the study's
    :class:`tracer.pipeline.studies.Run` list (their ``name`` and ``split`` are read)."""
    out = Path(out_dir)

    def scores(y: pd.Series, pred: pd.Series) -> dict[str, float]:
        return per_atom_and_cell(y, pred, y.index.map(atoms_per_structure))

    names = {r.name for r in runs}
    tests = {name: test_predictions(out, name) for name in sorted(names)}
    members = sorted(n for n in names if n.startswith("finetune_all_member"))
    y = tests[members[0]]["y_true"]
    stacked = pd.concat([tests[m]["y_pred"].rename(m) for m in members], axis=1)
    fine = scores(y, stacked.mean(axis=1))
    fine["n_members"] = len(members)
    fine["std_mean_ev_per_atom"] = float(stacked.std(axis=1, ddof=0).mean())
    singles = [scores(y, stacked[m]) for m in members]
    fine["single_mae_ev_per_atom"] = float(np.mean([s["mae_ev_per_atom"] for s in singles]))
    fine["single_mae_ev_per_cell"] = float(np.mean([s["mae_ev_per_cell"] for s in singles]))
    n_all = len(next(r for r in runs if r.name == "scratch_all").split["train"])
    curve = learning_curve(tests, members[0], n_all, scores)
    summaries = {n: json.loads((out / f"{n}.json").read_text()) for n in names}
    return {
        "fine_tuned": fine,
        "scratch": scores(y, tests["scratch_all"]["y_pred"]),
        "learning_curve": curve,
        "n_train": n_all,
        "n_test": len(y),
        "device": summaries[members[0]]["device"],
        "train_time_s": {n: s["train_time_s"] for n, s in sorted(summaries.items())},
    }
