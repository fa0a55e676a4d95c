"""The run of record's stage: its committed records summarised and checked for reliability."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tracer.analysis.accuracy import accuracy_table, table1
from tracer.analysis.figures import learning_curves, parity, save_figure
from tracer.analysis.sigma_candidates import variance_head_study
from tracer.data.sources import load_source
from tracer.pipeline.analysis_stages import (
    _write_analysis,
    failures_from_predictions,
    flags_from_predictions,
    triage_from_predictions,
    uncertainty_from_predictions,
)
from tracer.pipeline.paths import RUN_OF_RECORD, RUN_OF_RECORD_FIGURES
from tracer.pipeline.provenance import Timer

# --------------------------------------------------------------------------------------------
# run_of_record: the committed full-profile run, tabulated and plotted for reading
# --------------------------------------------------------------------------------------------
# runs of the committed run of record that had a card to themselves (benchmarks/gpu_table1.sh); the
# ensemble's members and the CGCNN run shared cards under MPS, so their wall times are not compared
ALONE_ON_A_CARD = ("alignn_", "gemnet_t_alone_")


SHARED_A_HOST = {"alignn_authors": "trained beside 18 GemNet-T fine-tuning runs on its 2-GPU host"}
"""Runs whose wall times are not speed figures (another job shared their card or CPUs)."""


RECORD_DIR = RUN_OF_RECORD
"""The committed run of record: what ``tracer record-run`` wrote (this stage's inputs)."""
DERIVED_FIGURES = RUN_OF_RECORD_FIGURES
DERIVED_METRICS = "metrics/run_of_record"
"""Where the run_of_record stage writes what it derives: never into the run's own folder."""


def run_of_record_summary(
    results_dir: str | Path = RECORD_DIR, figures_dir: str | Path = DERIVED_FIGURES
) -> dict[str, Any]:
    """Table 1, members, speed, a parity plot per model and the learning curves (validation MAE
    vs wall time) of the committed run of record (figures written to ``figures_dir``; baselines'
    predictions and histories from ``runs/``, see
    :func:`tracer.pipeline.records.keep_run_records`)."""

    results_dir, figures_dir = Path(results_dir), Path(figures_dir)
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
        title=f"GemNet-T ensemble, full profile ({device})",
    )
    figures = save_figure(fig, "parity_gemnet_t", figures_dir)
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
            parity(b["y_true"], b["y_pred"], title=f"{label}, run of record"),
            f"parity_{name}",
            figures_dir,
        )
    histories = {  # wall times compare only for runs that had a card to themselves
        p.stem: pd.DataFrame(json.loads(p.read_text()))
        for p in sorted(runs.glob("histories/*.json"))
        if p.stem.startswith(ALONE_ON_A_CARD) and p.stem not in SHARED_A_HOST
    }
    if histories:
        fig = learning_curves(
            histories,
            title=f"{acc['dataset']}, run of record ({device}): validation MAE vs wall time"
        )
        figures += save_figure(fig, "learning_curves", figures_dir)
    table = table1(
        [accuracy_table(acc["models"],
                        f"full profile run, {acc['dataset']} test ({acc['n_test']})")]
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


def run_of_record_reliability(
    params: dict[str, Any],
    results_dir: str | Path = RECORD_DIR,
    root: str | Path = ".",
    *,
    figures_dir: str | Path = DERIVED_FIGURES,
    metrics_dir: str | Path = DERIVED_METRICS,
) -> dict[str, Any]:
    """The reliability analyses (uncertainty, failures, triage, flags) of the committed
    run of record's predictions, with the same code and settings as this pipeline's stages;
    metrics files go to ``metrics_dir``, tables and figures to ``figures_dir`` (never into the
    run's own folder).

    Compositions and structures come from the run's whole source (its ``accuracy.json`` names
    the dataset), not from the active profile's table, which may hold a subset (``tiny``);
    dataset and split hashes in the provenance are the run's own. When the active profile uses
    another dataset, the run's raw file is kept in ``data/gpu_raw`` (git-ignored), never in the
    active dataset's DVC-tracked raw folder."""

    root = Path(root)
    results_dir = root / results_dir
    metrics_dir = root / metrics_dir
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
    common = {"figures_dir": root / figures_dir, "params": params, "split": split}
    return {
        "uncertainty": uncertainty_from_predictions(
            predictions, metrics_path=metrics_dir / "uncertainty.json",
            settings=params["uncertainty"], title="run of record: GemNet-T ensemble σ", **common,
        ),
        "failures": failures_from_predictions(
            predictions, table, metrics_path=metrics_dir / "failures.json",
            n_worst=int(params["failures"]["n_worst"]), **common,
        ),
        "triage": triage_from_predictions(
            predictions, metrics_path=metrics_dir / "triage.json",
            settings=params["triage"], **common,
        ),
        "flags": flags_from_predictions(
            predictions, table, metrics_path=metrics_dir / "flags.json",
            settings=params["flags"], **common,
        ),
    }  # fmt: skip


VARIANCE_HEAD_RUN = "variance_head"
"""The run of record's folder for the σ study's members with a variance head (Gaussian NLL)."""


def variance_head_record(
    params: dict[str, Any],
    results_dir: str | Path = RECORD_DIR,
    root: str | Path = ".",
    *,
    metrics_dir: str | Path = DERIVED_METRICS,
    n_resamples: int = 2000,
) -> dict[str, Any]:
    """The σ study's second part (:func:`tracer.analysis.sigma_candidates.variance_head_study`):
    the committed variance-head ensemble (``<results_dir>/variance_head/``: its validation and
    test predictions, training summary and histories, trained with ``tracer train-ensemble
    --variance-head``) beside the run of record's ensemble on the same split; written to
    ``<metrics_dir>/variance_head.json`` with the members' training summary."""
    root = Path(root)
    results_dir = root / results_dir
    run = results_dir / VARIANCE_HEAD_RUN
    recorded = json.loads((results_dir / "accuracy.json").read_text())
    split = {k: recorded["provenance"][k] for k in ("dataset_sha256", "split_sha256")}
    training = json.loads((run / "training.json").read_text())
    with Timer() as timer:
        report = variance_head_study(pd.read_parquet(results_dir / "gemnet_t.parquet"),
                                     pd.read_parquet(run / "gemnet_t.parquet"),
                                     n_resamples=n_resamples)  # fmt: skip
    report["training"] = {
        "wall_time_s": training["wall_time_s"],
        "parallel": training["parallel"],
        "members": {seed: {k: m[k] for k in ("best_epoch", "best_val_mae", "epochs_run", "device")}
                    for seed, m in training["members"].items()},
    }  # fmt: skip
    _write_analysis(root / metrics_dir / "variance_head.json", run / "gemnet_t.parquet", report,
                    params, split, timer.elapsed_s)  # fmt: skip
    return report
