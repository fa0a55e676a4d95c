"""The runs the audit scores and read access to their records.

A run (:class:`RunSpec`) is one set of records: the CPU default pipeline (``metrics/``), the GPU
run of record (``results/flla_full/``), the cross-validated run (``results/flla_cv5/`` and
``results/perovskites_cv/``). Intervals are 95% percentile bootstrap intervals
(:func:`ci95`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.audit.rules import NotRunError, NotTestableError
from tracer.pipeline.config import load_params

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
    derived: str | None = None
    """Where the pipeline writes its analyses of the run's predictions (read when the run's own
    folder lacks the record)."""


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
        "run_of_record",
        "GPU run of record: FLLA, seed-42 split, profiles/full.yaml",
        "results/flla_full",
        {
            "gemnet_t": "results/flla_full/gemnet_t.parquet",
            # ALIGNN: the recipe chosen on validation
            "alignn": "results/flla_full/runs/alignn_{alignn_recipe}.parquet",
            "schnet": "results/flla_full/runs/schnet.parquet",
            "cgcnn": "results/flla_full/runs/cgcnn.parquet",
        },
        "profiles/full.yaml",
        "metrics/run_of_record",
    ),
    RunSpec(
        "cv",
        "5-fold CV: all 3,938 FLLA structures out of fold (perovskites: matbench "
        "folds), profiles/full.yaml",
        "results/flla_cv5",
        {
            "gemnet_t": "results/flla_cv5/oof_gemnet_t.parquet",
            **{m: f"results/flla_cv5/oof_{m}.parquet" for m in ("alignn", "schnet", "cgcnn")},
        },
        "profiles/full.yaml",
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
        own = f"{self.run.records}/{prefix}{name}"
        if self.run.derived and not (self.root / own).exists():
            return self.json(f"{self.run.derived}/{prefix}{name}")
        return self.json(own)

    @cached_property
    def params(self) -> dict[str, Any]:
        return load_params(self.path(self.run.params))  # a profile comes merged onto the base

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
        if "{alignn_recipe}" in rel:  # the recipe the run's accuracy record chose on validation
            chosen = self.record("accuracy.json")["models"]["alignn"]["recipe"]
            rel = rel.format(alignn_recipe=chosen)
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


def ci95(values: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap values; a statistic undefined in more than half of
    the resamples (too few structures) makes the claim NOT TESTABLE on this run."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size < 0.5 * values.size:
        raise NotTestableError("the statistic is undefined in most resamples (n too small)")
    return float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))


def resample_indices(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(N_RESAMPLES, n))


def fmt_interval(m: float, ci: tuple[float, float], digits: int = 4) -> str:
    return f"{m:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
