"""The stages that train: one GemNet-T ensemble member per seed (``train@<seed>``) and one Table 1
baseline per model (``baseline@<model>``), each logged epoch by epoch with dvclive. They run from
the command line (``tracer stage``, :func:`run_training_stage`, with the graph and dummy stages
before them), not from a notebook: the report on them (``notebooks/05_training.ipynb``, stage
``training``) reads their files, so that editing the report or the audit never retrains.

They live apart from :mod:`tracer.pipeline.stages` so that the training stages can list this file
among
their dependencies in ``dvc.yaml`` (with the trainer, model and graph modules): a change to how a
training stage runs or logs retrains, a change to an analysis stage does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tracer.data.splits import load_split
from tracer.data.table import read_table
from tracer.graphs.dataset import GraphDataset, structures_to_graphs
from tracer.models.gemnet import GemNetTConfig
from tracer.pipeline.data_stages import run_dummy_stage, run_graphs_stage
from tracer.pipeline.launch import baseline_settings, single_model_predictions
from tracer.pipeline.paths import Paths
from tracer.training.settings import TrainConfig
from tracer.training.trainer import train_member


# --------------------------------------------------------------------------------------------
# train: one ensemble member per seed (resumable), logged with dvclive
# --------------------------------------------------------------------------------------------
def train_logged(
    *,
    data: Any,
    split: dict[str, Any],
    seed: int,
    model_config: Any,
    train_config: Any,
    work: Path,
    model_path: Path,
    live_dir: Path,
    device: str,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`tracer.training.trainer.train_member` with each epoch logged by dvclive into
    ``live_dir``,
    the epoch as the step; returns the summary and the per-epoch history.

    The log is opened at the first epoch the trainer reports: from epoch 0 it starts afresh
    (a new run, or a finished or different checkpoint the trainer did not resume), from a
    later epoch it continues the interrupted run's log."""
    from dvclive import Live

    live: Live | None = None

    def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
        nonlocal live
        if live is None:
            live = Live(str(live_dir), resume=epoch > 0, report=None, save_dvc_exp=False,
                        dvcyaml=None)  # fmt: skip
        live.step = epoch
        for key in ("train_loss", "val_mae", "lr", "epoch_time_s"):
            live.log_metric(key, metrics[key])
        live.next_step()

    try:
        summary = train_member(
            data=data,
            split=split,
            seed=seed,
            model_config=model_config,
            train_config=train_config,
            work_dir=work,
            member_path=model_path,
            device=device,
            progress=True,
            on_epoch_end=log_epoch,
        )
    finally:
        if live is not None:
            live.end()
    history = pd.DataFrame(json.loads((work / "history.json").read_text()))
    return summary, history


def run_train_stage(
    *,
    dataset_name: str,
    seed: int,
    gemnet: dict[str, Any],
    graph: dict[str, Any],
    train: dict[str, Any],
    device: str = "auto",
    root: str | Path = ".",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train (or resume) member ``seed``; log each epoch with dvclive; return summary + curve."""

    paths = Paths(dataset_name, Path(root))
    return train_logged(
        data=GraphDataset.load(paths.graphs),
        split=load_split(paths.split),
        seed=seed,
        model_config=GemNetTConfig.from_params(gemnet, graph),
        train_config=TrainConfig(**train),
        work=paths.member_work(seed),
        model_path=paths.member(seed),
        live_dir=paths.live(seed),
        device=device,
    )


# --------------------------------------------------------------------------------------------
# baseline: one Table 1 baseline (SchNet, CGCNN) on the ensemble's split, with its own graphs
# --------------------------------------------------------------------------------------------
def run_baseline_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    kind: str,
    baselines: dict[str, Any],
    train: dict[str, Any],
    device: str = "auto",
    root: str | Path = ".",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train baseline ``kind`` with the shared trainer (``train`` overridden by
    ``baselines.train``) on graphs built with its own cutoff and neighbour cap; write its
    model file and its validation/test predictions (``results/<dataset>/<kind>.parquet``,
    ``y_pred`` in eV/atom)."""

    config, train_config, seed = baseline_settings(kind, baselines, train)
    paths = Paths(dataset_name, Path(root))
    split = load_split(paths.split)
    table = read_table(paths.table)
    data = structures_to_graphs(
        list(table["id"]),
        list(table["structure"]),
        list(table["target"]),
        cutoff=config.cutoff,
        max_neighbors=config.max_neighbors,
        unit=str(table["target_unit"].iloc[0]),
        progress=True,
    )
    summary, history = train_logged(
        data=data,
        split=split,
        seed=seed,
        model_config=config,
        train_config=train_config,
        work=paths.baseline_work(kind),
        model_path=paths.baseline(kind),
        live_dir=paths.baseline_live(kind),
        device=device,
    )
    paths.results.mkdir(parents=True, exist_ok=True)
    single_model_predictions(paths.baseline(kind), data, split, device).to_parquet(
        paths.predictions(kind), index=False
    )
    return summary, history


STAGES = ("graphs", "dummy", "member", "baseline")
"""The stages run from the command line (``tracer stage``), each reported by ``05_training``."""


def run_training_stage(what: str, name: str | None, params: dict[str, Any]) -> dict[str, Any]:
    """One stage of :data:`STAGES` with ``params`` (``params.yaml``'s mapping): ``graphs`` (the
    graph dataset), ``dummy`` (the training-mean baseline), ``member`` (``name`` = its seed) or
    ``baseline`` (``name`` = the model); returns the stage's summary."""

    dataset = params["dataset"]["name"]
    device = params["ensemble"]["device"]
    if what == "graphs":
        return run_graphs_stage(params=params, dataset_name=dataset,
                                cutoff=params["graph"]["cutoff_angstrom"],
                                max_neighbors=params["graph"]["max_neighbors"])  # fmt: skip
    if what == "dummy":
        frame = run_dummy_stage(dataset_name=dataset)
        return {"n": len(frame), "y_pred_ev_per_atom": float(frame["y_pred"].iloc[0])}
    if name is None:
        raise ValueError(f"stage {what!r} needs a name: the member's seed or the baseline's model")
    if what == "member":
        summary, _ = run_train_stage(dataset_name=dataset, seed=int(name), gemnet=params["gemnet"],
                                     graph=params["graph"], train=params["train"],
                                     device=device)  # fmt: skip
    elif what == "baseline":
        summary, _ = run_baseline_stage(params=params, dataset_name=dataset, kind=name,
                                        baselines=params["baselines"], train=params["train"],
                                        device=device)  # fmt: skip
    else:
        raise ValueError(f"unknown stage {what!r}: one of {', '.join(STAGES)}")
    return summary
