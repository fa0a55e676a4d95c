"""Transfer to all 18,928 CMR perovskites under matbench's protocol (5-fold cross-validation).

For each fold of :func:`tracer.data.perovskites.matbench_folds`:

* **zero-shot** — the FLLA ensemble of record applied unchanged;
* **fine-tuned** — each pre-trained member trained further on the fold's training part
  (``finetune_all_member<k>``; the mean of the five is the fine-tuned ensemble);
* **scratch** — the same architecture from random weights with the same budget (``scratch_all``,
  member 0's seed, so that member 0 fine-tuned vs scratch is a paired single-vs-single pair);
* on the folds in ``curve_folds``, the learning curve
(:func:`tracer.pipeline.studies.transfer_runs`).

Runs are :class:`tracer.pipeline.studies.Run` s trained by
:func:`tracer.pipeline.studies.train_runs` into
``<out>/fold_<f>/``, so a run cut by a time limit resumes and a finished one is skipped.
:func:`train_transfer_cv` runs on a GPU machine (no pymatgen, no DVC); :func:`transfer_cv_report`
reads the prediction files back anywhere. Errors are in eV per cell (every cell has 5 atoms;
matbench's unit) beside eV/atom.
"""

from __future__ import annotations

import faulthandler
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tracer.graphs.dataset import GraphDataset
from tracer.inference.ensemble import ensemble_predictions
from tracer.models.registry import config_from_dict
from tracer.pipeline.cv_launch import map_spawned
from tracer.pipeline.launch import build_graphs
from tracer.pipeline.studies import Run, train_runs, transfer_runs
from tracer.training.settings import TrainConfig

"""matbench_perovskites v0.1 5-fold MAE (eV per cell) of published entries, and the paper's."""


def fold_runs(
    members: Sequence[str | Path],
    model_config: Any,
    train: TrainConfig,
    folds: dict[str, Any],
    *,
    which: Sequence[int],
    seed: int,
    curve_sizes: Sequence[int],
    curve_folds: Sequence[int],
    min_steps: int,
    val_size: int | None,
    scratch_members: int = 1,
) -> list[tuple[int, Run]]:
    """Every run of the folds ``which``: (fold, run) pairs."""
    out = []
    for f in which:
        fold = folds["folds"][f]
        split = {k: list(fold[k]) for k in ("train", "val", "test")}
        sizes = list(curve_sizes) if f in curve_folds else []
        runs = transfer_runs(members, model_config, train, split, sizes=sizes, seed=seed,
                             min_steps=min_steps, val_size=val_size,
                             scratch_members=scratch_members)  # fmt: skip
        out += [(f, r) for r in runs]
    return out


def _run_job(args: tuple[str, Run, str, str]) -> dict[str, Any]:
    graph_path, run, out_dir, device = args
    dump_after = os.environ.get("TRACER_STACK_DUMP_S")
    if dump_after:  # a run that has not returned by then prints every thread's stack to stderr
        faulthandler.dump_traceback_later(float(dump_after), exit=False)
    if device.startswith("cuda"):  # a spawned process: initialise its card before any query
        torch.cuda.set_device(torch.device(device))
        torch.cuda.init()
    data = GraphDataset.load(graph_path)
    print(f"{time.strftime('%H:%M:%S')} start {out_dir} {run.name} on {device}", flush=True)
    summary = train_runs([run], data, out_dir, device=device)[run.name]
    print(f"{time.strftime('%H:%M:%S')} done {out_dir} {run.name}", flush=True)
    return summary


def transfer_settings(params: dict[str, Any], member: str | Path) -> tuple[Any, TrainConfig]:
    """The members' model configuration and the fine-tuning settings (``train`` overridden by
    ``transfer.fine_tune.train``)."""

    record = torch.load(Path(member), map_location="cpu", weights_only=False)
    model_config = config_from_dict(record["kind"], record["model_config"])
    f = params["transfer"]["fine_tune"]
    return model_config, TrainConfig(**{**params["train"], **f.get("train", {})})


def train_transfer_cv(
    *,
    structures_path: str | Path,
    folds: dict[str, Any],
    which: Sequence[int],
    members: Sequence[str | Path],
    params: dict[str, Any],
    out_dir: str | Path,
    parallel: int,
    workers: int = 1,
    curve_folds: Sequence[int] = (0,),
    scratch_members: int = 1,
) -> dict[str, Any]:
    """Zero-shot predictions of ``members`` on every structure (``zero_shot.parquet``), then
    every unfinished run of folds ``which`` (``parallel`` processes, round-robin over the GPUs;
    ``scratch_members``: models from random weights per fold,
    :func:`tracer.pipeline.studies.transfer_runs`).
    Returns the wall time and the runs' summaries."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_config, train = transfer_settings(params, members[0])
    graph_path = out / "graphs.pt"
    if not graph_path.exists():
        build_graphs(structures_path, model_config, workers=workers).save(graph_path)
    data = GraphDataset.load(graph_path)
    print(f"{time.strftime('%H:%M:%S')} graphs ready", flush=True)
    n_gpu = torch.cuda.device_count()
    zero = out / "zero_shot.parquet"
    if not zero.exists():
        frame = ensemble_predictions(members, data, {"all": list(data.ids)}, sets=("all",),
                                     device="cuda:0" if n_gpu else "cpu")  # fmt: skip
        frame.insert(3, "n_atoms", data.num_atoms().numpy())
        frame.drop(columns="set").to_parquet(zero, index=False)
    f = params["transfer"]["fine_tune"]
    runs = fold_runs(members, model_config, train, folds, which=which,
                     seed=int(params["transfer"]["seed"]), curve_sizes=f["sizes"],
                     curve_folds=curve_folds, min_steps=f["min_steps"],
                     val_size=f.get("val_size"), scratch_members=scratch_members)  # fmt: skip
    # the long runs first, so that the short learning-curve runs fill the gaps at the end
    runs.sort(key=lambda fr: len(set(fr[1].split["train"])) < len(folds["folds"][fr[0]]["train"]))
    jobs = [(str(graph_path), run, str(out / f"fold_{fold}"),
             f"cuda:{k % n_gpu}" if n_gpu else "cpu")
            for k, (fold, run) in enumerate(runs)]  # fmt: skip
    t0 = time.perf_counter()
    summaries = map_spawned(_run_job, jobs, parallel)
    return {"wall_time_s": time.perf_counter() - t0, "parallel": parallel,
            "runs": {f"fold_{fold}/{run.name}": s
                     for (fold, run), s in zip(runs, summaries, strict=True)}}  # fmt: skip


