"""Stage entry points: read a stage's inputs, call the pure functions, write its outputs.

Notebooks call one function here per stage and display what it returns; the functions are
tested directly, and end to end through ``dvc repro`` on the tiny profile. Paths follow
:class:`Paths`, one layout per dataset name. The training stages' entry points are in
:mod:`tracer.train_stages`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.accuracy import accuracy_table, evaluate, table1
from tracer.config import matching_profile
from tracer.models.dummy import MeanPredictor
from tracer.provenance import Timer, provenance, write_metrics
from tracer.sources import load_source, raw_sha256
from tracer.splits import (
    SET_NAMES,
    assert_leak_free,
    duplicate_groups,
    leak_report,
    load_split,
    random_group_split,
    save_split,
)
from tracer.table import read_table, table_sha256, write_table
from tracer.validation import (
    ValidationConfig,
    ValidationResult,
    enforce_quarantine_limit,
    validate,
    write_quarantine,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Paths:
    """File layout of one dataset's pipeline, relative to the repository root."""

    dataset: str
    root: Path = Path(".")

    @property
    def table(self) -> Path:
        return self.root / "data" / "processed" / f"{self.dataset}.parquet"

    @property
    def quarantine(self) -> Path:
        return self.root / "data" / "quarantine" / f"{self.dataset}.csv"

    @property
    def split(self) -> Path:
        return self.root / "data" / "splits" / f"{self.dataset}.json"

    @property
    def results(self) -> Path:
        return self.root / "results" / self.dataset

    def predictions(self, model: str) -> Path:
        return self.results / f"{model}.parquet"

    @property
    def graphs(self) -> Path:
        return self.root / "data" / "graphs" / f"{self.dataset}.pt"

    @property
    def models(self) -> Path:
        return self.root / "models" / self.dataset

    def member(self, seed: int) -> Path:
        return self.models / f"member_{seed}.pt"

    def member_work(self, seed: int) -> Path:
        """Resume scratch of a member (``last.pt``): kept between runs, not a DVC output."""
        return self.root / "checkpoints" / self.dataset / f"member_{seed}"

    def live(self, seed: int) -> Path:
        return self.root / "dvclive" / self.dataset / f"member_{seed}"

    def baseline(self, kind: str) -> Path:
        """Model file of a Table 1 baseline (outside ``models/<dataset>``, the ensemble's)."""
        return self.root / "models" / "baselines" / self.dataset / f"{kind}.pt"

    def baseline_work(self, kind: str) -> Path:
        return self.root / "checkpoints" / self.dataset / f"baseline_{kind}"

    def baseline_live(self, kind: str) -> Path:
        return self.root / "dvclive" / self.dataset / f"baseline_{kind}"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def figures(self) -> Path:
        return self.root / "paper_figures"


# --------------------------------------------------------------------------------------------
# data: fetch, parse, validate, write the canonical table and the quarantine report
# --------------------------------------------------------------------------------------------
def run_data_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    dataset_raw_dir: str,
    dataset_path: str | None,
    dataset_limit: int | None,
    validation: ValidationConfig,
    root: str | Path = ".",
) -> ValidationResult:
    """Load source ``dataset_name``, validate every record, write table + quarantine + metrics.

    Raises :class:`tracer.validation.QuarantineError` (after writing the quarantine report)
    when more than ``validation.max_quarantine_fraction`` of the records fail.
    """
    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        table = load_source(
            dataset_name,
            raw_dir=Path(root) / dataset_raw_dir,
            path=dataset_path,
            registry_path=Path(root) / "data" / "checksums.json",
        )
        if dataset_limit is not None:
            table = table.iloc[: int(dataset_limit)].reset_index(drop=True)
        result = validate(table, validation)
        write_quarantine(result, paths.quarantine)
        summary = result.summary()
        data_sha = raw_sha256(dataset_name, Path(root) / dataset_raw_dir, dataset_path)
        metrics = {
            "dataset": dataset_name,
            "target_unit": sorted(set(table["target_unit"])),
            "limit": dataset_limit,
            **summary,
        }
        enforce_ok = result.quarantine_fraction <= validation.max_quarantine_fraction
        metrics["quarantine_within_limit"] = enforce_ok
        if enforce_ok:
            write_table(result.clean, paths.table)
            metrics["table_sha256"] = table_sha256(result.clean)
    write_metrics(
        paths.metrics / "data.json",
        metrics,
        provenance(
            params=params, dataset_sha256=data_sha, split_sha256=None, wall_time_s=timer.elapsed_s
        ),
    )
    enforce_quarantine_limit(result, validation.max_quarantine_fraction)
    return result


# --------------------------------------------------------------------------------------------
# split: grouped random split, independent leak check, split JSON and target figure
# --------------------------------------------------------------------------------------------
def run_split_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    dataset_raw_dir: str,
    dataset_path: str | None,
    fractions: list[float],
    seed: int,
    group_duplicates: bool,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Split the processed table, prove it leak-free, write ``data/splits/<dataset>.json``.

    Raises :class:`tracer.splits.SplitLeakError` when the finished split leaks.
    """
    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        table = read_table(paths.table)
        if group_duplicates:
            groups = duplicate_groups(table["reduced_formula"], table["structure"])
            method = "random over StructureMatcher groups (same reduced formula + match)"
        else:
            groups = np.arange(len(table))
            method = "random over records"
        split = random_group_split(table["id"], groups, fractions=fractions, seed=seed)
        report = leak_report(split, table)
        assert_leak_free(report)
        data_sha = raw_sha256(dataset_name, Path(root) / dataset_raw_dir, dataset_path)
        save_split(
            paths.split,
            split,
            dataset=dataset_name,
            dataset_sha256=data_sha,
            table_sha256=table_sha256(table),
            seed=seed,
            fractions=fractions,
            method=method,
            leak=report,
        )
        doc = load_split(paths.split)
        _, counts = np.unique(groups, return_counts=True)
        n_dup_groups = int((counts > 1).sum())
        n_dup_records = int(counts[counts > 1].sum())
    metrics = {
        "dataset": dataset_name,
        "sizes": doc["sizes"],
        "n_duplicate_groups": n_dup_groups,
        "n_records_in_duplicate_groups": n_dup_records,
        "leak_free": report["leak_free"],
        "n_pairs_compared": report["n_pairs_compared"],
        "method": method,
        "seed": seed,
    }
    write_metrics(
        paths.metrics / "split.json",
        metrics,
        provenance(
            params=params,
            dataset_sha256=data_sha,
            split_sha256=doc["split_sha256"],
            wall_time_s=timer.elapsed_s,
        ),
    )
    return {"split": doc, "table": table, "metrics": metrics}


# --------------------------------------------------------------------------------------------
# graphs: periodic neighbour graphs of every structure, as tensors
# --------------------------------------------------------------------------------------------
def run_graphs_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    cutoff: float,
    max_neighbors: int | None,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Build the graph dataset (``data/graphs/<dataset>.pt``) from the processed table."""
    from tracer.dataset import structures_to_graphs

    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        table = read_table(paths.table)
        data = structures_to_graphs(
            list(table["id"]),
            list(table["structure"]),
            list(table["target"]),
            cutoff=cutoff,
            max_neighbors=max_neighbors,
            unit=str(table["target_unit"].iloc[0]),
            progress=True,
        )
        data.save(paths.graphs)
    degree = (data.num_edges().double() / data.num_atoms().double()).numpy()
    metrics = {
        "dataset": dataset_name,
        "n_structures": len(data),
        "cutoff_angstrom": cutoff,
        "max_neighbors": max_neighbors,
        "n_atoms": int(data.num_atoms().sum()),
        "n_edges": int(data.num_edges().sum()),
        "edges_per_atom_mean": float(degree.mean()),
        "edges_per_atom_max": float(degree.max()),
        "build_time_s": timer.elapsed_s,
    }
    write_metrics(
        paths.metrics / "graphs.json",
        metrics,
        provenance(
            params=params,
            dataset_sha256=raw_sha256(
                dataset_name, Path(root) / params["dataset"]["raw_dir"], params["dataset"]["path"]
            ),
            split_sha256=None,
            wall_time_s=timer.elapsed_s,
        ),
    )
    return metrics


# --------------------------------------------------------------------------------------------
# predict: ensemble predictions for validation and test ids
# --------------------------------------------------------------------------------------------
def run_predict_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    seeds: list[int],
    device: str = "auto",
    root: str | Path = ".",
) -> pd.DataFrame:
    """Write ``results/<dataset>/gemnet_t.parquet`` and ``metrics/training.json``."""
    import torch

    from tracer.dataset import GraphDataset
    from tracer.ensemble import ensemble_predictions

    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        data = GraphDataset.load(paths.graphs)
        split = load_split(paths.split)
        members = [paths.member(s) for s in seeds]
        frame = ensemble_predictions(members, data, split, device=device)
        paths.results.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(paths.predictions("gemnet_t"), index=False)
        summaries = {
            f"member_{s}": torch.load(p, map_location="cpu", weights_only=False)["summary"]
            for s, p in zip(seeds, members, strict=True)
        }
    write_metrics(
        paths.metrics / "training.json",
        {
            "dataset": dataset_name,
            "members": summaries,
            "best_val_mae_mean": float(np.mean([m["best_val_mae"] for m in summaries.values()])),
        },
        provenance(
            params=params,
            dataset_sha256=split["dataset_sha256"],
            split_sha256=split["split_sha256"],
            wall_time_s=timer.elapsed_s,
        ),
    )
    return frame


def targets_by_set(table: pd.DataFrame, split: dict[str, Any]) -> dict[str, np.ndarray]:
    """Target values of each split set, in split order."""
    by_id = table.set_index("id")["target"]
    return {name: by_id.loc[split[name]].to_numpy(dtype=float) for name in SET_NAMES}


# --------------------------------------------------------------------------------------------
# dummy: training-mean predictions on every set
# --------------------------------------------------------------------------------------------
def run_dummy_stage(*, dataset_name: str, root: str | Path = ".") -> pd.DataFrame:
    """Fit the training-mean dummy and write its predictions for every id of every set."""
    paths = Paths(dataset_name, Path(root))
    table = read_table(paths.table, structures=False)
    split = load_split(paths.split)
    y = targets_by_set(table, split)
    model = MeanPredictor().fit(y["train"])
    frame = pd.DataFrame(
        {
            "id": [i for name in SET_NAMES for i in split[name]],
            "set": [name for name in SET_NAMES for _ in split[name]],
            "y_true": np.concatenate([y[name] for name in SET_NAMES]),
        }
    )
    frame["y_pred"] = model.predict(len(frame))
    paths.results.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(paths.predictions("dummy"), index=False)
    return frame


# --------------------------------------------------------------------------------------------
# accuracy: Table 1 from every model's test predictions, one metric code path
# --------------------------------------------------------------------------------------------
def ensemble_accuracy(
    name: str, test: pd.DataFrame, *, n_resamples: int
) -> dict[str, dict[str, Any]]:
    """``<name>_ensemble`` (the mean) and ``<name>_single`` (mean ± std over members)."""
    members = [c for c in test.columns if c.startswith("member_")]
    single = {c: evaluate(test["y_true"], test[c], n_resamples=n_resamples) for c in members}
    summary: dict[str, Any] = {"n_members": len(members), "members": single}
    for key in ("mae", "rmse", "r2"):
        values = np.array([m[key] for m in single.values()])
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    lo, hi = np.mean([m["mae_ci95"] for m in single.values()], axis=0)
    summary["mae_ci95"] = [float(lo), float(hi)]
    summary["n"] = len(test)
    ensemble = evaluate(test["y_true"], test["mean"], n_resamples=n_resamples)
    ensemble["n_members"] = len(members)
    return {f"{name}_ensemble": ensemble, f"{name}_single": summary}


def run_accuracy_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    models: list[str],
    n_bootstrap: int,
    root: str | Path = ".",
    gpu_results_dir: str = "results/gpu",
) -> dict[str, Any]:
    """Score each model's test predictions, write ``metrics/accuracy.json`` and Table 1: this
    run's rows, the committed gpu run's rows (same test set only) and published numbers, each
    row labelled with its source."""
    from tracer.figures import save_table

    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        split = load_split(paths.split)
        results: dict[str, dict[str, Any]] = {}
        test_ids = list(split["test"])
        for model in models:
            frame = pd.read_parquet(paths.predictions(model))
            test = frame[frame["set"] == "test"].set_index("id").loc[test_ids]
            if "y_pred" in test:
                results[model] = evaluate(test["y_true"], test["y_pred"], n_resamples=n_bootstrap)
            else:  # an ensemble: score the mean, and every member with the same code
                results.update(ensemble_accuracy(model, test, n_resamples=n_bootstrap))
        profile = matching_profile(params, root) or "custom"
        parts = [
            accuracy_table(
                results, f"this run: {profile} profile, {dataset_name} test ({len(test_ids)})"
            )
        ]
        gpu = Path(root) / gpu_results_dir / "accuracy.json"
        if gpu.exists():  # the committed gpu-profile run, when it scored the same test set
            recorded = json.loads(gpu.read_text())
            if recorded["dataset"] == dataset_name and recorded["n_test"] == len(test_ids):
                source = f"committed gpu profile run ({gpu_results_dir}), same test set"
                parts.append(accuracy_table(recorded["models"], source))
        table = table1(parts)
        save_table(table, "table1_accuracy", paths.figures)
        figures = accuracy_figures(paths, models, test_ids)
    metrics = {
        "dataset": dataset_name,
        "profile": profile,
        "n_test": len(test_ids),
        "unit": "eV/atom",
        "models": results,
    }
    write_metrics(
        paths.metrics / "accuracy.json",
        metrics,
        provenance(
            params=params,
            dataset_sha256=split["dataset_sha256"],
            split_sha256=split["split_sha256"],
            wall_time_s=timer.elapsed_s,
        ),
    )
    return {"metrics": metrics, "table": table, "figures": figures}


def accuracy_figures(paths: Paths, models: list[str], test_ids: list[str]) -> list[Path]:
    """A test-set parity plot per trained model (``paper_figures/parity_<model>``; GemNet-T's
    ensemble mean coloured by its σ) and validation MAE against training wall time for every
    trained run (``paper_figures/learning_curves``), read from the model files' histories."""
    import torch

    from tracer.figures import learning_curves, parity, save_figure

    written: list[Path] = []
    histories: dict[str, pd.DataFrame] = {}
    for model in models:
        if model == "dummy":
            continue
        frame = pd.read_parquet(paths.predictions(model))
        test = frame[frame["set"] == "test"].set_index("id").loc[test_ids]
        ensemble = "y_pred" not in test
        pred = test["mean"] if ensemble else test["y_pred"]
        label = f"{model} (ensemble mean)" if ensemble else model
        fig = parity(test["y_true"], pred, sigma=test["std"] if ensemble else None, title=label)
        written += save_figure(fig, f"parity_{model}", paths.figures)
        files = sorted(paths.models.glob("member_*.pt")) if ensemble else [paths.baseline(model)]
        for f in files:
            record = torch.load(f, map_location="cpu", weights_only=False)
            name = f"{model} seed {record['summary']['seed']}" if ensemble else model
            histories[name] = pd.DataFrame(record["history"])
    if histories:
        fig = learning_curves(histories, title=f"{paths.dataset}: validation MAE vs wall time")
        written += save_figure(fig, "learning_curves", paths.figures)
    return written


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
    """:func:`tracer.uncertainty.uncertainty_report` of an ensemble prediction table (val and
    test rows with ``mean``, ``std``, ``y_true``): writes the metrics file (curves included)
    and ``uncertainty.{png,pdf}`` into ``figures_dir``."""
    from tracer.figures import save_figure, uncertainty_panels
    from tracer.uncertainty import uncertainty_report

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
        figures_dir=paths.figures,
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
    """:func:`tracer.failures.failure_report` of an ensemble's test rows (compositions from the
    canonical ``table``, with structures): writes the metrics file, ``failures.{png,pdf}``,
    ``worst_predictions.{csv,md}`` and the worst structures as CIF files in
    ``figures_dir/worst_structures/``."""
    from pymatgen.core import Composition

    from tracer.failures import failure_report
    from tracer.figures import failure_groups, save_figure, save_table

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
        figures_dir=paths.figures,
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
    """:func:`tracer.triage.triage_report` of an ensemble's test rows: the metrics file,
    ``triage_table.{csv,md}`` (ours beside the paper's) and ``triage.{png,pdf}``."""
    from tracer.figures import save_figure, save_table, triage_curves
    from tracer.triage import triage_report, yield_curves

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
    """:func:`tracer.flags.flag_report` of an ensemble's test rows (elements from the
    canonical ``table``'s formulas): the metrics file and ``flags_grid.{csv,md}``."""
    from pymatgen.core import Composition

    from tracer.figures import save_table
    from tracer.flags import flag_report

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
        figures_dir=paths.figures,
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
        figures_dir=paths.figures,
        settings=settings,
        params=params,
        split=load_split(paths.split),
    )


# --------------------------------------------------------------------------------------------
# gpu_results: the committed gpu-profile run, tabulated and plotted for reading
# --------------------------------------------------------------------------------------------
# runs of the committed gpu run that had a card to themselves (benchmarks/gpu_table1.sh); the
# ensemble's members and the CGCNN run shared cards under MPS, so their wall times are not compared
ALONE_ON_A_CARD = ("alignn_", "gemnet_t_alone_")
SHARED_A_HOST = {"alignn_authors": "trained beside 18 GemNet-T fine-tuning runs on its 2-GPU host"}
"""Runs whose wall times are not speed figures (another job shared their card or CPUs)."""


def gpu_results_summary(results_dir: str | Path = "results/gpu") -> dict[str, Any]:
    """Table 1, members, speed, a parity plot per model and the learning curves (validation MAE
    vs wall time) of the committed ``gpu`` run (figures written next to its files; baselines'
    predictions and histories from ``runs/``, see :func:`tracer.records.keep_run_records`)."""
    from tracer.figures import learning_curves, parity, save_figure

    results_dir = Path(results_dir)
    acc = json.loads((results_dir / "accuracy.json").read_text())
    speed = json.loads((results_dir / "speed.json").read_text())
    training = json.loads((results_dir / "training.json").read_text())
    device = acc["provenance"]["device"]
    frame = pd.read_parquet(results_dir / "gemnet_t.parquet")
    test = frame[frame["set"] == "test"]
    fig = parity(
        test["y_true"],
        test["mean"],
        sigma=test["std"],
        title=f"GemNet-T ensemble, gpu profile ({device})",
    )
    figures = save_figure(fig, "parity_gemnet_t", results_dir)
    runs = results_dir / "runs"
    chosen = acc["models"].get("alignn", {}).get("recipe")
    for path in sorted(runs.glob("*.parquet")):
        if path.stem.startswith("alignn_") and path.stem != f"alignn_{chosen}":
            continue  # the recipe not chosen on validation
        name = "alignn" if path.stem.startswith("alignn_") else path.stem
        b = pd.read_parquet(path)
        b = b[b["set"] == "test"]
        label = f"{name} ({chosen} recipe)" if name == "alignn" else name
        figures += save_figure(
            parity(b["y_true"], b["y_pred"], title=f"{label}, gpu run"),
            f"parity_{name}",
            results_dir,
        )
    histories = {  # wall times compare only for runs that had a card to themselves
        p.stem: pd.DataFrame(json.loads(p.read_text()))
        for p in sorted(runs.glob("histories/*.json"))
        if p.stem.startswith(ALONE_ON_A_CARD) and p.stem not in SHARED_A_HOST
    }
    if histories:
        fig = learning_curves(
            histories, title=f"{acc['dataset']}, gpu run ({device}): validation MAE vs wall time"
        )
        figures += save_figure(fig, "learning_curves", results_dir)
    table = table1(
        [accuracy_table(acc["models"], f"gpu profile run, {acc['dataset']} test ({acc['n_test']})")]
    )
    speed_table = pd.DataFrame(
        [
            {
                "model": name,
                "params": m["params"],
                "batch": m["batch_size"],
                "s/epoch": m["s_per_epoch"],
                "train structures/s": m["train_structures_per_s"],
                "infer structures/s": m["infer_structures_per_s"],
                "peak GiB": m["peak_mem_gib"],
                "s to ALIGNN's best val MAE": m.get("time_to_alignn_best_val_s"),
            }
            for name, m in speed["models"].items()
        ]
    )
    members = pd.DataFrame(training["members"].values())
    return {
        "accuracy": table,
        "figures": figures,
        "speed": speed_table,
        "speed_device": speed["device"],
        "members": members,
        "test": test,
    }


def gpu_reliability(
    params: dict[str, Any],
    results_dir: str | Path = "results/gpu",
    root: str | Path = ".",
) -> dict[str, Any]:
    """The reliability analyses (uncertainty, failures, triage, flags) of the committed
    ``gpu`` run's predictions, with the same code and settings as this pipeline's stages;
    metrics files, tables and figures are written next to the run's files.

    Compositions and structures come from the run's whole source (its ``accuracy.json`` names
    the dataset), not from the active profile's table, which may hold a subset (``tiny``);
    dataset and split hashes in the provenance are the run's own. When the active profile uses
    another dataset, the run's raw file is kept in ``data/gpu_raw`` (git-ignored), never in the
    active dataset's DVC-tracked raw folder."""
    from tracer.sources import load_source

    root = Path(root)
    results_dir = root / results_dir
    recorded = json.loads((results_dir / "accuracy.json").read_text())
    same = recorded["dataset"] == params["dataset"]["name"]
    source = load_source(
        recorded["dataset"],
        raw_dir=root / params["dataset"]["raw_dir"] if same else root / "data" / "gpu_raw",
        path=params["dataset"]["path"],
        registry_path=root / "data" / "checksums.json",
    )
    table = source.assign(n_atoms=[len(s) if s is not None else 0 for s in source["structure"]])
    predictions = results_dir / "gemnet_t.parquet"
    ids = set(pd.read_parquet(predictions, columns=["id"])["id"])
    unparsed = table[table["id"].isin(ids) & table["structure"].isna()]
    if len(unparsed):
        raise ValueError(f"predicted id {unparsed['id'].iloc[0]!r} has no parsed structure")
    split = {k: recorded["provenance"][k] for k in ("dataset_sha256", "split_sha256")}
    common = {"figures_dir": results_dir, "params": params, "split": split}
    return {
        "uncertainty": uncertainty_from_predictions(
            predictions, metrics_path=results_dir / "uncertainty.json",
            settings=params["uncertainty"], title="gpu run: GemNet-T ensemble σ", **common,
        ),
        "failures": failures_from_predictions(
            predictions, table, metrics_path=results_dir / "failures.json",
            n_worst=int(params["failures"]["n_worst"]), **common,
        ),
        "triage": triage_from_predictions(
            predictions, metrics_path=results_dir / "triage.json",
            settings=params["triage"], **common,
        ),
        "flags": flags_from_predictions(
            predictions, table, metrics_path=results_dir / "flags.json",
            settings=params["flags"], **common,
        ),
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# transfer to perovskites (zero-shot, fine-tuning) and the domain module (negative result 2)
# --------------------------------------------------------------------------------------------


PEROVSKITES = "perovskites"  # the perovskite set's name in the file layout (Paths)


def run_perovskites_stage(
    *,
    params: dict[str, Any],
    transfer: dict[str, Any],
    validation: ValidationConfig,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Read the perovskite source (``transfer.source``; ``castelli_local`` by ``transfer.path``),
    validate and quarantine its records like the main data, check the declared unit against
    the values, split it (seeded, ``transfer.fractions``) and write, for machines without
    pymatgen, ``data/processed/perovskites/``: ``structures.pt`` (targets in eV/atom),
    ``split.json``, ``targets.parquet`` (id, target as given, its unit, atoms, eV/atom) and
    ``status.json`` (``RUN`` or ``NOT RUN: reason`` when the source cannot be read)."""
    from tracer.dataset import save_structure_tensors
    from tracer.download import DataUnavailableError
    from tracer.sources import EV_PER_ATOM
    from tracer.splits import random_group_split
    from tracer.transfer import to_ev_per_atom, unit_check

    out_dir = Path(root) / "data" / "processed" / PEROVSKITES
    out_dir.mkdir(parents=True, exist_ok=True)
    source = transfer["source"]
    status: dict[str, Any] = {"dataset": source}
    try:
        src_path = transfer.get("path")
        table = load_source(
            source,
            raw_dir=Path(root) / params["dataset"]["raw_dir"],
            path=None if src_path is None else Path(root) / src_path,
            registry_path=Path(root) / "data" / "checksums.json",
        )
    except (FileNotFoundError, DataUnavailableError) as err:  # no folder, no network
        status["status"] = f"NOT RUN: {err}"
        (out_dir / "status.json").write_text(json.dumps(status, indent=1) + "\n")
        return status
    result = validate(table, validation)
    clean = result.clean
    if len(result.quarantine):
        result.quarantine.to_csv(out_dir / "quarantine.csv", index=False)
    units = sorted(set(clean["target_unit"]))
    if len(units) != 1:
        raise ValueError(f"{source}: mixed target units {units}")
    n_atoms = clean["n_atoms"].to_numpy()
    y = to_ev_per_atom(clean["target"].to_numpy(), units[0], n_atoms)
    split = random_group_split(
        list(clean["id"]), np.arange(len(clean)), fractions=transfer["fractions"],
        seed=int(transfer["seed"]),
    )  # fmt: skip
    save_structure_tensors(out_dir / "structures.pt", list(clean["id"]),
                           list(clean["structure"]), list(y), EV_PER_ATOM)  # fmt: skip
    (out_dir / "split.json").write_text(json.dumps(split) + "\n")
    pd.DataFrame({"id": clean["id"], "target": clean["target"], "unit": units[0],
                  "n_atoms": n_atoms, "target_ev_per_atom": y}).to_parquet(
        out_dir / "targets.parquet", index=False)  # fmt: skip
    status.update(
        status="RUN",
        source_sha256=raw_sha256(
            source,
            Path(root) / params["dataset"]["raw_dir"],
            None if src_path is None else Path(root) / src_path,
        ),
        n_records=len(table),
        n_quarantined=len(table) - len(clean),
        unit=units[0],
        unit_check=unit_check(units[0], clean["target"].to_numpy(), n_atoms),
        split_sizes={k: len(v) for k, v in split.items()},
        split_seed=int(transfer["seed"]),
    )
    (out_dir / "status.json").write_text(json.dumps(status, indent=1) + "\n")
    return status


def perovskite_graphs(
    root: str | Path, cutoff: float, max_neighbors: int | None, *, workers: int = 1
) -> tuple[Any, dict[str, Any], pd.DataFrame] | str:
    """The perovskites stage's structures as a graph dataset (eV/atom), its split and targets
    table; or the stage's ``NOT RUN`` reason."""
    from tracer.dataset import graphs_from_arrays, load_structure_tensors

    where = Path(root) / "data" / "processed" / PEROVSKITES
    status = json.loads((where / "status.json").read_text())
    if status["status"] != "RUN":
        return str(status["status"])
    payload = load_structure_tensors(where / "structures.pt")
    arrays = list(zip(payload["z"], payload["pos"], payload["cell"], strict=True))
    data = graphs_from_arrays(payload["ids"], arrays, payload["targets"], cutoff=cutoff,
                              max_neighbors=max_neighbors, unit=payload["unit"],
                              workers=workers)  # fmt: skip
    split = json.loads((where / "split.json").read_text())
    return data, split, pd.read_parquet(where / "targets.parquet").set_index("id")


def run_transfer_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    transfer: dict[str, Any],
    device: str = "auto",
    root: str | Path = ".",
) -> dict[str, Any]:
    """Transfer of this run's ensemble to the perovskites (from the perovskites stage): the unit
    checked against the data and the model, zero-shot test errors in eV/atom and eV/cell with
    the σ shift against the in-domain test σ, then fine-tuning (``transfer.fine_tune``: every
    member, one model from scratch, and the learning curve; models in ``models/transfer``).
    Writes ``metrics/transfer.json`` and ``paper_figures/transfer_{zero_shot,fine_tuned,
    learning_curve}``; NOT RUN (with the reason) in both when the source could not be read."""
    import matplotlib.pyplot as plt
    import torch

    from tracer.ensemble import predict_members
    from tracer.figures import parity, save_figure, transfer_learning_curve
    from tracer.studies import transfer_study
    from tracer.transfer import unit_check, zero_shot_summary

    paths = Paths(dataset_name, Path(root))
    out: dict[str, Any] = {"dataset": transfer["source"]}
    with Timer() as timer:
        members = sorted(paths.models.glob("member_*.pt"))
        graph = torch.load(members[0], map_location="cpu", weights_only=False)["graph"]
        got = perovskite_graphs(root, graph["cutoff"], graph["max_neighbors"])
        if isinstance(got, str):
            out.update(status=got, unit_check=None, zero_shot=None, fine_tuned=got,
                       learning_curve=got)  # fmt: skip
            models = Path(root) / "models" / "transfer"  # the stage's output says why it is empty
            models.mkdir(parents=True, exist_ok=True)
            (models / "NOT_RUN.txt").write_text(got + "\n")
            for name in ("transfer_zero_shot", "transfer_fine_tuned", "transfer_learning_curve"):
                fig, ax = plt.subplots(figsize=(4.2, 1.2))
                ax.axis("off")
                ax.text(0, 0.5, f"transfer {got}"[:300], va="center", wrap=True)
                save_figure(fig, name, paths.figures)
        else:
            data, split, targets = got
            status = json.loads(
                (Path(root) / "data" / "processed" / PEROVSKITES / "status.json").read_text()
            )
            test_ids = list(split["test"])
            pred = predict_members(members, data, data.index_of(test_ids), device=device)
            t = targets.loc[test_ids]
            n_atoms = t["n_atoms"].to_numpy()
            y = t["target_ev_per_atom"].to_numpy()
            in_domain = pd.read_parquet(paths.predictions("gemnet_t"))
            study = transfer_study(params, data, split, members,
                                   Path(root) / "models" / "transfer", device=device)  # fmt: skip
            out.update(
                status="RUN",
                **{k: status[k] for k in ("n_records", "n_quarantined", "split_sizes",
                                          "split_seed")},
                unit_check=unit_check(status["unit"], t["target"].to_numpy(), n_atoms,
                                      prediction_ev_per_atom=pred["mean"].to_numpy()),
                zero_shot=zero_shot_summary(
                    y, pred["mean"], pred["std"], n_atoms,
                    in_domain.loc[in_domain["set"] == "test", "std"],
                ),
                **study,
            )  # fmt: skip
            where = f"{transfer['source']} test split (eV/atom)"
            fig = parity(y, pred["mean"], sigma=pred["std"], title=f"zero-shot on {where}")
            save_figure(fig, "transfer_zero_shot", paths.figures)
            fine = _fine_tuned_test(Path(root) / "models" / "transfer", test_ids)
            fig = parity(fine["y_true"], fine["mean"], sigma=fine["std"],
                         title=f"fine-tuned ensemble on {where}")  # fmt: skip
            save_figure(fig, "transfer_fine_tuned", paths.figures)
            save_figure(transfer_learning_curve(study["learning_curve"]),
                        "transfer_learning_curve", paths.figures)  # fmt: skip
    write_metrics(
        paths.metrics / "transfer.json",
        out,
        provenance(params=params, dataset_sha256=_perovskite_source_sha(root), split_sha256=None,
                   wall_time_s=timer.elapsed_s),
    )  # fmt: skip
    return out


def _perovskite_source_sha(root: str | Path) -> str | None:
    """sha256 of the perovskite source the perovskites stage read (None when it did not)."""
    status = Path(root) / "data" / "processed" / PEROVSKITES / "status.json"
    return json.loads(status.read_text()).get("source_sha256") if status.exists() else None


def _fine_tuned_test(folder: Path, test_ids: list[str]) -> pd.DataFrame:
    """Test predictions of the fine-tuned members (``finetune_all_member*``): y_true, the
    ensemble mean and σ (ddof 0), eV/atom."""
    files = sorted(folder.glob("finetune_all_member*.parquet"))
    frames = [pd.read_parquet(p).set_index("id") for p in files]
    preds = pd.concat([f.loc[test_ids, "y_pred"] for f in frames], axis=1)
    return pd.DataFrame({"y_true": frames[0].loc[test_ids, "y_true"],
                         "mean": preds.mean(axis=1), "std": preds.std(axis=1, ddof=0)})  # fmt: skip


def run_domain_stage(
    *, params: dict[str, Any], dataset_name: str, device: str = "auto", root: str | Path = "."
) -> dict[str, Any]:
    """Negative result 2 (``params["domain"]``, :func:`tracer.studies.domain_study`): GemNet-T
    with each domain variant on this dataset's split, then on it and the perovskites together
    (source = domain; NOT RUN with the reason when the perovskites could not be read). Writes
    ``metrics/domain.json`` and ``paper_figures/domain_variants``; models in ``models/domain``."""
    from tracer.dataset import GraphDataset
    from tracer.figures import domain_variants, save_figure
    from tracer.studies import domain_study

    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        split = load_split(paths.split)
        flla = GraphDataset.load(paths.graphs)
        perov = perovskite_graphs(root, flla.cutoff, flla.max_neighbors)
        perovskites = perov if isinstance(perov, str) else perov[:2]
        report = domain_study(params, flla, split, Path(root) / "models" / "domain",
                              perovskites=perovskites, device=device)  # fmt: skip
        save_figure(domain_variants(report), "domain_variants", paths.figures)
    out = {"dataset": dataset_name, "unit": "eV/atom", **report}
    write_metrics(
        paths.metrics / "domain.json",
        out,
        provenance(params=params, dataset_sha256=split["dataset_sha256"],
                   split_sha256=split["split_sha256"], wall_time_s=timer.elapsed_s),
    )  # fmt: skip
    return out
