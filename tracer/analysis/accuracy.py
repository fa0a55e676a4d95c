"""Accuracy metrics (eV/atom unless the inputs are in another unit): MAE, RMSE, R² with
bootstrap 95% intervals — one code path for every model, as the paper's checklist demands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("no samples")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise ValueError("non-finite values in targets or predictions")
    return y_true, y_pred


def point_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (scikit-learn), in the unit of the inputs."""
    y_true, y_pred = _check(y_true, y_pred)
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float(r2_score(y_true, y_pred)) if y_true.size > 1 else float("nan"),
    }


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of MAE, RMSE and R² over test structures.

    Returns ``{"mae_ci95": [lo, hi], "rmse_ci95": [...], "r2_ci95": [...]}``.
    """
    y_true, y_pred = _check(y_true, y_pred)
    rng = np.random.default_rng(seed)
    n = y_true.size
    idx = rng.integers(0, n, size=(n_resamples, n))
    t, p = y_true[idx], y_pred[idx]
    err = p - t
    mae = np.abs(err).mean(axis=1)
    rmse = np.sqrt((err**2).mean(axis=1))
    ss_tot = ((t - t.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - (err**2).sum(axis=1) / ss_tot
    alpha = (1.0 - confidence) / 2.0
    tag = f"ci{round(confidence * 100)}"

    def interval(values: np.ndarray) -> list[float]:
        values = values[np.isfinite(values)]
        if values.size == 0:  # e.g. R² of constant targets: undefined in every resample
            return [float("nan"), float("nan")]
        return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]

    return {f"mae_{tag}": interval(mae), f"rmse_{tag}": interval(rmse), f"r2_{tag}": interval(r2)}


def evaluate(
    y_true: np.ndarray, y_pred: np.ndarray, *, n_resamples: int = 2000, seed: int = 0
) -> dict[str, object]:
    """Point metrics plus bootstrap 95% intervals and the number of samples."""
    out: dict[str, object] = dict(point_metrics(y_true, y_pred))
    out.update(bootstrap_ci(y_true, y_pred, n_resamples=n_resamples, seed=seed))
    out["n"] = int(np.asarray(y_true).size)
    return out


def accuracy_table(
    results: Mapping[str, Mapping[str, object]], source: str | None = None
) -> pd.DataFrame:
    """One row per model: MAE, RMSE, R² and the MAE interval, for rendering Table 1; with
    ``source`` (which run, profile and test set the row comes from) as the first column."""
    rows = []
    for name, m in results.items():
        lo, hi = m.get("mae_ci95", [np.nan, np.nan])  # type: ignore[misc]
        row = {"source": source} if source is not None else {}
        rows.append(
            {
                **row,
                "model": name,
                "MAE": m["mae"],
                "MAE 95% CI": f"[{lo:.4f}, {hi:.4f}]",
                "RMSE": m["rmse"],
                "R2": m["r2"],
                "n_test": m.get("n"),
            }
        )
    return pd.DataFrame(rows)


# Published numbers shown beside ours (eV/atom), each with its source and its own test set:
# none of them is on FLLA, so they are context, not a comparison.
PUBLISHED_ACCURACY: tuple[dict[str, object], ...] = (
    *(
        {"source": "paper (Datta et al. 2026): JARVIS dft_3d, their test set", "model": m,
         "MAE": mae, "RMSE": rmse, "R2": r2, "n_test": 3604}
        for m, mae, rmse, r2 in (
            ("GemNet-inspired, full (FiLM domain module)", 0.037025, 0.079944, 0.993856),
            ("GemNet-inspired, baseline (no FiLM)", 0.037029, 0.079501, 0.993924),
            ("ALIGNN retrained by the authors (50 epochs)", 0.049761, 0.112840, 0.987759),
        )
    ),
    *(
        {"source": "JARVIS leaderboard: dft_3d formation energy (55,713 entries)", "model": m,
         "MAE": mae, "RMSE": None, "R2": None, "n_test": None}
        for m, mae in (("ALIGNN", 0.0331), ("SchNet", 0.0365), ("CGCNN", 0.0551))
    ),
    *(
        {"source": "Matbench v0.1: mp_e_form (132,752 entries, 5-fold)", "model": m,
         "MAE": mae, "RMSE": None, "R2": None, "n_test": None}
        for m, mae in (("ALIGNN", 0.0215), ("SchNet", 0.0218), ("CGCNN", 0.0337),
                       ("dummy", 1.0059))
    ),
)  # fmt: skip


def table1(parts: Sequence[pd.DataFrame], *, published: bool = True) -> pd.DataFrame:
    """Table 1: our rows (each part labelled by its ``source``) followed, when ``published``,
    by the published numbers of :data:`PUBLISHED_ACCURACY` (labelled with their datasets)."""
    frames = [p for p in parts if len(p)]
    if published:
        frames.append(pd.DataFrame(PUBLISHED_ACCURACY))
    table = pd.concat(frames, ignore_index=True)
    table["n_test"] = table["n_test"].astype("Int64")  # counts, missing for published rows
    return table
