"""The predict and accuracy stages: the ensemble's and the baselines' predictions scored by one
code path (Table 1), with their figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tracer.analysis.accuracy import accuracy_table, evaluate, table1
from tracer.analysis.figures import learning_curves, parity, save_figure, save_table
from tracer.data.splits import (
    load_split,
)
from tracer.graphs.dataset import GraphDataset
from tracer.inference.ensemble import ensemble_predictions
from tracer.pipeline.config import matching_profile
from tracer.pipeline.paths import RUN_OF_RECORD, Paths
from tracer.pipeline.provenance import Timer, provenance, write_metrics


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
    record_dir: str = RUN_OF_RECORD,
) -> dict[str, Any]:
    """Score each model's test predictions, write ``metrics/accuracy.json`` and Table 1: this
    run's rows, the committed run of record's rows (same test set only) and published numbers, each
    row labelled with its source."""

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
        gpu = Path(root) / record_dir / "accuracy.json"
        if gpu.exists():  # the committed full-profile run, when it scored the same test set
            recorded = json.loads(gpu.read_text())
            if recorded["dataset"] == dataset_name and recorded["n_test"] == len(test_ids):
                source = f"committed full profile run ({record_dir}), same test set"
                parts.append(accuracy_table(recorded["models"], source))
        table = table1(parts)
        save_table(table, "table1_accuracy", paths.figures_of("accuracy"))
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
        written += save_figure(fig, f"parity_{model}", paths.figures_of("accuracy"))
        files = sorted(paths.models.glob("member_*.pt")) if ensemble else [paths.baseline(model)]
        for f in files:
            record = torch.load(f, map_location="cpu", weights_only=False)
            name = f"{model} seed {record['summary']['seed']}" if ensemble else model
            histories[name] = pd.DataFrame(record["history"])
    if histories:
        fig = learning_curves(histories, title=f"{paths.dataset}: validation MAE vs wall time")
        written += save_figure(fig, "learning_curves", paths.figures_of("accuracy"))
    return written
