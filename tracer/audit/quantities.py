"""What each audited claim measures, read from one run's committed records and prediction files.

A run (:class:`RunSpec`) is one set of records: the CPU default pipeline (``metrics/``), the GPU
run of record (``results/gpu/``), the cross-validated run (``results/flla_cv5/`` and
``results/perovskites_cv/``). A quantity is a function of a :class:`Context` returning a
:class:`~tracer.audit.rules.Measurement`; it raises :class:`~tracer.audit.rules.NotRunError`
when the run lacks what it needs and :class:`~tracer.audit.rules.NotTestableError` when the data
cannot show the claim. Intervals are 95% bootstrap intervals over test structures (paired where
two models share them), computed here from the prediction files when the record has none.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tracer.audit.rules import Measurement, NotRunError, NotTestableError

N_RESAMPLES = 2000


@dataclass(frozen=True)
class RunSpec:
    """One run the audit scores: its records folder, its prediction files by model (``{dataset}``
    stands for the run's dataset name) and its settings file."""

    name: str
    label: str
    records: str
    predictions: dict[str, str]
    params: str


RUNS = (
    RunSpec(
        "cpu_default",
        "CPU default: FLLA, seed-42 split, 2-core recipe",
        "metrics",
        {
            "gemnet_t": "results/{dataset}/gemnet_t.parquet",
            "schnet": "results/{dataset}/schnet.parquet",
            "cgcnn": "results/{dataset}/cgcnn.parquet",
        },
        "params.yaml",
    ),
    RunSpec(
        "gpu_record",
        "GPU run of record: FLLA, seed-42 split, profiles/gpu.yaml",
        "results/gpu",
        {
            "gemnet_t": "results/gpu/gemnet_t.parquet",
            "alignn": "results/gpu/runs/alignn_defaults.parquet",
            "schnet": "results/gpu/runs/schnet.parquet",
            "cgcnn": "results/gpu/runs/cgcnn.parquet",
        },
        "profiles/gpu.yaml",
    ),
    RunSpec(
        "cv",
        "5-fold CV: all 3,938 FLLA structures out of fold (perovskites: matbench "
        "folds), profiles/gpu.yaml",
        "results/flla_cv5",
        {"gemnet_t": "results/flla_cv5/oof_gemnet_t.parquet"},
        "profiles/gpu.yaml",
    ),
)


@dataclass
class Context:
    """Read access to one run's records under ``root``."""

    root: Path
    run: RunSpec

    def path(self, rel: str) -> Path:
        p = self.root / rel
        if not p.exists():
            raise NotRunError(f"{rel} is missing")
        return p

    def json(self, rel: str) -> Any:
        return json.loads(self.path(rel).read_text())

    def record(self, name: str) -> Any:
        """The run's record ``name`` (``cv_<name>`` in the cross-validated run)."""
        prefix = "cv_" if self.run.name == "cv" else ""
        return self.json(f"{self.run.records}/{prefix}{name}")

    @cached_property
    def params(self) -> dict[str, Any]:
        return yaml.safe_load(self.path(self.run.params).read_text())

    @property
    def dataset(self) -> str:
        """The run's dataset name (its params' ``dataset.name``)."""
        return str(self.params["dataset"]["name"])

    def test(self, model: str) -> pd.DataFrame:
        """Test rows of a model's predictions (``y_pred`` = member 0 for GemNet-T, whose
        ``mean`` and ``std`` are the ensemble's), indexed by id."""
        rel = self.run.predictions.get(model)
        if rel is None:
            raise NotRunError(f"{model} was not trained in this run")
        if "{dataset}" in rel:
            rel = rel.format(dataset=self.dataset)
        frame = pd.read_parquet(self.path(rel))
        frame = frame[frame["set"] == "test"].set_index("id")
        if "y_pred" not in frame:
            frame["y_pred"] = frame["member_0"]
        return frame

    @cached_property
    def table(self) -> pd.DataFrame:
        return pd.read_parquet(
            self.path(f"data/processed/{self.dataset}.parquet"), columns=["id", "formula"]
        ).set_index("id")


def _ci(values: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap values; a statistic undefined in more than half of
    the resamples (too few structures) makes the claim NOT TESTABLE on this run."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size < 0.5 * values.size:
        raise NotTestableError("the statistic is undefined in most resamples (n too small)")
    return float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))


def _resample(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(N_RESAMPLES, n))


def _fmt(m: float, ci: tuple[float, float], digits: int = 4) -> str:
    return f"{m:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


# --------------------------------------------------------------------------------------------
# model comparisons (paired over the shared test structures)
# --------------------------------------------------------------------------------------------
def _paired(ctx: Context, a: str, b: str, column: str, metric: str) -> Measurement:
    from tracer.cv_analysis import paired_bootstrap

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
        f"{metric.upper()} difference {_fmt(out['diff'], tuple(out['ci95']))} (n = {len(ids)})"
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
    idx = _resample(len(ids))
    gaps = 1 - ea[idx].mean(1) / eb[idx].mean(1)
    gap = 1 - ea.mean() / eb.mean()
    return Measurement(
        float(gap),
        _ci(gaps),
        len(ids),
        f"{gap * 100:.1f}% lower MAE [{_ci(gaps)[0] * 100:.1f}, "
        f"{_ci(gaps)[1] * 100:.1f}] (n = {len(ids)})",
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
    from scipy.stats import rankdata

    rs, re_ = rankdata(sigma), rankdata(err)
    idx = _resample(len(err))
    a, b = rs[idx], re_[idx]
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    boot = (a * b).sum(1) / np.sqrt((a**2).sum(1) * (b**2).sum(1))
    rho = float(np.corrcoef(rs, re_)[0, 1])
    return Measurement(
        rho, _ci(boot), len(err), f"{text} {_fmt(rho, _ci(boot), 3)} (n = {len(err)})"
    )


def sigma_spearman(ctx: Context) -> Measurement:
    return _spearman(*_sigma_and_error(ctx), "Spearman(σ, |error|)")


def sigma_spearman_three_members(ctx: Context) -> Measurement:
    return _spearman(
        *_sigma_and_error(ctx, ["member_0", "member_1", "member_2"]),
        "3-member Spearman(σ, |error|)",
    )


def sigma_auroc_top10(ctx: Context) -> Measurement:
    from sklearn.metrics import roc_auc_score

    sigma, err = _sigma_and_error(ctx)
    top = err >= np.quantile(err, 0.9)
    idx = _resample(len(err))
    boot = [roc_auc_score(top[i], sigma[i]) for i in idx[:500] if 0 < top[i].sum() < len(i)]
    auc = float(roc_auc_score(top, sigma))
    return Measurement(
        auc,
        _ci(np.asarray(boot)),
        len(err),
        f"AUROC(σ flags the top 10% errors) {_fmt(auc, _ci(np.asarray(boot)), 3)}",
    )


def _coverage(ctx: Context, key: str, what: str) -> Measurement:
    u = ctx.record("uncertainty.json")
    if u.get(key) is None:
        raise NotRunError(f"uncertainty record has no {key}")
    n = int(u.get("n_test") or u.get("n"))
    p = float(u[key])
    lo, hi = _wilson(p, n)
    return Measurement(p, (lo, hi), n, f"{what} {_fmt(p, (lo, hi), 3)} (n = {n})")


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


# --------------------------------------------------------------------------------------------
# where the model fails: groups with their n and a bootstrap interval each
# --------------------------------------------------------------------------------------------
def _n_elements(formula: str) -> int:
    return len(set(re.findall(r"[A-Z][a-z]?", formula)))


def _groups(ctx: Context, labels: pd.Series) -> dict[str, dict[str, Any]]:
    t = ctx.test("gemnet_t")
    err = (t["mean"] - t["y_true"]).abs()
    out = {}
    for k, (name, part) in enumerate(err.groupby(labels.loc[err.index], sort=True)):
        values = part.to_numpy(float)
        boot = values[_resample(len(values), seed=k)].mean(1)
        out[str(name)] = {"mae": float(values.mean()), "ci95": list(_ci(boot)), "n": len(values)}
    return out


def _group_measurement(groups: dict[str, dict[str, Any]], claimed: str, what: str) -> Measurement:
    if claimed not in groups or not groups[claimed]["n"]:
        raise NotTestableError(f"no test structure in the group {claimed!r}")
    g = groups[claimed]
    worst = max(groups, key=lambda k: groups[k]["mae"])
    text = (
        f"{what} {claimed}: MAE {_fmt(g['mae'], tuple(g['ci95']), 3)} (n = {g['n']}); "
        f"largest: {worst} (n = {groups[worst]['n']}); "
        + ", ".join(f"{k} {v['mae']:.3f} (n = {v['n']})" for k, v in groups.items())
    )
    return Measurement(g["mae"], tuple(g["ci95"]), g["n"], text, {"groups": groups})


def elements_groups(ctx: Context) -> Measurement:
    t = ctx.test("gemnet_t")
    n = ctx.table.loc[t.index, "formula"].map(_n_elements).clip(upper=4)
    labels = n.map({1: "elemental", 2: "binary", 3: "ternary", 4: "quaternary+"})
    return _group_measurement(_groups(ctx, labels), "elemental", "group")


ENERGY_EDGES = (-2.0, 0.0, 1.0)
ENERGY_LABELS = ("below -2", "-2 to 0", "0 to +1", "above +1")


def _energy_labels(ctx: Context) -> pd.Series:
    t = ctx.test("gemnet_t")
    bins = np.digitize(t["y_true"].to_numpy(float), ENERGY_EDGES)
    return pd.Series([ENERGY_LABELS[b] for b in bins], index=t.index)


def energy_groups(ctx: Context) -> Measurement:
    return _group_measurement(_groups(ctx, _energy_labels(ctx)), "above +1", "formation energy")


def low_energy_minus_rest(ctx: Context) -> Measurement:
    """MAE of the structures below −2 eV/atom minus that of the rest (bootstrap interval)."""
    t = ctx.test("gemnet_t")
    low = (_energy_labels(ctx) == "below -2").to_numpy()
    err = (t["mean"] - t["y_true"]).abs().to_numpy(float)
    if low.sum() == 0:
        raise NotTestableError("no test structure below -2 eV/atom")
    idx = _resample(len(err))
    e, lw = err[idx], low[idx]
    boot = (e * lw).sum(1) / lw.sum(1) - (e * ~lw).sum(1) / (~lw).sum(1)
    d = float(err[low].mean() - err[~low].mean())
    return Measurement(
        d,
        _ci(boot),
        int(low.sum()),
        f"below -2 eV/atom {err[low].mean():.3f} (n = {int(low.sum())}) vs the "
        f"rest {err[~low].mean():.3f}: difference {_fmt(d, _ci(boot), 3)}",
    )


def large_cells(ctx: Context) -> Measurement:
    t = ctx.test("gemnet_t")
    failures = ctx.record("failures.json")
    sizes = failures["by_natoms"]
    big = [k for k, v in sizes.items() if v["n"] and k.startswith(">=")]
    raise NotTestableError(
        f"no test cell has more than 50 atoms (largest group with structures: "
        f"{[k for k, v in sizes.items() if v['n']][-1]} atoms; n = {len(t)}"
        f"{'' if not big else ', ' + big[0]})"
    )


NAMED_WORST = ("O2", "C", "KClNO3", "SiO2", "Re", "U")


def named_worst_cases(ctx: Context) -> Measurement:
    """Percentile of the error of the test structures whose reduced formula is one of the
    paper's named worst cases (O8, C60, K8Cl4N4O12, Si3O6, Re2, U2)."""
    from pymatgen.core import Composition

    t = ctx.test("gemnet_t")
    reduced = ctx.table.loc[t.index, "formula"].map(lambda f: Composition(f).reduced_formula)
    hits = reduced.isin(NAMED_WORST)
    if not hits.any():
        raise NotTestableError("none of the paper's named worst cases is among the test structures")
    err = (t["mean"] - t["y_true"]).abs()
    pct = err.rank(pct=True)[hits]
    return Measurement(
        float(pct.median()),
        None,
        int(hits.sum()),
        f"{int(hits.sum())} test structures with the named formulas; median error "
        f"percentile {pct.median() * 100:.0f}",
    )


# --------------------------------------------------------------------------------------------
# triage, flags, domain module, transfer, run-to-run
# --------------------------------------------------------------------------------------------
def triage_rows(ctx: Context) -> Measurement:
    t = ctx.record("triage.json")
    rows = t["rows"]
    low = min(
        rows,
        key=lambda r: (
            (r["uncertainty_yield"] - r["random_yield_mean"]) / max(r["random_yield_std"], 1e-12)
        ),
    )
    return Measurement(
        None,
        None,
        t.get("n") or t.get("n_test"),
        f"{len(rows)} settings; weakest: budget {low['budget']}, {low['threshold']} eV/atom: "
        f"{low['uncertainty_yield']:.3f} vs random {low['random_yield_mean']:.3f} ± "
        f"{low['random_yield_std']:.3f}",
        {"rows": rows},
    )


def flags_variance_minus_hybrid(ctx: Context) -> Measurement:
    f = ctx.record("flags.json")
    v, h = float(f["variance_only_mean_abs_error"]), float(f["hybrid_mean_abs_error"])
    spread = f.get("random_mean_abs_error_std")
    extra = f" ± {spread:.4f}" if spread is not None else ""
    return Measurement(
        v - h,
        None,
        f.get("k"),
        f"k = {f.get('k')}: variance-only {v:.4f} vs hybrid {h:.4f} vs random "
        f"{f['random_mean_abs_error']:.4f}{extra} eV/atom",
    )


def _smoke(ctx: Context, section: str, key: str) -> bool:
    return ctx.params.get(section, {}).get(key) is not None


def domain_film_minus_baseline(ctx: Context) -> Measurement:
    if ctx.run.name == "cv":
        raise NotRunError("the domain study was not cross-validated")
    d = ctx.record("domain.json")
    v = d.get("variants", {})
    if not v.get("film", {}).get("mae") or not v.get("baseline", {}).get("mae"):
        raise NotRunError(str(d.get("status", "film or baseline without a test MAE")))
    b, f = v["baseline"], v["film"]
    stds = [x.get("mae_across_seeds", {}).get("std") for x in (b, f)]
    spread = None if None in stds else float(np.sqrt(np.mean(np.square(stds))))
    n_seeds = min(len(b.get("mae_seeds", {})), len(f.get("mae_seeds", {})))
    diff = float(f["mae"] - b["mae"])
    smoke = _smoke(ctx, "domain", "train_limit")
    return Measurement(
        diff,
        None,
        n_seeds,
        f"FiLM {f['mae']:.4f} vs baseline {b['mae']:.4f} eV/atom ({n_seeds} seeds, "
        f"seed std {spread if spread is None else round(spread, 4)}); "
        f"+{f['params'] - b['params']:,} parameters, "
        f"{f['s_per_epoch'] / b['s_per_epoch']:.2f}× epoch time",
        {"seed_std": spread, "smoke": smoke},
    )


def transfer_pretrained_minus_scratch(ctx: Context) -> Measurement:
    if ctx.run.name == "cv":
        rec = ctx.json("results/perovskites_cv/perovskites_matbench.json")
        curve = rec.get("learning_curve") or []
        if not curve:
            raise NotRunError("no learning curve on the matbench folds")
        last = curve[-1]
        d = last["pretrained_minus_scratch_ev_per_cell"]
        return Measurement(
            d["diff"],
            tuple(d["ci95"]),
            last["n_test"],
            f"fold 0, {last['n_train']:,} training cells: pre-trained "
            f"{last['pretrained_mae_ev_per_cell']:.4f} vs scratch "
            f"{last['scratch_mae_ev_per_cell']:.4f} eV/cell; difference "
            f"{_fmt(d['diff'], tuple(d['ci95']))} (full folds: not run)",
        )
    t = ctx.record("transfer.json")
    if not isinstance(t.get("fine_tuned"), dict) or not isinstance(t.get("scratch"), dict):
        raise NotRunError(str(t.get("status", "no fine-tuned or scratch result")))
    single = t["fine_tuned"]["single_mae_ev_per_atom"]
    single = float(np.mean(list(single.values()))) if isinstance(single, dict) else float(single)
    scratch = float(t["scratch"]["mae_ev_per_atom"])
    return Measurement(
        single - scratch,
        None,
        t["split_sizes"]["test"] if "split_sizes" in t else None,
        f"one fine-tuned member {single:.4f} vs scratch {scratch:.4f} eV/atom "
        f"(one seed each, no interval)",
        {
            "smoke": _smoke(ctx, "transfer", "train_limit")
            or ctx.params["transfer"]["fine_tune"].get("train_limit") is not None
        },
    )


def zero_shot_minus_dummy(ctx: Context) -> Measurement:
    if ctx.run.name != "cv":
        raise NotRunError("the dummy baseline on the perovskites is in the matbench-fold run")
    rec = ctx.json("results/perovskites_cv/perovskites_matbench.json")["models"]
    z = rec["zero_shot"]["per_fold_mae_ev_per_cell"]
    d = rec["train_mean"]["per_fold_mae_ev_per_cell"]
    diffs = np.subtract(z, d)
    return Measurement(
        float(diffs.mean()),
        (float(diffs.min()), float(diffs.max())),
        len(z),
        f"zero-shot {np.mean(z):.3f} vs training mean {np.mean(d):.3f} eV/cell "
        f"(range over {len(z)} folds shown as the interval)",
    )


def matbench_fine_tuned_mae(ctx: Context) -> Measurement:
    if ctx.run.name != "cv":
        raise NotRunError("matbench's protocol is the cross-validated run's")
    m = ctx.json("results/perovskites_cv/perovskites_matbench.json")["models"][
        "fine_tuned_ensemble"
    ]
    if "mae_ev_per_cell" not in m:
        raise NotRunError(m.get("status", "not run").removeprefix("NOT RUN: "))
    folds = m["per_fold_mae_ev_per_cell"]
    return Measurement(
        m["mae_ev_per_cell"],
        (min(folds), max(folds)),
        len(folds),
        f"{m['mae_ev_per_cell']:.4f} eV/cell over {len(folds)} folds",
    )


def run_to_run_mae_diff(ctx: Context) -> Measurement:
    if ctx.run.name != "gpu_record":
        raise NotRunError("retraining with the same seed was done for the GPU run of record")
    r = ctx.json("results/gpu/run_to_run.json")
    d = abs(float(r["test_mae_diff"]))
    return Measurement(
        d,
        None,
        r["n_test"],
        f"same seed, same card, twice: test MAE differs by {d:.1e} eV/atom, "
        f"largest prediction by {r['max_abs_prediction_diff']:.2f}",
    )


QUANTITIES: dict[str, Callable[[Context], Measurement]] = {
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
        elements_groups,
        energy_groups,
        low_energy_minus_rest,
        large_cells,
        named_worst_cases,
        triage_rows,
        flags_variance_minus_hybrid,
        domain_film_minus_baseline,
        transfer_pretrained_minus_scratch,
        zero_shot_minus_dummy,
        matbench_fine_tuned_mae,
        run_to_run_mae_diff,
    )
}
