"""Every analysis on cross-validated, out-of-fold predictions, with paired statistics.

Each structure of the dataset is in exactly one fold's test part, so the folds' test
predictions together are one prediction per structure by models that never saw it
(:func:`out_of_fold`). On them: accuracy with intervals stratified by fold and per-fold spread
(:func:`cv_accuracy`), paired comparisons of models on the same structures
(:func:`paired_bootstrap`), the uncertainty scores with recalibration and conformal quantile fitted
inside each fold on its own validation part (:func:`cv_uncertainty`), and the failure map,
triage at absolute budgets and the chemistry-flag rule on all structures (:func:`cv_reports`).
Energies in eV/atom.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.analysis.accuracy import point_metrics
from tracer.analysis.triage import PAPER_TABLE
from tracer.analysis.uncertainty import (
    error_sigma_correlation,
    top_error_flagging,
    uncertainty_report,
)


def read_folds(folder: str | Path, k: int) -> pd.DataFrame:
    """The prediction files of folds ``0..k-1`` of a cross-validation folder
    (``fold_<f>/predictions.parquet``) in one frame; a missing fold is an error naming it."""
    folder = Path(folder)
    missing = [f for f in range(k) if not (folder / f"fold_{f}" / "predictions.parquet").exists()]
    if missing:
        raise FileNotFoundError(f"{folder}: folds {missing} have no predictions.parquet yet")
    frames = [pd.read_parquet(folder / f"fold_{f}" / "predictions.parquet") for f in range(k)]
    # a file without a fold column (ALIGNN's) takes its folder's
    return pd.concat([x if "fold" in x else x.assign(fold=f) for f, x in enumerate(frames)],
                     ignore_index=True)  # fmt: skip


def out_of_fold(frame: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    """The test rows, one per id of ``ids`` (in that order); an id predicted twice or never is
    an error."""
    test = frame[frame["set"] == "test"]
    counts = test["id"].value_counts()
    twice = counts[counts > 1]
    if len(twice):
        raise ValueError(f"ids in more than one fold's test part: {list(twice.index[:5])}")
    never = sorted(set(ids) - set(test["id"]))
    if never:
        raise ValueError(f"{len(never)} ids in no fold's test part, e.g. {never[:5]}")
    return test.set_index("id").loc[list(ids)].reset_index()


def stratified_indices(strata: Any, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap resamples as rows of indices, ``(n_resamples, n)``: each stratum's positions
    drawn with replacement within that stratum (strata in sorted order, side by side)."""
    strata = np.asarray(strata)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    return np.concatenate([g[rng.integers(0, g.size, size=(n_resamples, g.size))]
                           for g in groups], axis=1)  # fmt: skip


def paired_bootstrap(
    y: Any,
    pred_a: Any,
    pred_b: Any,
    *,
    strata: Any = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """MAE and RMSE of model a minus model b on the same structures, with percentile intervals
    from one resampling of the structures shared by both (within each stratum, e.g. fold, when
    ``strata`` is given), and per stratum whether a's MAE is lower (``wins``).

    Returns ``{"n", "mae": {"diff", "ci95"}, "rmse": {"diff", "ci95"}, "wins", "n_strata"}``
    with ``diff`` = a − b (negative: a is better)."""
    y, a, b = (np.asarray(v, dtype=float).ravel() for v in (y, pred_a, pred_b))
    if not (y.size == a.size == b.size) or y.size == 0:
        raise ValueError("y, pred_a and pred_b must be non-empty and of one length")
    if not (np.isfinite(y).all() and np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("non-finite values")
    strata = np.zeros(y.size, dtype=int) if strata is None else np.asarray(strata)
    ea, eb = a - y, b - y
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    idx = stratified_indices(strata, n_resamples, np.random.default_rng(seed))
    mae = np.abs(ea[idx]).mean(1) - np.abs(eb[idx]).mean(1)
    rmse = np.sqrt((ea[idx] ** 2).mean(1)) - np.sqrt((eb[idx] ** 2).mean(1))
    lo, hi = (1 - confidence) / 2, 1 - (1 - confidence) / 2

    def summary(point: float, boot: np.ndarray) -> dict[str, Any]:
        return {"diff": point, "ci95": [float(np.quantile(boot, lo)), float(np.quantile(boot, hi))]}

    return {
        "n": int(y.size),
        "mae": summary(float(np.abs(ea).mean() - np.abs(eb).mean()), mae),
        "rmse": summary(float(np.sqrt((ea**2).mean()) - np.sqrt((eb**2).mean())), rmse),
        "wins": int(sum(np.abs(ea[g]).mean() < np.abs(eb[g]).mean() for g in groups)),
        "n_strata": len(groups),
    }


def stratified_ci(y: Any, pred: Any, strata: Any, *, n_resamples: int = 2000,
                  seed: int = 0) -> list[float]:  # fmt: skip
    """95% percentile interval of the MAE, resampling structures within each stratum."""
    y, p = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    idx = stratified_indices(np.asarray(strata), n_resamples, np.random.default_rng(seed))
    mae = np.abs(p[idx] - y[idx]).mean(1)
    return [float(np.quantile(mae, 0.025)), float(np.quantile(mae, 0.975))]


def cv_accuracy(
    oof: pd.DataFrame,
    models: Mapping[str, Any],
    pairs: Sequence[tuple[str, str]],
    *,
    n_resamples: int = 2000,
) -> dict[str, Any]:
    """``cv_accuracy.json``: per model (``models``: name → predictions aligned with ``oof``)
    MAE with its fold-stratified interval, RMSE, R², per-fold MAE; then the ``pairs``
    compared by :func:`paired_bootstrap` stratified by fold."""
    y, fold = oof["y_true"].to_numpy(float), oof["fold"].to_numpy()
    folds = np.unique(fold)
    out: dict[str, Any] = {"n": len(oof), "n_folds": len(folds), "models": {}, "paired": []}
    for name, pred in models.items():
        p = np.asarray(pred, dtype=float)
        m = point_metrics(y, p)
        m["mae_ci95"] = stratified_ci(y, p, fold, n_resamples=n_resamples)
        m["per_fold_mae"] = [float(np.abs(p[fold == f] - y[fold == f]).mean()) for f in folds]
        out["models"][name] = m
    for a, b in pairs:
        res = paired_bootstrap(y, models[a], models[b], strata=fold, n_resamples=n_resamples)
        out["paired"].append({"a": a, "b": b, "metric": "mae", "diff": res["mae"]["diff"],
                              "ci95": res["mae"]["ci95"], "fold_wins": res["wins"],
                              "rmse_diff": res["rmse"]["diff"],
                              "rmse_ci95": res["rmse"]["ci95"], "n": res["n"]})  # fmt: skip
    return out


def cv_uncertainty(frame: pd.DataFrame, oof: pd.DataFrame, *, confidence: float = 0.95,
                   sigma_floor: float = 1e-6) -> dict[str, Any]:  # fmt: skip
    """``cv_uncertainty.json``: per fold :func:`tracer.analysis.uncertainty.uncertainty_report`
    (σ-scaling
    and conformal quantile fitted on that fold's validation part, scored on its test part), and
    pooled over all out-of-fold structures: Spearman, AUROC for the worst 10%, and the coverage
    of each fold's intervals on its own test structures."""

    keys = ("spearman", "auroc_top10", "coverage95", "coverage95_recal", "sigma_scale",
            "conformal_quantile", "conformal_coverage95", "miscal_area", "miscal_area_recal",
            "nll", "nll_recal", "n_val", "n_test")  # fmt: skip
    per_fold, raw, scaled, conformal = {}, [], [], []
    for f, part in frame.groupby("fold"):
        val, test = part[part["set"] == "val"], part[part["set"] == "test"]
        args = [(d["mean"].to_numpy(), np.maximum(d["std"].to_numpy(), sigma_floor),
                 d["y_true"].to_numpy()) for d in (val, test)]  # fmt: skip
        rep = uncertainty_report(*args, confidence=confidence, sigma_floor=sigma_floor)
        per_fold[str(f)] = {k: rep[k] for k in keys if k in rep}
        m, s, y = args[1]
        err = np.abs(y - m)
        z = 1.959963984540054
        raw.append(err <= z * s)
        scaled.append(err <= z * rep["sigma_scale"] * s)
        conformal.append(err <= rep["conformal_quantile"] * s)
    err = np.abs(oof["y_true"] - oof["mean"]).to_numpy()
    sigma = oof["std"].to_numpy()
    pooled = {
        **error_sigma_correlation(sigma, err),
        "auroc_top10": top_error_flagging(sigma, err, 0.1)["auroc"],
        "coverage95": float(np.concatenate(raw).mean()),
        "coverage95_recal": float(np.concatenate(scaled).mean()),
        "conformal_coverage95": float(np.concatenate(conformal).mean()),
        "n": len(oof),
    }
    spread = {k: float(np.std([v[k] for v in per_fold.values()], ddof=1))
              for k in ("spearman", "auroc_top10", "conformal_coverage95")}  # fmt: skip
    return {**pooled, "per_fold": per_fold, "per_fold_std": spread,
            "recalibration": "per fold, on that fold's validation part only"}  # fmt: skip


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """A record as indented JSON (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1, default=float, allow_nan=True).replace("NaN", "null")
    path.write_text(text + "\n")
    return path


#: the baselines a cross-validation folder may hold (``<name>/fold_<f>/predictions.parquet``, one
#: model per fold, ``tracer train-cv --model <name>``) and how many settings each recipe was
#: chosen from
BASELINE_SETTINGS = {
    "alignn": "the recipe the seed-42 split chose on validation among three",
    "schnet": "one: torch_geometric's published size (profiles/full.yaml), not tuned here",
    "cgcnn": "one: the CGCNN paper's size (profiles/full.yaml), not tuned here",
}


def baseline_oof(
    run_dir: str | Path, k: int, oof: pd.DataFrame, out_dir: str | Path | None = None
) -> dict[str, pd.Series]:
    """Out-of-fold predictions (eV/atom, rows in ``oof``'s order) of every baseline of
    :data:`BASELINE_SETTINGS` whose fold folder exists under ``run_dir`` (``predictions.parquet``
    with ``mean`` as ``tracer train-cv`` writes it, or with ``y_pred`` as ``tracer train-alignn
    --folds`` writes ``alignn_<recipe>.parquet``, copied under that name); each is written to
    ``oof_<name>.parquet`` (id, fold, set, y_true, y_pred) in ``out_dir`` (default ``run_dir``).
    A baseline with some folds missing is an error naming them, and so are targets that differ
    from ``oof``'s."""
    run_dir = Path(run_dir)
    out_dir = run_dir if out_dir is None else Path(out_dir)
    out: dict[str, pd.Series] = {}
    for name in BASELINE_SETTINGS:
        if not (run_dir / name).is_dir():
            continue
        b = out_of_fold(read_folds(run_dir / name, k), list(oof["id"]))
        if not np.allclose(b["y_true"].to_numpy(float), oof["y_true"].to_numpy(float)):
            raise ValueError(f"{run_dir / name}: targets differ from the GemNet-T folds'")
        if "y_pred" not in b:  # a one-member ensemble's file (train-cv) rather than ALIGNN's
            b["y_pred"] = b["mean"]
        b[["id", "fold", "set", "y_true", "y_pred"]].to_parquet(
            out_dir / f"oof_{name}.parquet", index=False
        )
        out[name] = b["y_pred"]
    return out


def run_to_run(runs: Mapping[str, pd.DataFrame], *, column: str = "member_0") -> dict[str, Any]:
    """Retrainings of one member (same seed, data and settings) compared on their test
    predictions (``runs``: name → prediction table with ``id``, ``set``, ``y_true`` and
    ``column``): each run's test MAE, and for every pair the MAE difference and the largest and
    median absolute difference of the predictions (eV/atom)."""
    tests = {k: v[v["set"] == "test"].set_index("id") for k, v in runs.items()}
    names = list(tests)
    ids = tests[names[0]].index
    for k in names[1:]:
        if set(tests[k].index) != set(ids):
            raise ValueError(f"run {k!r} predicts other test ids than {names[0]!r}")
    mae = {k: float((t[column] - t["y_true"]).abs().mean()) for k, t in tests.items()}
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = (tests[a].loc[ids, column] - tests[b].loc[ids, column]).abs()
            pairs.append({"a": a, "b": b, "test_mae_diff": mae[a] - mae[b],
                          "max_abs_prediction_diff": float(d.max()),
                          "median_abs_prediction_diff": float(d.median())})  # fmt: skip
    return {"test_mae": mae, "pairs": pairs, "n_test": len(ids)}


#: the paper's numbers that the cross-validated run can be set beside (its triage table:
#: :data:`tracer.analysis.triage.PAPER_TABLE`)
PAPER = {
    "elemental_mae": (0.139, 68),
    "overall_mae": 0.037,
    "flags": (0.0753, 0.0677, 0.0650),
    "run_to_run": 1e-4,
}


def group_ci(abs_error: Any, mask: Any, *, n_resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the MAE of the structures in ``mask``."""
    err = np.asarray(abs_error, dtype=float)[np.asarray(mask, dtype=bool)]
    idx = np.random.default_rng(seed).integers(0, err.size, size=(n_resamples, err.size))
    boot = err[idx].mean(1)
    return [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]


def paper_vs_cv(run_dir: str | Path, run_to_run_path: str | Path | None = None) -> pd.DataFrame:
    """ "Paper vs this run" for the cross-validated records of ``run_dir``: per claim the paper's
    value, this run's with its interval and n, and a sentence written from the numbers."""
    run_dir = Path(run_dir)

    def read(name: str) -> dict[str, Any]:
        return json.loads((run_dir / f"{name}.json").read_text())

    acc, fail, tri, flags = (read(f"cv_{k}") for k in ("accuracy", "failures", "triage", "flags"))
    oof = pd.read_parquet(run_dir / "oof_gemnet_t.parquet")
    err = (oof["mean"] - oof["y_true"]).abs().to_numpy()
    overall = float(err.mean())
    rows = []
    el = fail["by_chemistry"]["elemental solids"]
    mask = _elemental_mask(oof, fail)
    lo, hi = group_ci(err, mask)
    p_mae, p_n = PAPER["elemental_mae"]
    higher = lo > overall
    rows.append({
        "claim": "elemental solids are predicted worst",
        "paper": f"MAE {p_mae} over {p_n} ({p_mae / PAPER['overall_mae']:.1f}x overall)",
        "this_run": f"MAE {el['mae']:.3f} [{lo:.3f}, {hi:.3f}] over {el['n']}",
        "finding": f"{el['mae'] / overall:.1f}x the overall {overall:.3f}; the interval "
        + ("lies above the overall MAE: the paper's finding holds here"
           if higher else "reaches the overall MAE: not shown here"),
    })  # fmt: skip
    row = next(r for r in tri["rows"] if r["budget"] == 50 and r["threshold"] == 0.1)

    pu, pr, ps = PAPER_TABLE[(50, 0.1)]
    rows.append({
        "claim": "σ-ranked DFT checks beat random (50 checks, |error| > 0.1)",
        "paper": f"{pu:.2f} vs random {pr:.3f} ± {ps:.3f}",
        "this_run": f"{row['uncertainty_yield']:.2f} vs random {row['random_yield_mean']:.3f} "
        f"± {row['random_yield_std']:.3f} (n {tri['n']})",
        "finding": f"{row['margin_in_random_std']:.1f} random standard deviations above random "
        f"(paper: {(pu - pr) / ps:.1f})",
    })  # fmt: skip
    pv, ph, prand = PAPER["flags"]
    worse = flags["hybrid_mean_abs_error"] < flags["variance_only_mean_abs_error"]
    rows.append({
        "claim": "chemistry flags do not improve on σ alone (negative result 1)",
        "paper": f"σ only {pv}, hybrid {ph}, random {prand} (k = 270)",
        "this_run": f"σ only {flags['variance_only_mean_abs_error']:.3f}, hybrid "
        f"{flags['hybrid_mean_abs_error']:.3f}, random {flags['random_mean_abs_error']:.3f} "
        f"(k = {flags['k']})",
        "finding": "the hybrid rule selects easier structures than σ alone: the negative "
        "result holds" if worse else "the hybrid rule selects harder structures: the negative "
        "result does not hold here",
    })  # fmt: skip
    ens, single = acc["models"]["gemnet_t_ensemble"], acc["models"]["gemnet_t_single"]
    pair = next(p for p in acc["paired"] if p["a"] == "gemnet_t_ensemble")
    excludes = pair["ci95"][1] < 0 or pair["ci95"][0] > 0
    rows.append({
        "claim": "headline accuracy from a single model; the ensemble for uncertainty",
        "paper": "single model (their checklist)",
        "this_run": f"ensemble {ens['mae']:.4f} {_ci(ens['mae_ci95'])}, one member "
        f"{single['mae']:.4f} {_ci(single['mae_ci95'])}, n {acc['n']}",
        "finding": f"ensemble − member {pair['diff']:+.4f} {_ci(pair['ci95'])}, "
        f"{pair['fold_wins']} of {acc['n_folds']} folds: "
        + ("the ensemble is more accurate" if excludes else "inside the noise"),
    })  # fmt: skip
    if run_to_run_path is not None and Path(run_to_run_path).exists():
        rtr = json.loads(Path(run_to_run_path).read_text())
        rows.append({
            "claim": "run-to-run variation about 1e-4 eV/atom",
            "paper": f"{PAPER['run_to_run']:.0e}",
            "this_run": f"test MAE differs by {abs(rtr['test_mae_diff']):.1e}; predictions by up "
            f"to {rtr['max_abs_prediction_diff']:.2f}",
            "finding": f"{abs(rtr['test_mae_diff']) / PAPER['run_to_run']:.0f}x the paper's "
            "figure between two retrainings on one card",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _ci(interval: Sequence[float]) -> str:
    return f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _elemental_mask(oof: pd.DataFrame, fail: dict[str, Any]) -> np.ndarray:
    """Structures of one element, from the out-of-fold frame's formulas (checked against the
    failure record's count)."""
    from pymatgen.core import Composition

    if "formula" not in oof:
        raise ValueError("the out-of-fold frame needs a formula column")
    mask = np.array([len(Composition(f).elements) == 1 for f in oof["formula"]])
    if int(mask.sum()) != fail["by_chemistry"]["elemental solids"]["n"]:
        raise ValueError("elemental structures differ from the failure record's count")
    return mask
