"""Where the model fails: test error and ensemble σ (eV/atom) by kind of structure.

Pure functions on a frame with one row per test structure: ``id``, ``formula``, ``n_atoms``,
``composition`` (element symbol → atomic fraction), ``y_true``, ``mean`` (the ensemble
prediction) and ``std`` (its σ). Groups: cell size, number of elements, formation-energy range,
and the chemistry classes the paper names (:data:`CHEMISTRY_CLASSES`; a structure can belong to
several, or none). :func:`failure_report` also lists the worst predictions and tests whether the
groups with large errors are the groups with large σ.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Element
from scipy import stats

# Transition metals as pymatgen defines them: groups 3–12 with La and Ac.
TRANSITION_METALS = frozenset(el.symbol for el in Element if el.is_transition_metal)

NATOM_BINS = ((1, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 10**9))
ENERGY_EDGES_EV = (-np.inf, -3.0, -2.0, -1.0, 0.0, np.inf)


def _is_elemental(c: Mapping[str, float], n: int) -> bool:
    return len(c) == 1


def _is_oxygen_rich(c: Mapping[str, float], n: int) -> bool:
    return c.get("O", 0.0) >= 0.5


def _is_small_cell(c: Mapping[str, float], n: int) -> bool:
    return n <= 2


def _is_carbon_cage(c: Mapping[str, float], n: int) -> bool:
    return c.get("C", 0.0) >= 0.5 and n >= 20


def _has_transition_metal(c: Mapping[str, float], n: int) -> bool:
    return len(c) >= 2 and any(el in TRANSITION_METALS for el in c)


CHEMISTRY_CLASSES: dict[str, tuple[str, Callable[[Mapping[str, float], int], bool]]] = {
    "elemental solids": ("one element", _is_elemental),
    "oxygen-rich or O-only": ("oxygen atomic fraction >= 0.5", _is_oxygen_rich),
    "1-2 atom cells (metal dimers and others)": ("at most 2 atoms in the cell", _is_small_cell),
    "large carbon cages / molecular crystals": (
        "carbon atomic fraction >= 0.5 and at least 20 atoms in the cell",
        _is_carbon_cage,
    ),
    "transition-metal compounds": (
        "two or more elements, at least one a transition metal (groups 3-12, La, Ac)",
        _has_transition_metal,
    ),
}


def _check(frame: pd.DataFrame) -> pd.DataFrame:
    need = {"id", "formula", "n_atoms", "composition", "y_true", "mean", "std"}
    missing = need - set(frame.columns)
    if missing:
        raise ValueError(f"failure analysis needs columns {sorted(missing)}")
    if frame.empty:
        raise ValueError("no structures to analyse")
    bad = frame[~np.isfinite(frame[["y_true", "mean", "std"]].to_numpy(dtype=float)).all(axis=1)]
    if len(bad):
        raise ValueError(f"non-finite target or prediction for id {bad['id'].iloc[0]!r}")
    out = frame.copy()
    out["abs_error"] = (out["mean"] - out["y_true"]).abs()
    return out


def group_stats(frame: pd.DataFrame, masks: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """``{group: {n, mae, mean_sigma}}`` for each boolean mask (empty groups: n 0, nulls)."""
    frame = _check(frame)
    out = {}
    for name, mask in masks.items():
        rows = frame[np.asarray(mask, dtype=bool)]
        out[name] = {
            "n": len(rows),
            "mae": float(rows["abs_error"].mean()) if len(rows) else None,
            "mean_sigma": float(rows["std"].mean()) if len(rows) else None,
        }
    return out


def group_masks(frame: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Boolean masks of every grouping: ``by_natoms``, ``by_nelements``, ``by_energy``
    (target range, eV/atom) and ``by_chemistry``."""
    n = frame["n_atoms"].to_numpy()
    n_el = np.array([len(c) for c in frame["composition"]])
    y = frame["y_true"].to_numpy(dtype=float)
    natoms = {
        (f"{lo}-{hi}" if hi < 10**9 else f">={lo}"): (n >= lo) & (n <= hi) for lo, hi in NATOM_BINS
    }
    nelements = {str(k): n_el == k for k in (1, 2, 3, 4)} | {">=5": n_el >= 5}
    energy = {}
    for lo, hi in itertools.pairwise(ENERGY_EDGES_EV):
        label = f"< {hi:g}" if lo == -np.inf else (f">= {lo:g}" if hi == np.inf else
                                                     f"[{lo:g}, {hi:g})")  # fmt: skip
        energy[label] = (y >= lo) & (y < hi)
    chemistry = {
        name: np.array([rule(c, k) for c, k in zip(frame["composition"], n, strict=True)])
        for name, (_, rule) in CHEMISTRY_CLASSES.items()
    }
    return {"by_natoms": natoms, "by_nelements": nelements, "by_energy": energy,
            "by_chemistry": chemistry}  # fmt: skip


def failure_report(frame: pd.DataFrame, *, n_worst: int = 20, min_group: int = 5) -> dict[str, Any]:
    """Every grouping's statistics, the ``n_worst`` largest errors (id, formula, abs_error,
    sigma, y_true, y_pred) and, over all groups of at least ``min_group`` structures, the
    Spearman correlation between a group's MAE and its mean σ (are the high-error groups the
    high-σ groups?)."""
    frame = _check(frame)
    report: dict[str, Any] = {}
    pairs = []
    for grouping, masks in group_masks(frame).items():
        report[grouping] = group_stats(frame, masks)
        pairs += [(g["mae"], g["mean_sigma"]) for g in report[grouping].values()
                  if g["n"] >= min_group]  # fmt: skip
    worst = frame.sort_values("abs_error", ascending=False, kind="stable").head(n_worst)
    report["worst"] = [
        {"id": r.id, "formula": r.formula, "abs_error": float(r.abs_error),
         "sigma": float(r.std), "y_true": float(r.y_true), "y_pred": float(r.mean)}
        for r in worst.itertuples()
    ]  # fmt: skip
    mae, sig = np.array(pairs, dtype=float).T if pairs else (np.array([]), np.array([]))
    report["group_error_sigma_spearman"] = (
        float(stats.spearmanr(mae, sig).statistic) if len(pairs) >= 3 else None
    )
    report["n_groups_compared"] = len(pairs)
    report["worst_sigma_percentile"] = float(
        np.mean([stats.percentileofscore(frame["std"], w["sigma"]) for w in report["worst"]])
    )
    report["chemistry_classes"] = {k: v[0] for k, v in CHEMISTRY_CLASSES.items()}
    report["n"] = len(frame)
    report["mae"] = float(frame["abs_error"].mean())
    return report
