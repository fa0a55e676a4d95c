"""What the audit measures on the failure map, triage, flags, the domain module, transfer and
run-to-run variation (see :mod:`tracer.audit.quantities` for the conventions)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tracer.audit.rules import Measurement, NotRunError, NotTestableError
from tracer.audit.runs import Context, ci95, fmt_interval, resample_indices
from tracer.pipeline.paths import POOLED_RECORD


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
        boot = values[resample_indices(len(values), seed=k)].mean(1)
        out[str(name)] = {"mae": float(values.mean()), "ci95": list(ci95(boot)), "n": len(values)}
    return out


def _group_measurement(groups: dict[str, dict[str, Any]], claimed: str, what: str) -> Measurement:
    if claimed not in groups or not groups[claimed]["n"]:
        raise NotTestableError(f"no test structure in the group {claimed!r}")
    g = groups[claimed]
    worst = max(groups, key=lambda k: groups[k]["mae"])
    text = (
        f"{what} {claimed}: MAE {fmt_interval(g['mae'], tuple(g['ci95']), 3)} (n = {g['n']}); "
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
    idx = resample_indices(len(err))
    e, lw = err[idx], low[idx]
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample without one side: nan
        boot = (e * lw).sum(1) / lw.sum(1) - (e * ~lw).sum(1) / (~lw).sum(1)
    d = float(err[low].mean() - err[~low].mean())
    return Measurement(
        d,
        ci95(boot),
        int(low.sum()),
        f"below -2 eV/atom {err[low].mean():.3f} (n = {int(low.sum())}) vs the "
        f"rest {err[~low].mean():.3f}: difference {fmt_interval(d, ci95(boot), 3)}",
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


def pooled_film_gains(ctx: Context) -> Measurement:
    """Of the four pooled databases, how many FiLM beats the pooled model without a domain
    input on by more than twice the seed spread (``results/pooled/domains.json``)."""
    if ctx.run.name != "run_of_record":
        raise NotRunError("the four-database study was run on a GPU machine only")
    m = ctx.json(POOLED_RECORD)["multi_database"]
    gains = m["variants"]["film"]["gain_over_baseline"]
    beyond = [d for d, g in gains.items() if g["beyond_twice_seed_spread"] and g["diff"] < 0]
    parts = ", ".join(f"{d} {g['diff']:+.4f}" for d, g in gains.items())
    return Measurement(
        len(beyond),
        None,
        len(m["seeds"]),
        f"FiLM - pooled baseline per database ({len(m['seeds'])} seeds, eV/atom): {parts}; "
        f"beyond twice the seed spread on {len(beyond)} of {len(gains)}",
        {"databases": beyond},
    )


def transfer_pretrained_minus_scratch(ctx: Context) -> Measurement:
    if ctx.run.name == "cv":
        rec = ctx.json("results/perovskites_cv/perovskites_matbench.json")
        curve = rec.get("learning_curve") or []
        small = ""
        if curve:
            first = curve[0]
            gain = first["pretrained_minus_scratch_ev_per_cell"]["diff"]
            small = f"; learning curve, fold 0: {gain:+.3f} eV/cell at {first['n_train']} cells"
        full = rec.get("detail", {}).get("fine_tuned", {}).get("paired_ev_per_cell")
        if full:  # the full training folds: one fine-tuned member vs one scratch model
            d = full["fine_tuned_member0_minus_scratch"]
            ft = rec["detail"]["fine_tuned"]["mae_ev_per_cell"]
            e = full.get("fine_tuned_ensemble_minus_scratch_ensemble")
            if e is not None:  # as many scratch models as fine-tuned members, per fold
                gap = fmt_interval(e["mae"]["diff"], tuple(e["mae"]["ci95"]))
                fine, scratch = ft["fine_tuned_ensemble"]["mean"], ft["scratch_ensemble"]["mean"]
                small = (f"; ensembles alike: fine-tuned {fine:.4f} vs scratch {scratch:.4f} "
                         f"eV/cell, {gap}{small}")  # fmt: skip
            return Measurement(
                d["mae"]["diff"],
                tuple(d["mae"]["ci95"]),
                d["n"],
                f"full folds ({d['n_strata']}): fine-tuned member 0 "
                f"{ft['fine_tuned_member0']['mean']:.4f} vs scratch {ft['scratch']['mean']:.4f} "
                f"eV/cell, difference {fmt_interval(d['mae']['diff'], tuple(d['mae']['ci95']))}, "
                f"fine-tuned better in {d['wins']} of {d['n_strata']} folds{small}",
            )
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
            f"{fmt_interval(d['diff'], tuple(d['ci95']))} (full folds: not run)",
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
    if ctx.run.name != "run_of_record":
        raise NotRunError("retraining with the same seed was done for the GPU run of record")
    r = ctx.json("results/flla_full/run_to_run.json")
    d = abs(float(r["test_mae_diff"]))
    return Measurement(
        d,
        None,
        r["n_test"],
        f"same seed, same card, twice: test MAE differs by {d:.1e} eV/atom, "
        f"largest prediction by {r['max_abs_prediction_diff']:.2f}",
    )


STUDIES: dict[str, Callable[[Context], Measurement]] = {
    fn.__name__: fn
    for fn in (
        elements_groups,
        energy_groups,
        low_energy_minus_rest,
        large_cells,
        named_worst_cases,
        triage_rows,
        flags_variance_minus_hybrid,
        domain_film_minus_baseline,
        pooled_film_gains,
        transfer_pretrained_minus_scratch,
        zero_shot_minus_dummy,
        matbench_fine_tuned_mae,
        run_to_run_mae_diff,
    )
}
