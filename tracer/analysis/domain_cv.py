"""The applicability domain measured out of fold: each fold's domain, fitted on its own training
part by its own members (``tracer fit-domain --fold``, record ``ood.json``), pooled over every
fold's test part.

The verdict rules were declared before the fold members were trained (docs/screening.md § The
domain on the five folds): the share of structures flagged is judged against
``max_flagged`` by its point (*met out of fold*) and by the upper end of its Clopper–Pearson
95% interval (*met with a margin*); the MAE of flagged over unflagged structures by its point
against ``min_ratio``; each kind of made-up shifted input by its pooled detection against
``min_detection``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from tracer.analysis.cross_validation import stratified_indices
from tracer.inference.domain_study import MIN_DETECTION, accepts, min_detection_to_accept
from tracer.inference.thresholds import MAX_VAL_FLAGGED

#: the settings a fold's rule chose on its validation part (keys of ``ood.json``)
CHOSEN = ("representation_quantile", "strain_quantile", "range_quantile")
#: the declared goals: flagged share at most, MAE ratio at least (each kind's detection at
#: least :data:`tracer.inference.domain_study.MIN_DETECTION`, the goal ``fit-domain`` accepts by)
MAX_FLAGGED, MIN_RATIO = 0.05, 2.0
#: a search design other than ``tied`` is *sharper* when at least this many of five fresh folds
#: are accepted and the refusal rule holds (docs/screening.md § Searching the strain check's
#: two sides apart)
MIN_ACCEPTED_FOLDS = 3


def search_of(record: dict[str, Any]) -> tuple[str, float]:
    """The search design and validation budget a domain record (``ood.json`` or
    ``cv_domain.json``) was fitted with; records that predate either key mean ``tied`` and
    :data:`~tracer.inference.thresholds.MAX_VAL_FLAGGED`."""
    return record.get("design", "tied"), record.get("max_val_flagged", MAX_VAL_FLAGGED)


def proportion(k: int, n: int) -> dict[str, Any]:
    """``k`` of ``n`` as a fraction with its exact (Clopper–Pearson) 95% interval."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"a proportion needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"k": k, "n": n, "fraction": k / n, "ci95": [float(ci.low), float(ci.high)]}


def _fold_errors(fold: int, record: dict[str, Any], rows: pd.DataFrame) -> pd.DataFrame:
    """The fold's test rows with ``abs_err`` (eV/atom) and ``flagged``; the record and the rows
    must describe the same structures and, for the flagged ones, the same errors."""
    test = rows[rows["set"] == "test"]
    if len(test) != record["n_test"]:
        raise ValueError(f"fold {fold}: ood.json has {record['n_test']} test structures, "
                         f"the predictions {len(test)}")  # fmt: skip
    err = (test["mean"] - test["y_true"]).abs().to_numpy(float)
    flagged_ids = {r["id"]: r["abs_error"] for r in record["flagged_test"]}
    unknown = sorted(set(flagged_ids) - set(test["id"]))
    if unknown:
        raise ValueError(f"fold {fold}: flagged ids not in its test part: {unknown[:5]}")
    flagged = test["id"].isin(flagged_ids).to_numpy()
    recorded = np.array([flagged_ids[i] for i in test["id"][flagged]])
    if recorded.size and np.abs(recorded - err[flagged]).max() > 1e-4:  # the CPU refit vs GPU
        raise ValueError(f"fold {fold}: the flagged structures' errors in ood.json differ from "
                         "the predictions' (not the same members?)")  # fmt: skip
    return pd.DataFrame({"id": test["id"].to_numpy(), "fold": fold, "abs_err": err,
                         "flagged": flagged})  # fmt: skip


def pooled_domain(
    folds: Sequence[tuple[dict[str, Any], pd.DataFrame]],
    *,
    max_flagged: float = MAX_FLAGGED,
    min_ratio: float = MIN_RATIO,
    min_detection: float = MIN_DETECTION,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pool each fold's domain record (``ood.json`` of
    :func:`tracer.inference.domain_study.run_domain_study`) with that fold's predictions
    (``id``, ``set``, ``y_true``, ``mean`` in eV/atom; the same members) into
    ``cv_domain.json`` (keys: docs/METRICS.md). The MAE ratio's interval resamples structures
    within folds. The folds whose fit ``tracer fit-domain`` accepts
    (:func:`tracer.inference.domain_study.accepts`, validation only) are pooled again on
    their own under ``accepted``, which judges the refusal rule (docs/screening.md § Refusing a
    weak fit): it *holds* when their pooled detection of every kind meets ``min_detection``.
    Folds fitted with a search design other than ``tied`` (``ood.json`` ``design``) are also
    judged by ``verdicts.design_sharper``: at least :data:`MIN_ACCEPTED_FOLDS` accepted and the
    refusal rule holding. Folds fitted with a validation budget other than
    :data:`~tracer.inference.thresholds.MAX_VAL_FLAGGED` (``ood.json`` ``max_val_flagged``) are
    judged by ``verdicts.budget_holds`` (docs/screening.md § A smaller validation budget): the
    same, and the pooled flagged share within ``max_flagged`` by its point."""
    goals = {"max_flagged": max_flagged, "min_ratio": min_ratio,
             "min_detection": min_detection, "n_resamples": n_resamples, "seed": seed}  # fmt: skip
    out = _pooled(list(enumerate(folds)), **goals)
    kept = [(p["fold"], folds[p["fold"]]) for p in out["per_fold"] if p["accepted"]]
    out["accepted_folds"] = [f for f, _ in kept]
    out["accepted"] = _pooled(kept, **goals) if kept else None
    out["verdicts"]["refusal_rule"] = (
        "no fold accepted" if not kept
        else "holds" if out["accepted"]["verdicts"]["shifts_met"] else "fails")  # fmt: skip
    designs = sorted({p["design"] for p in out["per_fold"]})
    out["design"] = designs[0] if len(designs) == 1 else designs
    enough = len(kept) >= MIN_ACCEPTED_FOLDS and out["verdicts"]["refusal_rule"] == "holds"
    if designs != ["tied"]:
        out["verdicts"]["design_sharper"] = enough
    budgets = sorted({p["max_val_flagged"] for p in out["per_fold"]})
    out["max_val_flagged"] = budgets[0] if len(budgets) == 1 else budgets
    if budgets != [MAX_VAL_FLAGGED]:
        out["verdicts"]["budget_holds"] = enough and out["verdicts"]["flagged_met"]
    return out


def _pooled(
    folds: Sequence[tuple[int, tuple[dict[str, Any], pd.DataFrame]]],
    *,
    max_flagged: float,
    min_ratio: float,
    min_detection: float,
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """:func:`pooled_domain` over ``(fold, (record, predictions))`` pairs."""
    if not folds:
        raise ValueError("no folds")
    frame = pd.concat([_fold_errors(f, rec, rows) for f, (rec, rows) in folds],
                      ignore_index=True)  # fmt: skip
    err, flagged = frame["abs_err"].to_numpy(), frame["flagged"].to_numpy()
    if flagged.all() or not flagged.any():
        raise ValueError("every structure or none is flagged: no MAE ratio")
    idx = stratified_indices(frame["fold"].to_numpy(), n_resamples,
                             np.random.default_rng(seed))  # fmt: skip
    f_idx, e_idx = flagged[idx], err[idx]
    boot = (e_idx * f_idx).sum(1) / f_idx.sum(1) / ((e_idx * ~f_idx).sum(1) / (~f_idx).sum(1))
    share = proportion(int(flagged.sum()), len(frame))
    ratio = float(err[flagged].mean() / err[~flagged].mean())

    kinds = list(folds[0][1][0]["shift_detection"])
    shifts = {}
    for kind in kinds:
        per = [rec["shift_detection"][kind] for _, (rec, _) in folds]
        pooled = proportion(sum(round(p["flagged_fraction"] * p["n"]) for p in per),
                            sum(p["n"] for p in per))  # fmt: skip
        shifts[kind] = {"what": per[0]["what"], **pooled,
                        "per_fold": [p["flagged_fraction"] for p in per],
                        "val_per_fold": [p["flagged_fraction_val"] for p in per],
                        "met": pooled["fraction"] >= min_detection}  # fmt: skip
    fired: dict[str, int] = {}
    per_fold = []
    for fold, (rec, _) in folds:
        for key, n in rec["checks_fired_test"].items():
            fired[key] = fired.get(key, 0) + n
        design, budget = search_of(rec)
        per_fold.append({
            "fold": fold, "n_train": rec["n_train"], "n_val": rec["n_val"], "n_test": rec["n_test"],
            "flagged_fraction_val": rec["flagged_fraction_val"],
            "flagged_fraction_test": rec["flagged_fraction_test"],
            "mae_flagged": rec["mae_flagged"], "mae_unflagged": rec["mae_unflagged"],
            "mae_ratio": rec["mae_ratio"],
            "design": design, "max_val_flagged": budget,
            "chosen": {**{key: rec[key] for key in CHOSEN},
                       "strain_low_quantile": rec.get("strain_low_quantile")},
            "worst_detection": min(rec["shift_detection"][kind]["flagged_fraction"]
                                   for kind in kinds),
            "worst_detection_val": min(rec["shift_detection"][kind]["flagged_fraction_val"]
                                       for kind in kinds),
            "min_detection_val_to_accept": min_detection_to_accept(rec["n_val"]),
            "accepted": accepts(rec),
            "split_sha256": rec.get("split_sha256"),
        })  # fmt: skip
    return {
        "unit": "eV/atom",
        "n_folds": len(folds),
        "n": len(frame),
        "flagged": share,
        "flagged_fraction_val_mean": float(np.mean([p["flagged_fraction_val"] for p in per_fold])),
        "mae_flagged": float(err[flagged].mean()),
        "mae_unflagged": float(err[~flagged].mean()),
        "mae_ratio": ratio,
        "mae_ratio_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "shift_detection": shifts,
        "checks_fired_test": dict(sorted(fired.items())),
        "per_fold": per_fold,
        "verdicts": {
            "rule": f"flagged <= {max_flagged:.0%} (point: met out of fold; upper end of the "
            f"95% interval too: met with a margin); MAE ratio >= {min_ratio:g}; each shifted "
            f"kind detected >= {min_detection:.0%} (pooled); declared before the fold members "
            "were trained",
            "max_flagged": max_flagged,
            "min_ratio": min_ratio,
            "min_detection": min_detection,
            "flagged_met": share["fraction"] <= max_flagged,
            "flagged_met_with_margin": share["ci95"][1] <= max_flagged,
            "mae_ratio_met": ratio >= min_ratio,
            "shifts_met": all(s["met"] for s in shifts.values()),
        },
    }


def domain_cv_tables(record: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``cv_domain.json`` as two tables: each measure pooled with its interval, goal, verdict
    and whether its whole 95% interval clears the goal; and per fold the validation and test
    shares, the MAE ratio, the chosen settings, the worst-detected shifted kind (test and
    validation copies) and whether ``tracer fit-domain`` accepts the fit. Also for the
    record's ``accepted`` part."""
    v = record["verdicts"]
    share = record["flagged"]
    rows = [{"measure": "share of test structures flagged", "value": share["fraction"],
             "ci95": share["ci95"], "n": share["n"], "goal": f"<= {v['max_flagged']:.0%}",
             "met": v["flagged_met"], "interval clears the goal": v["flagged_met_with_margin"]},
            {"measure": "MAE flagged / unflagged", "value": record["mae_ratio"],
             "ci95": record["mae_ratio_ci95"], "n": share["n"], "goal": f">= {v['min_ratio']:g}",
             "met": v["mae_ratio_met"],
             "interval clears the goal": record["mae_ratio_ci95"][0] >= v["min_ratio"]}]
    for kind, s in record["shift_detection"].items():
        rows.append({"measure": f"shifted: {kind}", "value": s["fraction"], "ci95": s["ci95"],
                     "n": s["n"], "goal": f">= {v['min_detection']:.0%}", "met": s["met"],
                     "interval clears the goal": s["ci95"][0] >= v["min_detection"]})  # fmt: skip
    summary = pd.DataFrame(rows).set_index("measure")
    summary["ci95"] = [[round(x, 3) for x in ci] for ci in summary["ci95"]]
    summary["value"] = summary["value"].round(3)
    per_fold = pd.DataFrame([{"val flagged": p["flagged_fraction_val"],
                              "test flagged": p["flagged_fraction_test"],
                              "MAE ratio": p["mae_ratio"], "worst shift detection":
                              p["worst_detection"], "worst on validation":
                              p["worst_detection_val"], "accepted": p["accepted"],
                              **p["chosen"]}
                             for p in record["per_fold"]],
                            index=[p["fold"] for p in record["per_fold"]]).round(4)  # fmt: skip
    per_fold.index.name = "fold"
    return summary, per_fold
