"""Training the cross-validation runs on a GPU machine (no DVC, no pymatgen): every GemNet-T
member of every requested fold at once, spread over the visible GPUs, then each finished fold's
out-of-fold predictions.

A fold is done when ``<out>/fold_<f>/predictions.parquet`` exists; a call skips done folds and
continues a member from its ``last.pt`` (:func:`tracer.training.trainer.train_member` resumes), so
a run
cut by a time limit continues where it stopped when the same folder is given again. Folds can be
run a few per call (``folds``) and their prediction files collected as they finish.

Per fold the prediction file has the fold's validation and test structures: ``id``, ``set``,
``fold``, ``y_true``, ``member_<seed>``…, ``mean``, ``std`` (eV/atom).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as tmp

from tracer.graphs.dataset import GraphDataset
from tracer.inference.ensemble import ensemble_predictions
from tracer.models.registry import ModelConfig, config_from_dict
from tracer.pipeline.launch import build_graphs
from tracer.training.settings import TrainConfig
from tracer.training.trainer import train_member


def map_spawned(fn: Callable[[Any], Any], jobs: Sequence[Any], parallel: int) -> list[Any]:
    """``[fn(job) for job in jobs]`` in ``parallel`` spawned processes (safe with CUDA; ``fn``
    at module level), serially when ``parallel`` ≤ 1 or there is one job. Each process gets an
    equal share of the CPU cores as torch threads: with torch's default of one thread per core
    each, concurrent runs oversubscribe the CPU many times over and their CPU work (batches,
    triplets) slows by minutes."""
    if parallel <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]

    n = min(parallel, len(jobs))
    threads = max(1, (os.cpu_count() or 1) // n)
    with tmp.get_context("spawn").Pool(n, initializer=torch.set_num_threads,
                                       initargs=(threads,)) as pool:  # fmt: skip
        return pool.map(fn, jobs, chunksize=1)


def _cv_job(args: tuple[str, dict[str, Any], int, str, dict, dict, str, str]) -> dict[str, Any]:
    graph_path, split, seed, kind, model_cfg, train_cfg, out_dir, device = args
    out = Path(out_dir)
    return train_member(
        data=GraphDataset.load(graph_path),
        split=split,
        seed=seed,
        model_config=config_from_dict(kind, model_cfg),
        train_config=TrainConfig(**train_cfg),
        work_dir=out / "work" / f"member_{seed}",
        member_path=out / f"member_{seed}.pt",
        device=device,
        progress=False,
    )


def train_cv_members(
    *,
    structures_path: str | Path,
    folds: dict[str, Any],
    which: Sequence[int],
    seeds: Sequence[int],
    model_config: ModelConfig,
    train_config: TrainConfig,
    out_dir: str | Path,
    parallel: int,
    workers: int = 1,
) -> dict[str, Any]:
    """Train the members of folds ``which`` of a fold file's ``folds`` (``parallel`` processes
    at a time, round-robin over the GPUs) and write each fold's predictions; returns per fold
    its members' summaries and the wall time."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graph_path = out / f"graphs_{model_config.cutoff}_{model_config.max_neighbors}.pt"
    if not graph_path.exists():
        build_graphs(structures_path, model_config, workers=workers).save(graph_path)
    todo = [f for f in which if not (out / f"fold_{f}" / "predictions.parquet").exists()]
    n_gpu = torch.cuda.device_count()
    jobs = []
    for k, (f, seed) in enumerate((f, s) for f in todo for s in seeds):
        run = folds["folds"][f]
        device = f"cuda:{k % n_gpu}" if n_gpu else "cpu"
        jobs.append((str(graph_path), {p: run[p] for p in ("train", "val")}, int(seed),
                     model_config.kind, model_config.to_dict(), asdict(train_config),
                     str(out / f"fold_{f}"), device))  # fmt: skip
    t0 = time.perf_counter()
    summaries = map_spawned(_cv_job, jobs, parallel)
    wall = time.perf_counter() - t0
    data = GraphDataset.load(graph_path)
    report: dict[str, Any] = {"wall_time_s": wall, "parallel": parallel, "folds": {}}
    for f in todo:
        fold_dir = out / f"fold_{f}"
        members = [fold_dir / f"member_{s}.pt" for s in seeds]
        frame = ensemble_predictions(members, data, folds["folds"][f])
        frame.insert(2, "fold", f)
        frame.to_parquet(fold_dir / "predictions.parquet", index=False)
        mine = [s for (job, s) in zip(jobs, summaries, strict=True) if job[6] == str(fold_dir)]
        report["folds"][str(f)] = {"members": {str(s["seed"]): s for s in mine},
                                   "split_sha256": folds["folds"][f]["split_sha256"]}  # fmt: skip
        (fold_dir / "training.json").write_text(json.dumps(report["folds"][str(f)], indent=1))
    return report
