"""Negative result 1: chemistry flags added to the uncertainty rule do not find harder cases.

The paper's hybrid rule scores each test structure as

    score = α · v + β · TM + γ · D

and sends the top ``k`` (7.5% of the test set) to DFT, where

* ``v`` is the ensemble variance σ² (eV²/atom²) divided by its largest value on the test set,
  so that it lies in [0, 1] like the flags (the paper does not say how it put them on one scale);
* ``TM`` is 1 when the structure contains a transition metal (groups 3–12, La, Ac:
  :data:`tracer.analysis.failures.TRANSITION_METALS`);
* ``D``, the near-degeneracy proxy, is 1 when the ensemble predicts a formation energy within
  ``degeneracy_window_ev`` (default 0.1 eV/atom) of zero, i.e. the compound is predicted to lie
  nearly level with its elemental references — a label-free flag of competing phases.

The comparison is the mean |error| (eV/atom) of the selected set: variance only (α = 1,
β = γ = 0), the paper's rule (α = 1, β = 0.5, γ = 0.1), every rule of the paper's grid, and
random selections. :func:`flag_report` also reports what the flags pull in: their share of the
selected set and the mean |error| of the flagged structures.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tracer.analysis.failures import TRANSITION_METALS

PAPER_GRID = {"alpha": (0.5, 1.0, 2.0), "beta": (0.0, 0.5, 1.0), "gamma": (0.0, 0.1, 0.2)}
PAPER_RULE = (1.0, 0.5, 0.1)
PAPER_K_FRACTION = 0.075


def transition_metal_flag(compositions: Sequence[Any]) -> np.ndarray:
    """1.0 where a structure's elements include a transition metal, else 0.0."""
    return np.array([float(any(el in TRANSITION_METALS for el in c)) for c in compositions])


def degeneracy_flag(prediction: Any, window_ev: float = 0.1) -> np.ndarray:
    """1.0 where the predicted formation energy lies within ``window_ev`` of zero (eV/atom)."""
    return (np.abs(np.asarray(prediction, dtype=float)) < window_ev).astype(float)


def hybrid_scores(sigma: Any, tm: Any, degenerate: Any, alpha: float, beta: float,
                  gamma: float) -> np.ndarray:  # fmt: skip
    """α · σ²/max(σ²) + β · TM + γ · D."""
    var = np.asarray(sigma, dtype=float) ** 2
    top = var.max()
    v = var / top if top > 0 else np.zeros_like(var)
    return alpha * v + beta * np.asarray(tm, dtype=float) + gamma * np.asarray(degenerate, float)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores (ties broken by position)."""
    return np.argsort(-scores, kind="stable")[:k]


def flag_count(k_fraction: float, n: int) -> int:
    """How many structures a rule selects: ``k_fraction`` of ``n`` rounded to the nearest (halves
    up), at least one — the paper's 7.5% is 270 of 3,600, 295 of FLLA's 3,938, 30 of 395."""
    return max(1, math.floor(k_fraction * n + 0.5))


def flag_report(
    abs_error: Any,
    sigma: Any,
    prediction: Any,
    compositions: Sequence[Any],
    *,
    k_fraction: float = PAPER_K_FRACTION,
    degeneracy_window_ev: float = 0.1,
    n_trials: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The comparison of the module docstring. Keys as ``metrics/flags.json`` (METRICS.md):
    ``k``, ``variance_only_mean_abs_error``, ``hybrid_mean_abs_error``,
    ``random_mean_abs_error`` (and its std over ``n_trials``), ``grid`` (every rule), plus the
    flags' share and error."""
    abs_error = np.asarray(abs_error, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    n = abs_error.size
    if not (sigma.size == n == len(compositions) == np.asarray(prediction).size) or n == 0:
        raise ValueError("inputs must be non-empty and of one length")
    k = flag_count(k_fraction, n)
    tm = transition_metal_flag(compositions)
    deg = degeneracy_flag(prediction, degeneracy_window_ev)

    def selected(alpha: float, beta: float, gamma: float) -> np.ndarray:
        return top_k(hybrid_scores(sigma, tm, deg, alpha, beta, gamma), k)

    grid = []
    for a, b, g in itertools.product(*PAPER_GRID.values()):
        idx = selected(a, b, g)
        grid.append(
            {"alpha": a, "beta": b, "gamma": g, "mean_abs_error": float(abs_error[idx].mean()),
             "tm_share": float(tm[idx].mean()), "degenerate_share": float(deg[idx].mean())}
        )  # fmt: skip
    var_idx, hyb_idx = selected(1.0, 0.0, 0.0), selected(*PAPER_RULE)
    rng = np.random.default_rng(seed)
    random_means = np.array([abs_error[rng.choice(n, k, replace=False)].mean()
                             for _ in range(n_trials)])  # fmt: skip

    def share(idx: np.ndarray) -> dict[str, float]:
        return {"tm_share": float(tm[idx].mean()), "degenerate_share": float(deg[idx].mean())}

    return {
        "k": k,
        "k_fraction": k_fraction,
        "n_test": n,
        "degeneracy_window_ev": degeneracy_window_ev,
        "variance_only_mean_abs_error": float(abs_error[var_idx].mean()),
        "hybrid_rule": dict(zip(("alpha", "beta", "gamma"), PAPER_RULE, strict=True)),
        "hybrid_mean_abs_error": float(abs_error[hyb_idx].mean()),
        "random_mean_abs_error": float(random_means.mean()),
        "random_mean_abs_error_std": float(random_means.std(ddof=1)),
        "variance_only_flags": share(var_idx),
        "hybrid_flags": share(hyb_idx),
        "test_flags": share(np.arange(n)),
        "mean_abs_error_tm": float(abs_error[tm == 1].mean()) if tm.any() else None,
        "mean_abs_error_not_tm": float(abs_error[tm == 0].mean()) if (tm == 0).any() else None,
        "mean_abs_error_degenerate": float(abs_error[deg == 1].mean()) if deg.any() else None,
        "grid": grid,
    }
