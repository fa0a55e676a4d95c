"""Budgeted DFT triage: with budget for ``b`` DFT checks, which predictions should be checked?

The paper's simulation: rank the test structures by ensemble σ (largest first) and check the top
``b``; the *yield* is the fraction of the checked structures whose |error| exceeds a threshold
(eV/atom), i.e. how many of the checks catch a bad prediction. Compared with checking ``b``
structures at random (``n_trials`` draws without replacement: mean ± std) and with the oracle
that checks the ``b`` largest errors. The paper's budgets (50–300 of 3,604 test structures) are
applied as the same fractions of the test set at hand (:func:`scaled_budgets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PAPER_TEST_SIZE = 3604
PAPER_BUDGETS = (50, 100, 150, 200, 250, 300)
PAPER_THRESHOLDS_EV = (0.10, 0.15, 0.20)


def scaled_budgets(
    n_test: int, budgets: Sequence[int] = PAPER_BUDGETS, reference: int = PAPER_TEST_SIZE
) -> list[int]:
    """The budgets as the same fractions of an ``n_test``-structure test set (at least 1)."""
    return [max(1, round(b * n_test / reference)) for b in budgets]


def triage_rows(
    abs_error: Any,
    sigma: Any,
    budgets: Sequence[int],
    thresholds: Sequence[float],
    *,
    n_trials: int = 2000,
    seed: int = 0,
) -> list[dict[str, float | int]]:
    """One row per (budget, threshold): ``uncertainty_yield`` (top-``budget`` σ; ties broken by
    position), ``random_yield_mean`` and ``random_yield_std`` over ``n_trials`` random draws,
    ``oracle_yield`` and the number of bad predictions ``n_bad`` (|error| > threshold), with the
    margin over random in random standard deviations."""
    abs_error = np.asarray(abs_error, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    n = abs_error.size
    if sigma.size != n or n == 0:
        raise ValueError("abs_error and sigma must be non-empty and of one length")
    if not (np.isfinite(abs_error).all() and np.isfinite(sigma).all()):
        raise ValueError("abs_error and sigma must be finite")
    if any(not 0 < b <= n for b in budgets):
        raise ValueError(f"budgets {list(budgets)} must lie in 1..{n}")
    rng = np.random.default_rng(seed)
    ranked = np.argsort(-sigma, kind="stable")
    # one random permutation per trial: its first b entries are a draw of size b
    perms = np.argsort(rng.random((n_trials, n)), axis=1)
    rows = []
    for t in thresholds:
        bad = abs_error > t
        bad_in_perm = np.cumsum(bad[perms], axis=1)
        for b in budgets:
            random_yield = bad_in_perm[:, b - 1] / b
            row = {
                "budget": int(b),
                "budget_fraction": b / n,
                "threshold": float(t),
                "n_bad": int(bad.sum()),
                "uncertainty_yield": float(bad[ranked[:b]].mean()),
                "random_yield_mean": float(random_yield.mean()),
                "random_yield_std": float(random_yield.std(ddof=1)),
                "oracle_yield": float(min(b, int(bad.sum())) / b),
            }
            std = row["random_yield_std"]
            margin = row["uncertainty_yield"] - row["random_yield_mean"]
            row["margin_in_random_std"] = float(margin / std) if std > 0 else None
            rows.append(row)
    return rows


def yield_curves(abs_error: Any, sigma: Any, threshold: float) -> dict[str, np.ndarray]:
    """Yield and recall (fraction of all bad predictions caught) against the number of checks
    ``b`` = 1..n, ranked by σ, by the oracle, and for random checks (expected values)."""
    abs_error = np.asarray(abs_error, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    bad = abs_error > threshold
    n, n_bad = bad.size, int(bad.sum())
    b = np.arange(1, n + 1)
    caught = np.cumsum(bad[np.argsort(-sigma, kind="stable")])
    oracle = np.minimum(b, n_bad)
    denom = max(n_bad, 1)
    return {
        "budget": b,
        "uncertainty_yield": caught / b,
        "oracle_yield": oracle / b,
        "random_yield": np.full(n, n_bad / n),
        "uncertainty_recall": caught / denom,
        "oracle_recall": oracle / denom,
        "random_recall": b / n,
    }


# The paper's table (its test set of 3,604): (budget, threshold) -> (σ-ranked yield, random
# mean, random std). Shown beside ours; not an input to anything.
PAPER_TABLE: dict[tuple[int, float], tuple[float, float, float]] = {
    (50, 0.10): (0.340, 0.076, 0.036),
    (50, 0.15): (0.260, 0.042, 0.028),
    (50, 0.20): (0.080, 0.025, 0.022),
    (100, 0.10): (0.250, 0.078, 0.026),
    (150, 0.10): (0.220, 0.078, 0.021),
    (200, 0.10): (0.200, 0.078, 0.019),
    (300, 0.10): (0.200, 0.078, 0.015),
    (300, 0.20): (0.037, 0.026, 0.009),
}


def triage_report(
    abs_error: Any,
    sigma: Any,
    *,
    budgets: Sequence[int] = PAPER_BUDGETS,
    thresholds: Sequence[float] = PAPER_THRESHOLDS_EV,
    n_trials: int = 2000,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`triage_rows` at the paper's budgets scaled to this test set (each row also with
    the bootstrap standard deviation of the σ-ranked yield over ``n_bootstrap`` resampled test
    sets), each row with the
    paper budget it stands for and the paper's values where its table has that row, and
    whether every row beats random by 3 random standard deviations and the smallest budget
    reaches half the oracle's yield."""
    abs_error = np.asarray(abs_error, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    n = int(abs_error.size)
    ours = scaled_budgets(n, budgets)
    rows = triage_rows(abs_error, sigma, sorted(set(ours)), thresholds, n_trials=n_trials,
                       seed=seed)  # fmt: skip
    by_key = {(r["budget"], r["threshold"]): r for r in rows}
    # sampling spread of the σ-ranked yield: the same rule on test sets resampled with
    # replacement (a small test set gives few checks per budget)
    rng = np.random.default_rng(seed + 1)
    boot: dict[tuple[int, float], list[float]] = {key: [] for key in by_key}
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        ranked = abs_error[idx][np.argsort(-sigma[idx], kind="stable")]
        for b, t in boot:
            boot[(b, t)].append(float((ranked[:b] > t).mean()))
    for key, values in boot.items():
        by_key[key]["uncertainty_yield_bootstrap_std"] = (
            float(np.std(values, ddof=1)) if len(values) > 1 else None
        )
    table = []
    for paper_b, b in zip(budgets, ours, strict=True):
        for t in thresholds:
            paper = PAPER_TABLE.get((paper_b, t))
            table.append({
                "paper_budget": paper_b, **by_key[(b, float(t))],
                "paper_uncertainty_yield": paper[0] if paper else None,
                "paper_random_yield_mean": paper[1] if paper else None,
                "paper_random_yield_std": paper[2] if paper else None,
            })  # fmt: skip
    smallest = min(ours)
    return {
        "n_test": n,
        "n_trials": n_trials,
        "rows": table,
        "beats_random_by_3_std_everywhere": all(
            r["margin_in_random_std"] is not None and r["margin_in_random_std"] >= 3 for r in rows
        ),
        "smallest_budget_half_oracle": all(
            r["uncertainty_yield"] >= 0.5 * r["oracle_yield"] for r in rows
            if r["budget"] == smallest
        ),
    }  # fmt: skip
