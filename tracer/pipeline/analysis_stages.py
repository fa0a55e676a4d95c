"""The uncertainty, failures, triage and flags stages: each reads the prediction file and writes
its metrics and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tracer.analysis.failures import failure_report
from tracer.analysis.figures import (
    failure_groups,
    save_figure,
    save_table,
    triage_curves,
    uncertainty_panels,
)
from tracer.analysis.flags import flag_report
from tracer.analysis.triage import triage_report, yield_curves
from tracer.analysis.uncertainty import uncertainty_report
from tracer.data.splits import (
    load_split,
)
from tracer.data.table import read_table
from tracer.pipeline.paths import Paths
from tracer.pipeline.provenance import Timer, provenance, write_metrics


# --------------------------------------------------------------------------------------------
# uncertainty: how well the ensemble σ ranks and calibrates the test errors
# --------------------------------------------------------------------------------------------
def _write_analysis(
    metrics_path: str | Path,
    predictions: str | Path,
    report: dict[str, Any],
    params: dict[str, Any],
    split: dict[str, Any] | None,
    wall_time_s: float,
) -> None:
    """Metrics file of an analysis of an ensemble prediction table, with the split's hashes."""
    write_metrics(
        Path(metrics_path),
        {"unit": "eV/atom", "predictions": str(predictions), **report},
        provenance(
            params=params,
            dataset_sha256=split["dataset_sha256"] if split else None,
            split_sha256=split["split_sha256"] if split else None,
            wall_time_s=wall_time_s,
        ),
    )


def uncertainty_from_predictions(
    predictions: str | Path,
    *,
    metrics_path: str | Path,
    figures_dir: str | Path,
    settings: dict[str, Any],
    params: dict[str, Any],
    title: str,
    split: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`tracer.analysis.uncertainty.uncertainty_report` of an ensemble prediction table (val
    and
    test rows with ``mean``, ``std``, ``y_true``): writes the metrics file (curves included)
    and ``uncertainty.{png,pdf}`` into ``figures_dir``."""

    with Timer() as timer:
        frame = pd.read_parquet(predictions)
        sets = {name: frame[frame["set"] == name] for name in ("val", "test")}
        for name, rows in sets.items():
            if rows.empty:
                raise ValueError(f"{predictions}: no {name} rows (recalibration needs both)")
        val, test = ((r["mean"], r["std"], r["y_true"]) for r in sets.values())
        report = uncertainty_report(
            val,
            test,
            top_fraction=float(settings["top_fraction"]),
            confidence=float(settings["confidence"]),
            sigma_floor=float(settings["sigma_floor_ev_per_atom"]),
            n_bins=int(settings["n_bins"]),
        )
        save_figure(uncertainty_panels(report["curves"], title=title), "uncertainty", figures_dir)
    _write_analysis(metrics_path, predictions, report, params, split, timer.elapsed_s)
    return report


def run_uncertainty_stage(
    *, params: dict[str, Any], dataset_name: str, settings: dict[str, Any], root: str | Path = "."
) -> dict[str, Any]:
    """``metrics/uncertainty.json`` and ``paper_figures/uncertainty.{png,pdf}`` of this run's
    GemNet-T ensemble (recalibration fitted on the validation rows only)."""
    paths = Paths(dataset_name, Path(root))
    return uncertainty_from_predictions(
        paths.predictions("gemnet_t"),
        metrics_path=paths.metrics / "uncertainty.json",
        figures_dir=paths.figures_of("uncertainty"),
        settings=settings,
        params=params,
        title=f"{dataset_name} test set: GemNet-T ensemble σ",
        split=load_split(paths.split),
    )


# --------------------------------------------------------------------------------------------
# failures: where the model fails, and whether σ says so
# --------------------------------------------------------------------------------------------
def failures_from_predictions(
    predictions: str | Path,
    table: pd.DataFrame,
    *,
    metrics_path: str | Path,
    figures_dir: str | Path,
    n_worst: int,
    params: dict[str, Any],
    split: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`tracer.analysis.failures.failure_report` of an ensemble's test rows (compositions
    from the
    canonical ``table``, with structures): writes the metrics file, ``failures.{png,pdf}``,
    ``worst_predictions.{csv,md}`` and the worst structures as CIF files in
    ``figures_dir/worst_structures/``."""
    from pymatgen.core import Composition


    figures_dir = Path(figures_dir)
    with Timer() as timer:
        frame = pd.read_parquet(predictions)
        test = frame[frame["set"] == "test"][["id", "y_true", "mean", "std"]]
        by_id = table.set_index("id")
        missing = sorted(set(test["id"]) - set(by_id.index))
        if missing:
            raise KeyError(f"{len(missing)} predicted ids not in the table, e.g. {missing[0]}")
        rows = by_id.loc[test["id"]]
        test = test.assign(
            formula=rows["formula"].to_numpy(),
            n_atoms=rows["n_atoms"].to_numpy(),
            composition=[
                {str(el): float(x) for el, x in Composition(f).fractional_composition.items()}
                for f in rows["formula"]
            ],
        )
        report = failure_report(test, n_worst=n_worst)
        save_figure(failure_groups(report), "failures", figures_dir)
        save_table(pd.DataFrame(report["worst"]), "worst_predictions", figures_dir)
        cif_dir = figures_dir / "worst_structures"
        cif_dir.mkdir(parents=True, exist_ok=True)
        for stale in cif_dir.glob("*.cif"):  # this stage's own output from an earlier run
            stale.unlink()
        for w in report["worst"]:
            by_id.loc[w["id"], "structure"].to(filename=str(cif_dir / f"{w['id']}.cif"))
    _write_analysis(metrics_path, predictions, report, params, split, timer.elapsed_s)
    return report


def run_failures_stage(
    *, params: dict[str, Any], dataset_name: str, n_worst: int, root: str | Path = "."
) -> dict[str, Any]:
    """``metrics/failures.json`` and the failure figures of this run's GemNet-T ensemble."""
    paths = Paths(dataset_name, Path(root))
    return failures_from_predictions(
        paths.predictions("gemnet_t"),
        read_table(paths.table),
        metrics_path=paths.metrics / "failures.json",
        figures_dir=paths.figures_of("failures"),
        n_worst=n_worst,
        params=params,
        split=load_split(paths.split),
    )


# --------------------------------------------------------------------------------------------
# triage and flags: budgeted DFT checks, and chemistry flags added to the uncertainty rule
# --------------------------------------------------------------------------------------------
def _test_rows(frame: pd.DataFrame, predictions: str | Path) -> pd.DataFrame:
    """The test rows of an ensemble prediction table (read from ``predictions``), with
    ``abs_error``."""
    test = frame[frame["set"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"{predictions}: no test rows")
    return test.assign(abs_error=(test["mean"] - test["y_true"]).abs())


def triage_from_predictions(
    predictions: str | Path,
    *,
    metrics_path: str | Path,
    figures_dir: str | Path,
    settings: dict[str, Any],
    params: dict[str, Any],
    split: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`tracer.analysis.triage.triage_report` of an ensemble's test rows: the metrics file,
    ``triage_table.{csv,md}`` (ours beside the paper's) and ``triage.{png,pdf}``."""

    with Timer() as timer:
        frame = pd.read_parquet(predictions)
        test = _test_rows(frame, predictions)
        report = triage_report(
            test["abs_error"],
            test["std"],
            budgets=settings["budgets"],
            thresholds=settings["thresholds_ev"],
            n_trials=int(settings["n_trials"]),
            seed=int(settings["seed"]),
        )
        save_table(pd.DataFrame(report["rows"]), "triage_table", figures_dir)
        # a second held-out set of the same split: the validation rows (the ensemble never
        # trained on them, though members chose their best epoch on them), for the spread that
        # one small test set cannot show
        val = frame[frame["set"] == "val"]
        if len(val):
            report["val_rows"] = triage_report(
                (val["mean"] - val["y_true"]).abs(),
                val["std"],
                budgets=settings["budgets"],
                thresholds=settings["thresholds_ev"],
                n_trials=int(settings["n_trials"]),
                seed=int(settings["seed"]),
            )["rows"]
        curves = {t: yield_curves(test["abs_error"], test["std"], t)
                  for t in settings["thresholds_ev"]}  # fmt: skip
        save_figure(triage_curves(curves, n_test=len(test)), "triage", figures_dir)
    _write_analysis(metrics_path, predictions, report, params, split, timer.elapsed_s)
    return report


def flags_from_predictions(
    predictions: str | Path,
    table: pd.DataFrame,
    *,
    metrics_path: str | Path,
    figures_dir: str | Path,
    settings: dict[str, Any],
    params: dict[str, Any],
    split: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`tracer.analysis.flags.flag_report` of an ensemble's test rows (elements from the
    canonical ``table``'s formulas): the metrics file and ``flags_grid.{csv,md}``."""
    from pymatgen.core import Composition


    with Timer() as timer:
        test = _test_rows(pd.read_parquet(predictions), predictions)
        formulas = table.set_index("id").loc[test["id"], "formula"]
        elements = [{str(el) for el in Composition(f).elements} for f in formulas]
        report = flag_report(
            test["abs_error"],
            test["std"],
            test["mean"],
            elements,
            k_fraction=float(settings["k_fraction"]),
            degeneracy_window_ev=float(settings["degeneracy_window_ev"]),
            n_trials=int(settings["n_trials"]),
            seed=int(settings["seed"]),
        )
        save_table(pd.DataFrame(report["grid"]), "flags_grid", figures_dir)
    _write_analysis(metrics_path, predictions, report, params, split, timer.elapsed_s)
    return report


def run_triage_stage(
    *, params: dict[str, Any], dataset_name: str, settings: dict[str, Any], root: str | Path = "."
) -> dict[str, Any]:
    """``metrics/triage.json`` and the triage table and figure of this run's ensemble."""
    paths = Paths(dataset_name, Path(root))
    return triage_from_predictions(
        paths.predictions("gemnet_t"),
        metrics_path=paths.metrics / "triage.json",
        figures_dir=paths.figures_of("triage"),
        settings=settings,
        params=params,
        split=load_split(paths.split),
    )


def run_flags_stage(
    *, params: dict[str, Any], dataset_name: str, settings: dict[str, Any], root: str | Path = "."
) -> dict[str, Any]:
    """``metrics/flags.json`` and the grid table of this run's ensemble."""
    paths = Paths(dataset_name, Path(root))
    return flags_from_predictions(
        paths.predictions("gemnet_t"),
        read_table(paths.table, structures=False),
        metrics_path=paths.metrics / "flags.json",
        figures_dir=paths.figures_of("flags"),
        settings=settings,
        params=params,
        split=load_split(paths.split),
    )
