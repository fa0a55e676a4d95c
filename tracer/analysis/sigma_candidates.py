"""Which σ ranks the errors best: the paper's ensemble spread against the σ of an ensemble whose
members predict their own variance (Gaussian NLL; the σ study of docs/screening.md).

Each candidate σ is scored against the errors of the ensemble it belongs to: the paper's σ (the
shipped ensemble's spread, ``std``) against the shipped ensemble's mean; the variance-head
ensemble's ``sigma_total`` (√(mean variance + spread²)), its spread alone (``std``) and its mean
predicted variance alone (``aleatoric_sigma``) against that ensemble's mean. Scores: Spearman(σ,
|error|), AUROC of σ for the worst ``top`` of the errors, the triage yield (the share of all
errors above ``threshold`` eV/atom caught by the ``fraction`` most uncertain), the MAE (eV/atom)
and the test coverage of a split-conformal 95% interval fitted on validation. The rule
(:data:`RULE`) was fixed before the variance-head members were trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from tracer.analysis.cross_validation import paired_bootstrap
from tracer.analysis.uncertainty import conformal_quantile
from tracer.inference.domain_study import score_sigma

#: name -> (ensemble, column of its σ)
CANDIDATES: dict[str, tuple[str, str]] = {
    "paper_sigma": ("shipped", "std"),
    "nll_sigma_total": ("nll", "sigma_total"),
    "nll_spread": ("nll", "std"),
    "nll_aleatoric": ("nll", "aleatoric_sigma"),
}
BASELINE = "paper_sigma"
RULE = (
    "the candidate with the highest validation AUROC for the worst 10% of its ensemble's errors "
    "is chosen; screening adopts the variance-head ensemble only if that candidate is one of its "
    "σ, beats the paper's σ on validation AUROC, and the variance-head ensemble's validation MAE "
    "is not worse than the shipped ensemble's beyond the noise (the paired bootstrap 95% "
    "interval of the MAE difference does not lie above 0)"
)


def rank_scores(
    abs_err: np.ndarray, score: np.ndarray, *, top: float = 0.1
) -> tuple[float, float]:
    """The Spearman and AUROC of :func:`tracer.inference.domain_study.score_sigma` from average
    ranks alone (Pearson correlation of the ranks; the Mann–Whitney form of the AUROC, ties
    counting one half): the same numbers, fast enough for thousands of resamples."""
    spearman, auroc = _rank_scores_rows(np.asarray(abs_err, dtype=float)[None],
                                        np.asarray(score, dtype=float)[None], top)  # fmt: skip
    return float(spearman[0]), float(auroc[0])


def _rank_scores_rows(abs_err: np.ndarray, score: np.ndarray,
                      top: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`rank_scores` of each row of ``[R, n]`` arrays at once."""
    worst = abs_err >= np.quantile(abs_err, 1 - top, axis=1, keepdims=True)
    rs, re = rankdata(score, axis=1), rankdata(abs_err, axis=1)
    cs, ce = rs - rs.mean(axis=1, keepdims=True), re - re.mean(axis=1, keepdims=True)
    spearman = (cs * ce).sum(axis=1) / np.sqrt((cs**2).sum(axis=1) * (ce**2).sum(axis=1))
    n_pos = worst.sum(axis=1)
    n_neg = worst.shape[1] - n_pos
    auroc = ((rs * worst).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return spearman, auroc


def paired_rank_differences(
    err_a: Any, sigma_a: Any, err_b: Any, sigma_b: Any, *, n_resamples: int = 2000,
    top: float = 0.1, seed: int = 0, chunk: int = 250,
) -> dict[str, Any]:  # fmt: skip
    """Spearman and AUROC (worst ``top``) of candidate a minus candidate b on the same
    structures, with percentile 95% intervals from one resampling of the structures shared by
    both (a resample whose worst-``top`` set is all or none of it is drawn again). The
    resamples are scored ``chunk`` at a time, as rows of one array."""
    arrays = [np.asarray(v, dtype=float) for v in (err_a, sigma_a, err_b, sigma_b)]
    n = arrays[0].size
    if any(a.size != n for a in arrays) or n < 3:
        raise ValueError("errors and σ of both candidates must be of one length, at least 3")
    rng = np.random.default_rng(seed)

    def both(idx: np.ndarray) -> np.ndarray:
        """``[R, 2]``: the Spearman and AUROC differences of each resample (row of ``idx``)."""
        sa = _rank_scores_rows(arrays[0][idx], arrays[1][idx], top)
        sb = _rank_scores_rows(arrays[2][idx], arrays[3][idx], top)
        return np.stack([sa[0] - sb[0], sa[1] - sb[1]], axis=1)

    point = both(np.arange(n)[None])[0]
    drawn = []
    while len(drawn) < n_resamples:
        idx = rng.integers(0, n, n)
        for err in (arrays[0][idx], arrays[2][idx]):
            worst = err >= np.quantile(err, 1 - top)
            if worst.all() or not worst.any():
                break
        else:
            drawn.append(idx)
    values = np.concatenate([both(np.stack(drawn[k:k + chunk]))
                             for k in range(0, n_resamples, chunk)])  # fmt: skip

    def summary(k: int) -> dict[str, Any]:
        lo, hi = np.quantile(values[:, k], [0.025, 0.975])
        return {"diff": float(point[k]), "ci95": [float(lo), float(hi)]}

    return {"n": n, "spearman": summary(0), "auroc_top10": summary(1)}


def _parts(shipped: pd.DataFrame, nll: pd.DataFrame, part: str) -> dict[str, pd.DataFrame]:
    a, b = shipped[shipped["set"] == part], nll[nll["set"] == part]
    keys = ["fold", "id"] if "fold" in a or "fold" in b else ["id"]
    if any(k not in a or k not in b for k in keys) or any(
        list(a[k]) != list(b[k]) for k in keys
    ) or not np.allclose(a["y_true"], b["y_true"]):
        raise ValueError(f"the two ensembles' {part} predictions are not of the same structures"
                         + (" and folds" if len(keys) == 2 else ""))  # fmt: skip
    b = b.assign(aleatoric_sigma=np.sqrt(b["aleatoric_var"]))
    return {"shipped": a.reset_index(drop=True), "nll": b.reset_index(drop=True)}


def _conformal(val: pd.DataFrame, test: pd.DataFrame, col: str) -> dict[str, Any]:
    """Split-conformal 95% intervals of σ column ``col``: the quantile fitted on ``val``, the
    coverage on ``test``; fold by fold when the frames have a ``fold`` column."""
    folds = sorted(set(val["fold"])) if "fold" in val else [None]
    qs, inside = {}, []
    for f in folds:
        v = val if f is None else val[val["fold"] == f]
        t = test if f is None else test[test["fold"] == f]
        qs[f] = conformal_quantile(v["mean"], v[col], v["y_true"])
        inside.append(np.abs(t["y_true"] - t["mean"]).to_numpy() <= qs[f] * t[col].to_numpy())
    out: dict[str, Any] = {"conformal_quantile": float(np.median(list(qs.values()))),
                           "coverage95_test": float(np.concatenate(inside).mean())}  # fmt: skip
    if folds != [None]:
        out["conformal_quantile_per_fold"] = {str(f): q for f, q in qs.items()}
    return out


def variance_head_study(
    shipped: pd.DataFrame, nll: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The σ study's second part (see the module docstring): ``shipped`` and ``nll`` are the two
    ensembles' prediction frames (``id``, ``set``, ``y_true``, ``mean``, ``std``; ``nll`` also
    ``aleatoric_var`` and ``sigma_total``, :func:`tracer.inference.ensemble.predict_members`)
    on the same validation and test structures (eV/atom).

    Frames of a cross-validation (a ``fold`` column in both, rows of the same fold and id in the
    same order) are read as one study over all folds: the rule chooses on every fold's
    validation rows together, the scores are over all out-of-fold test rows, and each fold's
    conformal quantile is fitted on that fold's validation rows and applied to its test rows
    (``conformal_quantile`` is then their median, ``conformal_quantile_per_fold`` each)."""
    val, test = _parts(shipped, nll, "val"), _parts(shipped, nll, "test")

    def err(part: dict[str, pd.DataFrame], ens: str) -> np.ndarray:
        f = part[ens]
        return np.abs(f["mean"] - f["y_true"]).to_numpy()

    def scores(part: dict[str, pd.DataFrame]) -> dict[str, Any]:
        return {name: score_sigma(err(part, ens), part[ens][col])
                for name, (ens, col) in CANDIDATES.items()}  # fmt: skip

    on_val, on_test = scores(val), scores(test)
    chosen = max(CANDIDATES, key=lambda c: (on_val[c]["auroc_top10"], c == BASELINE))
    mae_val, mae_test = (
        paired_bootstrap(part["nll"]["y_true"], part["nll"]["mean"], part["shipped"]["mean"],
                         n_resamples=n_resamples, seed=seed)
        for part in (val, test)
    )  # fmt: skip
    adopted = (
        CANDIDATES[chosen][0] == "nll"
        and on_val[chosen]["auroc_top10"] > on_val[BASELINE]["auroc_top10"]
        and mae_val["mae"]["ci95"][0] <= 0
    )
    base_ens, base_col = CANDIDATES[BASELINE]
    differences: dict[str, dict[str, Any]] = {"validation": {}, "test": {}}
    coverage = {}
    for name, (ens, col) in CANDIDATES.items():
        coverage[name] = _conformal(val[ens], test[ens], col)
        if name == BASELINE:
            continue
        for label, part in (("validation", val), ("test", test)):
            differences[label][name] = paired_rank_differences(
                err(part, ens), part[ens][col], err(part, base_ens), part[base_ens][base_col],
                n_resamples=n_resamples, seed=seed,
            )
    return {
        "unit": "eV/atom",
        "rule": RULE,
        "candidates": {name: {"ensemble": e, "column": c} for name, (e, c) in CANDIDATES.items()},
        "validation": on_val,
        "test": on_test,
        "chosen": chosen,
        "adopted": bool(adopted),
        "mae": {
            "validation": {"shipped": float(err(val, "shipped").mean()),
                           "nll": float(err(val, "nll").mean()),
                           "nll_minus_shipped": mae_val["mae"]},
            "test": {"shipped": float(err(test, "shipped").mean()),
                     "nll": float(err(test, "nll").mean()),
                     "nll_minus_shipped": mae_test["mae"]},
        },
        "minus_paper_sigma": differences,
        "conformal_coverage": coverage,
        "n_val": len(val["nll"]),
        "n_test": len(test["nll"]),
        "n_resamples": n_resamples,
    }


def _with_ci(d: dict[str, Any]) -> str:
    return "{:+.4f} [{:+.4f}, {:+.4f}]".format(d["diff"], *d["ci95"])


def variance_head_tables(report: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tables of a :func:`variance_head_study` record for reading: per (part, candidate)
    the Spearman, AUROC, their differences to the paper's σ with 95% intervals and the triage
    yield at the top 10%; per part the two ensembles' MAE (eV/atom) and their paired
    difference."""
    rows = {}
    for part in ("validation", "test"):
        for name, s in report[part].items():
            d = report["minus_paper_sigma"][part].get(name)
            rows[(part, name)] = {
                "spearman": s["spearman"],
                "auroc_top10": s["auroc_top10"],
                "auroc - paper σ [95%]": None if d is None else _with_ci(d["auroc_top10"]),
                "spearman - paper σ [95%]": None if d is None else _with_ci(d["spearman"]),
                "triage yield 10%": s["triage_yield"]["0.1"],
            }
    mae = {part: {"shipped": m["shipped"], "nll": m["nll"],
                  "nll - shipped [95%]": _with_ci(m["nll_minus_shipped"])}
           for part, m in report["mae"].items()}  # fmt: skip
    return pd.DataFrame(rows).T, pd.DataFrame(mae).T
