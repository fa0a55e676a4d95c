"""What each audited claim measures, read from one run's committed records and prediction files.

A run (:class:`RunSpec`) is one set of records: the CPU default pipeline (``metrics/``), the GPU
run of record (``results/flla_full/``), the cross-validated run (``results/flla_cv5/`` and
``results/perovskites_cv/``). A quantity is a function of a :class:`Context` returning a
:class:`~tracer.audit.rules.Measurement`; it raises :class:`~tracer.audit.rules.NotRunError`
when the run lacks what it needs and :class:`~tracer.audit.rules.NotTestableError` when the data
cannot show the claim. Intervals are 95% bootstrap intervals over test structures (paired where
two models share them), computed here from the prediction files when the record has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from tracer.analysis.cross_validation import paired_bootstrap
from tracer.audit.rules import Measurement, NotRunError, NotTestableError
from tracer.audit.runs import Context, ci95, fmt_interval, resample_indices
from tracer.audit.studies import STUDIES


# --------------------------------------------------------------------------------------------
# model comparisons (paired over the shared test structures)
# --------------------------------------------------------------------------------------------
def _paired(ctx: Context, a: str, b: str, column: str, metric: str) -> Measurement:
    ta, tb = ctx.test(a), ctx.test(b)
    ids = ta.index.intersection(tb.index)
    y = ta.loc[ids, "y_true"].to_numpy(float)
    pa, pb = ta.loc[ids, column].to_numpy(float), tb.loc[ids, "y_pred"].to_numpy(float)
    out = paired_bootstrap(y, pa, pb)[metric]
    score = (
        (lambda p: float(np.mean(np.abs(p - y))))
        if metric == "mae"
        else (lambda p: float(np.sqrt(np.mean((p - y) ** 2))))
    )
    what = (
        "single member 0"
        if column == "y_pred" and a == "gemnet_t"
        else ("5-member ensemble" if column == "mean" else a)
    )
    text = (
        f"{what} {score(pa):.4f} vs {b} {score(pb):.4f} eV/atom; "
        f"{metric.upper()} difference {fmt_interval(out['diff'], tuple(out['ci95']))} "
        f"(n = {len(ids)})"
    )
    return Measurement(out["diff"], tuple(out["ci95"]), len(ids), text)


def single_minus_alignn_mae(ctx: Context) -> Measurement:
    return _paired(ctx, "gemnet_t", "alignn", "y_pred", "mae")


def single_minus_alignn_rmse(ctx: Context) -> Measurement:
    return _paired(ctx, "gemnet_t", "alignn", "y_pred", "rmse")


def ensemble_minus_alignn_mae(ctx: Context) -> Measurement:
    return _paired(ctx, "gemnet_t", "alignn", "mean", "mae")


def single_minus_schnet_mae(ctx: Context) -> Measurement:
    return _paired(ctx, "gemnet_t", "schnet", "y_pred", "mae")


def single_minus_cgcnn_mae(ctx: Context) -> Measurement:
    return _paired(ctx, "gemnet_t", "cgcnn", "y_pred", "mae")


def relative_gap_vs_alignn(ctx: Context) -> Measurement:
    """1 − MAE(single member) / MAE(ALIGNN), paired bootstrap interval."""
    ta, tb = ctx.test("gemnet_t"), ctx.test("alignn")
    ids = ta.index.intersection(tb.index)
    y = ta.loc[ids, "y_true"].to_numpy(float)
    ea = np.abs(ta.loc[ids, "y_pred"].to_numpy(float) - y)
    eb = np.abs(tb.loc[ids, "y_pred"].to_numpy(float) - y)
    idx = resample_indices(len(ids))
    gaps = 1 - ea[idx].mean(1) / eb[idx].mean(1)
    gap = 1 - ea.mean() / eb.mean()
    return Measurement(
        float(gap),
        ci95(gaps),
        len(ids),
        f"{gap * 100:.1f}% lower MAE [{ci95(gaps)[0] * 100:.1f}, "
        f"{ci95(gaps)[1] * 100:.1f}] (n = {len(ids)})",
    )


def epoch_time_ratio(ctx: Context) -> Measurement:
    speed = ctx.record("speed.json") if ctx.run.name != "cv" else None
    if speed is None or speed.get("epoch_time_ratio_gemnet_over_alignn") is None:
        raise NotRunError("no ALIGNN timing in this run")
    ratio = float(speed["epoch_time_ratio_gemnet_over_alignn"])
    return Measurement(
        ratio,
        None,
        None,
        f"GemNet-T / ALIGNN epoch time {ratio:.2f} "
        f"({1 / ratio:.1f}× faster per epoch; medians, {speed['device']})",
    )


# --------------------------------------------------------------------------------------------
# uncertainty
# --------------------------------------------------------------------------------------------
def _sigma_and_error(ctx: Context, members: list[str] | None = None) -> tuple[np.ndarray, ...]:
    t = ctx.test("gemnet_t")
    if members is None:
        mean, sigma = t["mean"].to_numpy(float), t["std"].to_numpy(float)
    else:
        values = t[members].to_numpy(float)
        mean, sigma = values.mean(1), values.std(1)
    return sigma, np.abs(mean - t["y_true"].to_numpy(float))


def _spearman(sigma: np.ndarray, err: np.ndarray, text: str) -> Measurement:
    rs, re_ = rankdata(sigma), rankdata(err)
    idx = resample_indices(len(err))
    a, b = rs[idx], re_[idx]
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    boot = (a * b).sum(1) / np.sqrt((a**2).sum(1) * (b**2).sum(1))
    rho = float(np.corrcoef(rs, re_)[0, 1])
    return Measurement(
        rho, ci95(boot), len(err), f"{text} {fmt_interval(rho, ci95(boot), 3)} (n = {len(err)})"
    )


def sigma_spearman(ctx: Context) -> Measurement:
    return _spearman(*_sigma_and_error(ctx), "Spearman(σ, |error|)")


def sigma_spearman_three_members(ctx: Context) -> Measurement:
    return _spearman(
        *_sigma_and_error(ctx, ["member_0", "member_1", "member_2"]),
        "3-member Spearman(σ, |error|)",
    )


def sigma_auroc_top10(ctx: Context) -> Measurement:
    sigma, err = _sigma_and_error(ctx)
    top = err >= np.quantile(err, 0.9)
    idx = resample_indices(len(err))
    boot = [roc_auc_score(top[i], sigma[i]) for i in idx[:500] if 0 < top[i].sum() < len(i)]
    auc = float(roc_auc_score(top, sigma))
    return Measurement(
        auc,
        ci95(np.asarray(boot)),
        len(err),
        f"AUROC(σ flags the top 10% errors) {fmt_interval(auc, ci95(np.asarray(boot)), 3)}",
    )


def _coverage(ctx: Context, key: str, what: str) -> Measurement:
    u = ctx.record("uncertainty.json")
    if u.get(key) is None:
        raise NotRunError(f"uncertainty record has no {key}")
    n = int(u.get("n_test") or u.get("n"))
    p = float(u[key])
    lo, hi = _wilson(p, n)
    return Measurement(p, (lo, hi), n, f"{what} {fmt_interval(p, (lo, hi), 3)} (n = {n})")


def _wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def coverage95_raw(ctx: Context) -> Measurement:
    return _coverage(ctx, "coverage95", "mean ± 1.96σ covers")


def coverage95_conformal(ctx: Context) -> Measurement:
    return _coverage(ctx, "conformal_coverage95", "split-conformal 95% interval covers")


def miscalibration_after_recalibration(ctx: Context) -> Measurement:
    u = ctx.record("uncertainty.json")
    if u.get("miscal_area") is None or u.get("miscal_area_recal") is None:
        raise NotRunError("no miscalibration areas in this run's record")
    d = float(u["miscal_area_recal"]) - float(u["miscal_area"])
    return Measurement(
        d,
        None,
        u.get("n_test"),
        f"miscalibration area {u['miscal_area']:.3f} "
        f"→ {u['miscal_area_recal']:.3f} after σ-scaling fitted on validation",
    )


def nll_reported(ctx: Context) -> Measurement:
    u = ctx.record("uncertainty.json")
    raise NotTestableError(
        f"the paper gives no NLL value to compare; ours {u['nll']:.3f} (Gaussian, per structure)"
    )


QUANTITIES: dict[str, Callable[[Context], Measurement]] = STUDIES | {
    fn.__name__: fn
    for fn in (
        single_minus_alignn_mae,
        single_minus_alignn_rmse,
        ensemble_minus_alignn_mae,
        single_minus_schnet_mae,
        single_minus_cgcnn_mae,
        relative_gap_vs_alignn,
        epoch_time_ratio,
        sigma_spearman,
        sigma_spearman_three_members,
        sigma_auroc_top10,
        coverage95_raw,
        coverage95_conformal,
        miscalibration_after_recalibration,
        nll_reported,
    )
}
