"""How well the ensemble's spread σ (eV/atom) tells large errors from small ones.

Pure functions on arrays of predictions ``mean``, spreads ``sigma`` and targets ``y`` (eV/atom):
ranking quality (Spearman/Pearson of σ with |error|, AUROC and average precision for flagging the
largest errors, sparsification curves and AUSE), calibration as a Gaussian predictive
distribution N(mean, σ²) (NLL, CRPS, miscalibration area, interval coverage) before and after a
recalibration fitted on the validation set only (σ-scaling; isotonic on interval proportions),
and split-conformal intervals. Calibration quantities come from uncertainty-toolbox, ranking
scores from scikit-learn and scipy.

σ = 0 (all members agree exactly) is not a valid Gaussian scale: such values are raised to
``sigma_floor`` for the calibration scores and counted (``n_sigma_floored``); rankings use σ as
it is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score


def _arrays(*arrays: Any) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    if len({a.size for a in out}) != 1 or out[0].size == 0:
        raise ValueError(f"arrays must be non-empty and of one length, got {[a.size for a in out]}")
    if not all(np.isfinite(a).all() for a in out):
        raise ValueError("arrays must be finite")
    if (out[1] < 0).any() if len(out) > 1 else False:
        raise ValueError("sigma must be non-negative")
    return out


def error_sigma_correlation(sigma: Any, abs_error: Any) -> dict[str, float | None]:
    """Spearman and Pearson correlation of σ with |error| (None when either is constant: the
    correlation is undefined)."""
    abs_error, sigma = _arrays(abs_error, sigma)
    if np.ptp(abs_error) == 0 or np.ptp(sigma) == 0:
        return {"spearman": None, "pearson": None}
    return {
        "spearman": float(stats.spearmanr(sigma, abs_error).statistic),
        "pearson": float(stats.pearsonr(sigma, abs_error).statistic),
    }


def top_error_flagging(sigma: Any, abs_error: Any, fraction: float = 0.1) -> dict[str, float]:
    """σ as a score for the ``fraction`` largest errors: AUROC and average precision.

    The positives are the ``ceil(fraction · n)`` largest |errors| (ties broken by position)."""
    abs_error, sigma = _arrays(abs_error, sigma)
    n_pos = math.ceil(fraction * abs_error.size)
    if not 0 < n_pos < abs_error.size:
        raise ValueError(f"fraction {fraction} leaves no positives or no negatives")
    labels = np.zeros(abs_error.size, dtype=bool)
    labels[np.argsort(-abs_error, kind="stable")[:n_pos]] = True
    return {
        "auroc": float(roc_auc_score(labels, sigma)),
        "average_precision": float(average_precision_score(labels, sigma)),
        "n_flagged": n_pos,
    }


def sparsification(
    sigma: Any, abs_error: Any, fractions: Any = None
) -> dict[str, np.ndarray | float]:
    """Error-retention curves: MAE of what is kept after removing a fraction of the points with
    the largest σ (``model``) or the largest |error| (``oracle``), and AUSE, the area between the
    two (trapezoids over the fractions; 0 for a perfect ranking)."""
    abs_error, sigma = _arrays(abs_error, sigma)
    n = abs_error.size
    fr = np.linspace(0.0, 0.99, 100) if fractions is None else np.asarray(fractions, dtype=float)
    by_sigma = abs_error[np.argsort(sigma, kind="stable")]  # ascending σ: keep the first ones
    by_error = np.sort(abs_error)
    keep = np.maximum(1, np.ceil((1.0 - fr) * n).astype(int))
    model = np.cumsum(by_sigma)[keep - 1] / keep
    oracle = np.cumsum(by_error)[keep - 1] / keep
    gap = model - oracle
    ause = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(fr)))
    return {"fractions": fr, "model": model, "oracle": oracle, "ause": ause}


def binned_errors(sigma: Any, abs_error: Any, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Points sorted by σ into ``n_bins`` equal-count bins (at most one per point): mean σ,
    MAE and RMSE per bin (a calibrated Gaussian σ has RMSE ≈ mean σ)."""
    abs_error, sigma = _arrays(abs_error, sigma)
    order = np.argsort(sigma, kind="stable")
    bins = np.array_split(order, min(n_bins, order.size))
    return {
        "mean_sigma": np.array([sigma[b].mean() for b in bins]),
        "mae": np.array([abs_error[b].mean() for b in bins]),
        "rmse": np.array([np.sqrt((abs_error[b] ** 2).mean()) for b in bins]),
        "n": np.array([b.size for b in bins]),
    }


def interval_coverage(mean: Any, sigma: Any, y: Any, confidence: float = 0.95) -> float:
    """Fraction of targets inside the central Gaussian interval mean ± z·σ."""
    mean, sigma, y = _arrays(mean, sigma, y)
    z = stats.norm.ppf(0.5 + confidence / 2)
    return float(np.mean(np.abs(y - mean) <= z * sigma))


def sigma_scale(mean: Any, sigma: Any, y: Any) -> float:
    """The factor s minimising the Gaussian NLL of N(mean, (s·σ)²): sqrt(mean((y-mean)²/σ²))."""
    mean, sigma, y = _arrays(mean, sigma, y)
    if (sigma <= 0).any():
        raise ValueError("sigma must be positive to fit a scale")
    return float(np.sqrt(np.mean((y - mean) ** 2 / sigma**2)))


def conformal_quantile(mean: Any, sigma: Any, y: Any, confidence: float = 0.95) -> float:
    """Split-conformal quantile of the normalised residuals |y - mean| / σ on a calibration
    set: the ``ceil((n + 1)·confidence)``-th smallest (``inf`` when n is too small)."""
    mean, sigma, y = _arrays(mean, sigma, y)
    if (sigma <= 0).any():
        raise ValueError("sigma must be positive for normalised conformal scores")
    scores = np.sort(np.abs(y - mean) / sigma)
    k = math.ceil((scores.size + 1) * confidence)
    return float(scores[k - 1]) if k <= scores.size else math.inf


def uncertainty_report(
    val: tuple[Any, Any, Any],
    test: tuple[Any, Any, Any],
    *,
    top_fraction: float = 0.1,
    confidence: float = 0.95,
    sigma_floor: float = 1e-6,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Every score of this module on the test set, with recalibration and conformal quantile
    fitted on the validation set only. ``val`` and ``test`` are ``(mean, sigma, y)`` in eV/atom.
    Keys as ``metrics/uncertainty.json`` (METRICS.md) plus curves for the figures."""
    import uncertainty_toolbox as uct
    from uncertainty_toolbox import metrics_calibration as mc
    from uncertainty_toolbox import recalibration as rc

    vm, vs, vy = _arrays(*val)
    tm, ts, ty = _arrays(*test)
    abs_err = np.abs(ty - tm)
    vs_f, ts_f = np.maximum(vs, sigma_floor), np.maximum(ts, sigma_floor)

    def calibration(sig: np.ndarray) -> dict[str, float]:
        return {
            "nll": float(uct.nll_gaussian(tm, sig, ty)),
            "crps": float(uct.crps_gaussian(tm, sig, ty)),
            "miscal_area": float(mc.miscalibration_area(tm, sig, ty)),
            "coverage95": interval_coverage(tm, sig, ty, confidence),
        }

    raw = calibration(ts_f)
    # σ-scaling, factor fitted on validation: minimising the miscalibration area (primary), and
    # the NLL-optimal factor (heavy error tails inflate it)
    scale = float(rc.get_std_recalibrator(vm, vs_f, vy, criterion="ma_cal")(np.ones(1))[0])
    scale_nll = sigma_scale(vm, vs_f, vy)
    scaled, scaled_nll = calibration(ts_f * scale), calibration(ts_f * scale_nll)
    # isotonic recalibration fitted on validation: maps an observed interval proportion to the
    # nominal one that gives it, so the recalibrated 95% interval is the nominal iso(0.95) one
    exp_props, obs_props = mc.get_proportion_lists_vectorized(vm, vs_f, vy, prop_type="interval")
    iso = rc.iso_recal(exp_props, obs_props)
    nominal = float(iso.predict([confidence])[0])
    z_iso = stats.norm.ppf(0.5 + nominal / 2) if nominal < 1.0 else math.inf
    q = conformal_quantile(vm, vs_f, vy, confidence)
    sparse = sparsification(ts, abs_err)
    exp_grid = np.linspace(0.0, 1.0, 21)
    return {
        "n_test": int(ty.size),
        "n_val": int(vy.size),
        "n_sigma_floored": int((ts < sigma_floor).sum() + (vs < sigma_floor).sum()),
        "sigma_floor_ev_per_atom": sigma_floor,
        **error_sigma_correlation(ts, abs_err),
        **{f"{k}_top10": v for k, v in top_error_flagging(ts, abs_err, top_fraction).items()},
        "ause": sparse["ause"],
        **raw,
        "recalibration": "sigma scaling, factor minimising the miscalibration area on the "
        "validation set (uncertainty-toolbox get_std_recalibrator, criterion ma_cal)",
        "sigma_scale": scale,
        **{f"{k}_recal": v for k, v in scaled.items()},
        "sigma_scale_nll": scale_nll,
        **{f"{k}_nll_scaled": v for k, v in scaled_nll.items()},
        "miscal_area_isotonic": float(mc.miscalibration_area(tm, ts_f, ty, recal_model=iso)),
        "coverage95_isotonic": float(np.mean(abs_err <= z_iso * ts_f)),
        # too few validation rows for the confidence: no finite interval (None, not inf)
        "conformal_quantile": q if math.isfinite(q) else None,
        "conformal_coverage95": float(np.mean(abs_err <= q * ts_f)) if math.isfinite(q) else None,
        "conformal_mean_halfwidth": float(np.mean(q * ts_f)) if math.isfinite(q) else None,
        "curves": {
            "calibration": {
                "expected": exp_grid.tolist(),
                "observed": mc.get_proportion_lists_vectorized(
                    tm, ts_f, ty, num_bins=len(exp_grid), prop_type="interval"
                )[1].tolist(),
                "observed_recal": mc.get_proportion_lists_vectorized(
                    tm, ts_f * scale, ty, num_bins=len(exp_grid), prop_type="interval"
                )[1].tolist(),
            },
            "sparsification": {k: np.asarray(v).tolist() for k, v in sparse.items()
                               if k != "ause"},
            "binned": {k: v.tolist() for k, v in binned_errors(ts, abs_err, n_bins).items()},
        },
    }  # fmt: skip
