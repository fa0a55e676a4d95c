"""Scoring the transfer cross-validation on CMR's folds from its prediction files: zero-shot and
its baselines, fine-tuned and scratch runs per fold with paired bootstraps, the learning curves,
ALIGNN as the peer, and matbench's record (eV per cell)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.analysis.cross_validation import paired_bootstrap
from tracer.analysis.studies import per_atom_and_cell, test_predictions
from tracer.analysis.uncertainty import conformal_quantile, interval_coverage

MATBENCH_PUBLISHED_EV_PER_CELL = {"coGN": 0.0269, "ALIGNN": 0.0288, "paper (GemNet-T)": 0.104}


# --------------------------------------------------------------------------------------------
# the report, from the prediction files alone
# --------------------------------------------------------------------------------------------
def _preds(fold_dir: Path, name: str, ids: Sequence[str], part: str = "test") -> np.ndarray:
    frame = pd.read_parquet(fold_dir / f"{name}.parquet")
    frame = frame[frame["set"] == part].set_index("id")
    return frame.loc[list(ids), "y_pred"].to_numpy(float)


def _mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(p))))


def _interval(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n_folds": int(v.size)}  # fmt: skip


def fold_report(
    fold: dict[str, Any], fold_dir: str | Path, zero: pd.DataFrame, *, confidence: float = 0.95
) -> dict[str, Any]:
    """One fold's errors (eV per cell and eV/atom), σ before and after fine-tuning and the
    coverage of the recalibrated (split-conformal on the fold's inner validation) interval."""

    d = Path(fold_dir)
    test, val, train = list(fold["test"]), list(fold["val"]), list(fold["train"])
    z = zero.set_index("id")
    n_atoms = z.loc[test, "n_atoms"].to_numpy(float)
    y = z.loc[test, "y_true"].to_numpy(float)
    members = sorted(p.stem for p in d.glob("finetune_all_member*.parquet"))
    if not members or not (d / "scratch_all.parquet").exists():
        raise FileNotFoundError(f"{d}: fine-tuned members or scratch_all missing")
    ft = np.stack([_preds(d, m, test) for m in members])
    ft_val = np.stack([_preds(d, m, val, "val") for m in members])
    y_val = z.loc[val, "y_true"].to_numpy(float)
    scratch = _preds(d, "scratch_all", test)
    scratch_runs = scratch_names(d)
    ens, sd = ft.mean(0), ft.std(0)
    zero_mean, zero_sd = z.loc[test, "mean"].to_numpy(float), z.loc[test, "std"].to_numpy(float)
    # baselines a transfer result must beat: the training mean, and zero-shot plus one offset
    train_mean = float(z.loc[train, "y_true"].mean())
    offset = float(np.median(z.loc[train, "y_true"] - z.loc[train, "mean"]))
    q = conformal_quantile(ft_val.mean(0), ft_val.std(0), y_val, confidence)
    per_cell = {
        "zero_shot": _mae(y * n_atoms, zero_mean * n_atoms),
        "zero_shot_plus_offset": _mae(y * n_atoms, (zero_mean + offset) * n_atoms),
        "train_mean": _mae(y * n_atoms, np.full_like(y, train_mean) * n_atoms),
        "fine_tuned_ensemble": _mae(y * n_atoms, ens * n_atoms),
        "fine_tuned_member0": _mae(y * n_atoms, ft[0] * n_atoms),
        "fine_tuned_single_mean": float(np.mean([_mae(y * n_atoms, p * n_atoms) for p in ft])),
        "scratch": _mae(y * n_atoms, scratch * n_atoms),
    }
    if len(scratch_runs) > 1:  # an ensemble of scratch models, the like-for-like comparison
        sc = np.stack([_preds(d, m, test) for m in scratch_runs])
        per_cell["scratch_ensemble"] = _mae(y * n_atoms, sc.mean(0) * n_atoms)
        per_cell["scratch_single_mean"] = float(
            np.mean([_mae(y * n_atoms, p * n_atoms) for p in sc])
        )
    return {
        "fold": int(fold["fold"]),
        "n_train": len(train), "n_val": len(val), "n_test": len(test),
        "n_members": len(members),
        "n_scratch": len(scratch_runs),
        "mae_ev_per_cell": per_cell,
        "mae_ev_per_atom": {k: v / float(np.mean(n_atoms)) for k, v in per_cell.items()},
        "offset_ev_per_atom": offset,
        "sigma_ev_per_atom": {"zero_shot_median": float(np.median(zero_sd)),
                              "fine_tuned_median": float(np.median(sd))},
        "coverage": {"confidence": confidence, "raw": interval_coverage(ens, sd, y, confidence),
                     "conformal_q": q, "recalibrated": float(np.mean(np.abs(y - ens) <= q * sd))},
    }  # fmt: skip


def scratch_names(fold_dir: str | Path) -> list[str]:
    """The runs from random weights with test predictions in ``fold_dir``: ``scratch_all``
    (member 0's seed) first, then ``scratch_all_member<k>``."""
    d = Path(fold_dir)
    extra = sorted(p.stem for p in d.glob("scratch_all_member*.parquet"))
    return (["scratch_all"] if (d / "scratch_all.parquet").exists() else []) + extra


def zero_shot_report(fold: dict[str, Any], zero: pd.DataFrame) -> dict[str, Any]:
    """One fold's zero-shot test error (eV per cell) and the two baselines any transfer result
    must beat: the training part's mean target, and zero-shot plus one offset (the median of
    target − zero-shot over the training part; it removes a reference-energy shift)."""
    z = zero.set_index("id")
    test, train = list(fold["test"]), list(fold["train"])
    cells = z.loc[test, "n_atoms"].to_numpy(float)
    y = z.loc[test, "y_true"].to_numpy(float) * cells
    pred = z.loc[test, "mean"].to_numpy(float)
    offset = float(np.median(z.loc[train, "y_true"] - z.loc[train, "mean"]))
    return {
        "fold": int(fold["fold"]),
        "n_test": len(test),
        "mae_ev_per_cell": {
            "zero_shot": _mae(y, pred * cells),
            "zero_shot_plus_offset": _mae(y, (pred + offset) * cells),
            "train_mean": _mae(y, np.full_like(y, float(z.loc[train, "y_true"].mean())) * cells),
        },
        "offset_ev_per_atom": offset,
        "sigma_median_ev_per_atom": float(np.median(z.loc[test, "std"])),
    }


def validation_summary(fold_dir: str | Path, *, cells: float) -> dict[str, Any]:
    """Best inner-validation MAE (eV/atom and eV per cell, × ``cells`` atoms) and epochs of
    each run with a history under ``fold_dir/histories`` — the evidence left by runs whose
    test predictions were not written."""
    out = {}
    for path in sorted(Path(fold_dir, "histories").glob("*.json")):
        history = json.loads(path.read_text())
        best = min(history, key=lambda h: h["val_mae"])
        out[path.stem] = {"epochs": len(history), "best_epoch": int(best["epoch"]),
                          "best_val_mae_ev_per_atom": float(best["val_mae"]),
                          "best_val_mae_ev_per_cell": float(best["val_mae"]) * cells}  # fmt: skip
    return out


def transfer_cv_report(
    folds: dict[str, Any], out_dir: str | Path, *, curve_folds: Sequence[int] = (0,)
) -> dict[str, Any]:
    """Everything the run folder holds, each part with its fold count:

    * ``zero_shot``: every fold (needs only ``zero_shot.parquet``), with the two baselines;
    * ``fine_tuned``: folds whose fine-tuned members and scratch run wrote test predictions —
      per fold (:func:`fold_report`), mean ± std over folds (matbench's figure) and fold-
      stratified paired bootstraps (fine-tuned member 0 − scratch; ensemble − scratch; eV/cell);
    * ``validation``: inner-validation MAE of every run with a history;
    * ``learning_curves``: test MAE from pre-trained weights and from scratch per training size
      on ``curve_folds`` (sizes with both runs' predictions)."""

    out = Path(out_dir)
    zero = pd.read_parquet(out / "zero_shot.parquet")
    z = zero.set_index("id")
    cells = float(zero["n_atoms"].mean())
    zs = [zero_shot_report(f, zero) for f in folds["folds"]]
    report: dict[str, Any] = {
        "zero_shot": {
            "n_folds": len(zs),
            "mae_ev_per_cell": {
                k: _interval([r["mae_ev_per_cell"][k] for r in zs])
                for k in zs[0]["mae_ev_per_cell"]
            },
            "per_fold": zs,
        },
    }
    done = [f for f in folds["folds"]
            if (out / f"fold_{f['fold']}" / "scratch_all.parquet").exists()]  # fmt: skip
    if done:
        reports = [fold_report(f, out / f"fold_{f['fold']}", zero) for f in done]
        ys, a0, ens, scr, scr_ens, strata = [], [], [], [], [], []
        for f in done:
            d, test = out / f"fold_{f['fold']}", list(f["test"])
            n = z.loc[test, "n_atoms"].to_numpy(float)
            members = sorted(p.stem for p in d.glob("finetune_all_member*.parquet"))
            ft = np.stack([_preds(d, m, test) for m in members])
            ys.append(z.loc[test, "y_true"].to_numpy(float) * n)
            a0.append(ft[0] * n)
            ens.append(ft.mean(0) * n)
            scr.append(_preds(d, "scratch_all", test) * n)
            scr_ens.append(np.mean([_preds(d, m, test) for m in scratch_names(d)], axis=0) * n)
            strata.append(np.full(len(test), f["fold"]))
        y, strat = np.concatenate(ys), np.concatenate(strata)
        keys = [k for k in reports[0]["mae_ev_per_cell"]
                if all(k in r["mae_ev_per_cell"] for r in reports)]  # fmt: skip
        paired = {
            "fine_tuned_member0_minus_scratch": paired_bootstrap(
                y, np.concatenate(a0), np.concatenate(scr), strata=strat
            ),
            "fine_tuned_ensemble_minus_scratch": paired_bootstrap(
                y, np.concatenate(ens), np.concatenate(scr), strata=strat
            ),
        }
        n_scratch = {r["n_scratch"] for r in reports}
        n_members = {r["n_members"] for r in reports}
        if len(n_scratch) == 1 and n_scratch == n_members and n_members != {1}:
            # as many scratch models as fine-tuned members in every fold: ensemble vs ensemble
            paired["fine_tuned_ensemble_minus_scratch_ensemble"] = paired_bootstrap(
                y, np.concatenate(ens), np.concatenate(scr_ens), strata=strat
            )
        report["fine_tuned"] = {
            "n_folds": len(reports),
            "mae_ev_per_cell": {
                k: _interval([r["mae_ev_per_cell"][k] for r in reports]) for k in keys
            },
            "coverage_recalibrated": _interval([r["coverage"]["recalibrated"] for r in reports]),
            "coverage_raw": _interval([r["coverage"]["raw"] for r in reports]),
            "n_scratch_per_fold": sorted(n_scratch),
            "paired_ev_per_cell": paired,
            "per_fold": reports,
        }
    else:
        report["fine_tuned"] = {
            "n_folds": 0,
            "status": "NOT RUN: no fold has the test predictions of its fine-tuned members "
            "and scratch run",
        }
    report["validation"] = {
        str(f["fold"]): validation_summary(out / f"fold_{f['fold']}", cells=cells)
        for f in folds["folds"] if (out / f"fold_{f['fold']}" / "histories").is_dir()
    }  # fmt: skip
    atoms = z["n_atoms"].to_dict()
    curves: dict[str, list[dict[str, float]]] = {}
    for f in curve_folds:
        d = out / f"fold_{f}"
        sizes = sorted(int(p.stem.split("_n")[1]) for p in d.glob("scratch_n*.parquet")
                       if (d / f"finetune_n{p.stem.split('_n')[1]}.parquet").exists())  # fmt: skip
        rows = []
        for n in sizes:
            pre, scratch = (
                test_predictions(d, f"finetune_n{n}"),
                test_predictions(d, f"scratch_n{n}"),
            )
            yt = pre["y_true"]
            a = per_atom_and_cell(yt, pre["y_pred"], yt.index.map(atoms))
            b = per_atom_and_cell(yt, scratch.loc[yt.index, "y_pred"], yt.index.map(atoms))
            n_at = yt.index.map(atoms).to_numpy(float)
            diff = paired_bootstrap(yt * n_at, pre["y_pred"] * n_at,
                                    scratch.loc[yt.index, "y_pred"] * n_at)  # fmt: skip
            rows.append({"n_train": n, "n_test": len(yt),
                         "pretrained_mae_ev_per_cell": a["mae_ev_per_cell"],
                         "scratch_mae_ev_per_cell": b["mae_ev_per_cell"],
                         "pretrained_minus_scratch_ev_per_cell": diff["mae"]})  # fmt: skip
        if rows:
            curves[str(f)] = rows
    report["learning_curves"] = curves
    report["published_ev_per_cell"] = MATBENCH_PUBLISHED_EV_PER_CELL
    return report


def alignn_peer(
    folds: dict[str, Any], run_dir: str | Path, alignn_dir: str | Path, *, recipe: str = "authors"
) -> dict[str, Any]:
    """ALIGNN trained from scratch on the folds that have its predictions
    (``alignn_dir/fold_<f>/alignn_<recipe>.{parquet,json}``), beside GemNet-T from scratch on
    the same test cells (``run_dir/fold_<f>/``): per-fold test MAE in eV per cell (eV/atom
    × the cell's atoms), the epochs ALIGNN ran of its recipe's, and fold-stratified paired
    bootstraps of ALIGNN − one GemNet-T scratch model and ALIGNN − the scratch ensemble."""
    run_dir, alignn_dir = Path(run_dir), Path(alignn_dir)
    atoms = pd.read_parquet(run_dir / "zero_shot.parquet").set_index("id")["n_atoms"]
    rows, ys, al, scr, scr_ens, strata = [], [], [], [], [], []
    for f in folds["folds"]:
        path = alignn_dir / f"fold_{f['fold']}" / f"alignn_{recipe}.parquet"
        if not path.exists():
            continue
        test, d = list(f["test"]), run_dir / f"fold_{f['fold']}"
        frame = pd.read_parquet(path)
        frame = frame[frame["set"] == "test"].set_index("id")
        if sorted(frame.index) != sorted(test):
            raise ValueError(f"{path}: its test cells are not fold {f['fold']}'s")
        n = atoms.loc[test].to_numpy(float)
        y = frame.loc[test, "y_true"].to_numpy(float) * n
        pred = frame.loc[test, "y_pred"].to_numpy(float) * n
        one = _preds(d, "scratch_all", test) * n
        ens = np.mean([_preds(d, m, test) for m in scratch_names(d)], axis=0) * n
        summary = json.loads(path.with_suffix(".json").read_text())
        rows.append({"fold": f["fold"], "n_test": len(test), "mae_ev_per_cell": _mae(y, pred),
                     "gemnet_t_scratch_mae_ev_per_cell": _mae(y, one),
                     "gemnet_t_scratch_ensemble_mae_ev_per_cell": _mae(y, ens),
                     "epochs_run": summary["epochs_run"],
                     "recipe_epochs": summary["recipe"]["epochs"],
                     "best_epoch": summary["best_epoch"],
                     "train_time_s": summary["train_time_s"]})  # fmt: skip
        ys.append(y), al.append(pred), scr.append(one), scr_ens.append(ens)
        strata.append(np.full(len(test), f["fold"]))
    if not rows:
        return {"status": "NOT RUN: ALIGNN was not trained on these folds"}
    y, strat = np.concatenate(ys), np.concatenate(strata)
    a = np.concatenate(al)
    return {
        "recipe": recipe,
        "n_folds": len(rows),
        "n": int(y.size),
        "epochs_run": sorted({r["epochs_run"] for r in rows}),
        "mae_ev_per_cell": _interval([r["mae_ev_per_cell"] for r in rows]),
        "paired_ev_per_cell": {
            "alignn_minus_gemnet_t_scratch": paired_bootstrap(
                y, a, np.concatenate(scr), strata=strat
            ),
            "alignn_minus_gemnet_t_scratch_ensemble": paired_bootstrap(
                y, a, np.concatenate(scr_ens), strata=strat
            ),
        },
        "per_fold": rows,
    }


def matbench_record(report: dict[str, Any], folds: dict[str, Any]) -> dict[str, Any]:
    """The ``perovskites_matbench.json`` record of the metrics contract (``docs/METRICS.md``)
    from :func:`transfer_cv_report`: ``n``, ``n_folds``, ``random_state``,
    ``models.<name>.{mae_ev_per_cell, per_fold_mae_ev_per_cell}`` (mean over the folds run; a
    model without test predictions carries ``status`` NOT RUN instead), ``learning_curve``
    (fold 0); the full report under ``detail``. ``gemnet_t_scratch`` is the one scratch model
    with member 0's seed, ``gemnet_t_scratch_ensemble`` the mean of as many scratch models as
    fine-tuned members."""

    def model(part: dict[str, Any], key: str) -> dict[str, Any]:
        if not part.get("n_folds"):
            return {"status": part.get("status", "NOT RUN")}
        if not all(key in r["mae_ev_per_cell"] for r in part["per_fold"]):
            return {"status": f"NOT RUN: {key} is missing from some folds"}
        per_fold = [r["mae_ev_per_cell"][key] for r in part["per_fold"]]
        return {"mae_ev_per_cell": float(np.mean(per_fold)),
                "per_fold_mae_ev_per_cell": per_fold, "n_folds": len(per_fold)}  # fmt: skip

    def alignn_model(part: dict[str, Any] | None) -> dict[str, Any]:
        if part is None:
            return {"status": "NOT RUN: ALIGNN was not trained on these folds"}
        if "status" in part:
            return {"status": part["status"]}
        epochs = ", ".join(map(str, part["epochs_run"]))
        return {"mae_ev_per_cell": part["mae_ev_per_cell"]["mean"],
                "per_fold_mae_ev_per_cell": [r["mae_ev_per_cell"] for r in part["per_fold"]],
                "n_folds": part["n_folds"],
                "note": f"{part['recipe']} recipe from scratch, {epochs} epochs of its "
                        f"{part['per_fold'][0]['recipe_epochs']} (one device call per two "
                        "folds); folds without it: NOT RUN"}  # fmt: skip

    ft = report["fine_tuned"]
    return {
        "n": sum(len(f["test"]) for f in folds["folds"]),
        "n_folds": len(folds["folds"]),
        "random_state": folds.get("seed"),
        "models": {
            "zero_shot": model(report["zero_shot"], "zero_shot"),
            "zero_shot_plus_offset": model(report["zero_shot"], "zero_shot_plus_offset"),
            "train_mean": model(report["zero_shot"], "train_mean"),
            "fine_tuned_ensemble": model(ft, "fine_tuned_ensemble"),
            "gemnet_t_scratch": model(ft, "scratch"),
            "gemnet_t_scratch_ensemble": model(ft, "scratch_ensemble"),
            "alignn_scratch": alignn_model(report.get("alignn_scratch")),
        },
        "learning_curve": report["learning_curves"].get("0", []),
        "published_ev_per_cell": report["published_ev_per_cell"],
        "detail": report,
    }
