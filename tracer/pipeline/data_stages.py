"""The data, split, graphs and dummy stages: read a stage's inputs, call the pure functions, write
its outputs (paths: :class:`tracer.pipeline.paths.Paths`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.data.sources import load_source, raw_sha256
from tracer.data.splits import (
    SET_NAMES,
    assert_leak_free,
    duplicate_groups,
    leak_report,
    load_split,
    random_group_split,
    save_split,
)
from tracer.data.table import read_table, table_sha256, write_table
from tracer.data.validation import (
    ValidationConfig,
    ValidationResult,
    enforce_quarantine_limit,
    validate,
    write_quarantine,
)
from tracer.graphs.dataset import structures_to_graphs
from tracer.models.dummy import MeanPredictor
from tracer.pipeline.paths import Paths
from tracer.pipeline.provenance import Timer, provenance, write_metrics


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

    Raises :class:`tracer.data.validation.QuarantineError` (after writing the quarantine report)
    when more than ``validation.max_quarantine_fraction`` of the records fail.
    """
    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        table = load_source(
            dataset_name,
            raw_dir=Path(root) / dataset_raw_dir,
            path=dataset_path,
            registry_path=Path(root) / "data" / "checksums.json",
            limit=dataset_limit,
        )
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

    Raises :class:`tracer.data.splits.SplitLeakError` when the finished split leaks.
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
