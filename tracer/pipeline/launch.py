"""Training a whole ensemble outside DVC: members one after another or concurrently.

This is the path for a GPU machine that has torch but not DVC or papermill: it takes the structures
as tensors (:func:`tracer.graphs.dataset.save_structure_tensors`), the split JSON and a params file,
builds the graphs, trains every member (``parallel`` processes at a time, spread over the visible
GPUs round-robin), predicts the validation and test ids and writes the same member files and
prediction table that the DVC stages write. Copied back into ``models/<dataset>/`` and
``results/<dataset>/``, they are what ``dvc commit`` records.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as tmp

from tracer.graphs.dataset import GraphDataset, graphs_from_arrays, load_structure_tensors
from tracer.inference.ensemble import ensemble_predictions, member_seed
from tracer.models.gemnet import GemNetTConfig
from tracer.models.registry import ModelConfig, config_from_dict
from tracer.pipeline.studies import domain_study, transfer_study
from tracer.training.settings import TrainConfig
from tracer.training.trainer import train_member


def build_graphs(
    structures_path: str | Path, model_config: ModelConfig, *, workers: int
) -> GraphDataset:
    """Graph dataset of a structure-tensor file with the model's cutoff and neighbour cap."""
    payload = load_structure_tensors(structures_path)
    arrays = list(zip(payload["z"], payload["pos"], payload["cell"], strict=True))
    return graphs_from_arrays(
        payload["ids"],
        arrays,
        payload["targets"],
        cutoff=model_config.cutoff,
        max_neighbors=model_config.max_neighbors,
        unit=payload["unit"],
        workers=workers,
    )


def _member_job(args: tuple[str, dict[str, Any], int, dict, dict, str, str]) -> dict[str, Any]:
    graph_path, split, seed, model_cfg, train_cfg, out_dir, device = args
    data = GraphDataset.load(graph_path)
    out = Path(out_dir)
    return train_member(
        data=data,
        split=split,
        seed=seed,
        model_config=GemNetTConfig(**model_cfg),
        train_config=TrainConfig(**train_cfg),
        work_dir=out / "work" / f"member_{seed}",
        member_path=out / f"member_{seed}.pt",
        device=device,
        progress=False,
    )


def train_ensemble(
    *,
    graph_path: str | Path,
    split: dict[str, Any],
    seeds: Sequence[int],
    model_config: GemNetTConfig,
    train_config: TrainConfig,
    out_dir: str | Path,
    parallel: int = 1,
) -> dict[str, Any]:
    """Train one member per seed into ``out_dir``; ``parallel`` processes at a time.

    Returns ``{"members": {seed: summary}, "wall_time_s": float, "parallel": int}``.
    """

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_gpu = torch.cuda.device_count()
    # concurrent members go round the GPUs; one after another, they all use the first GPU (members
    # on different GPUs in one process break CUDA-graph capture: docs/performance.md § CUDA graphs)
    devices = [
        f"cuda:{i % n_gpu if parallel > 1 else 0}" if n_gpu else "cpu" for i in range(len(seeds))
    ]
    jobs = [
        (
            str(graph_path),
            {k: split[k] for k in ("train", "val")},
            int(seed),
            model_config.to_dict(),
            asdict(train_config),
            str(out_dir),
            dev,
        )
        for seed, dev in zip(seeds, devices, strict=True)
    ]
    t0 = time.perf_counter()
    if parallel > 1:

        with tmp.get_context("spawn").Pool(parallel) as pool:
            summaries = pool.map(_member_job, jobs, chunksize=1)
    else:
        summaries = [_member_job(j) for j in jobs]
    wall = time.perf_counter() - t0
    result = {
        "members": {int(s["seed"]): s for s in summaries},
        "wall_time_s": wall,
        "parallel": parallel,
    }
    (out_dir / "training.json").write_text(json.dumps(result, indent=1))
    return result


def baseline_settings(
    kind: str, baselines: dict[str, Any], train: dict[str, Any]
) -> tuple[ModelConfig, TrainConfig, int]:
    """Model configuration, training settings (``train`` overridden by ``baselines.train``) and
    seed of baseline ``kind`` from the ``baselines`` and ``train`` sections of the params."""

    if kind not in baselines["models"]:
        raise ValueError(f"{kind!r} is not among baselines.models {baselines['models']}")
    config = config_from_dict(kind, baselines[kind])
    return config, TrainConfig(**{**train, **baselines["train"]}), int(baselines["seed"])


def single_model_predictions(
    model_path: str | Path, data: GraphDataset, split: dict[str, Any], device: str = "auto"
) -> Any:
    """Validation and test predictions of one model file: id, set, y_true, y_pred (eV/atom)."""

    frame = ensemble_predictions([model_path], data, split, device=device)
    return frame[["id", "set", "y_true"]].assign(y_pred=frame["mean"])


def train_baseline(
    structures_path: str | Path,
    split: dict[str, Any],
    kind: str,
    params: dict[str, Any],
    out_dir: str | Path,
    *,
    workers: int = 1,
    device: str = "auto",
) -> dict[str, Any]:
    """Train baseline ``kind`` (``params["baselines"]``) as the ``baseline`` stage does, from a
    structure-tensor file; write ``<kind>.pt`` and ``<kind>.parquet`` (id, set, y_true, y_pred
    in eV/atom for val and test) into ``out_dir`` and return the training summary."""
    config, train_config, seed = baseline_settings(kind, params["baselines"], params["train"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_graphs(structures_path, config, workers=workers)
    summary = train_member(
        data=data,
        split=split,
        seed=seed,
        model_config=config,
        train_config=train_config,
        work_dir=out / "work" / kind,
        member_path=out / f"{kind}.pt",
        device=device,
        progress=False,
    )
    single_model_predictions(out / f"{kind}.pt", data, split, device).to_parquet(
        out / f"{kind}.parquet", index=False
    )
    return summary


def cached_graphs(
    structures_path: str | Path, model_config: ModelConfig, cache_dir: str | Path, *, workers: int
) -> GraphDataset:
    """:func:`build_graphs`, kept in ``cache_dir`` under the structure file's sha256 and the
    graph settings: processes of one study (``tracer study --only``) build each graph set once
    when one of them runs first (``tracer study ... --only none`` prepares them)."""
    digest = hashlib.sha256(Path(structures_path).read_bytes()).hexdigest()[:16]
    name = f"{digest}_{model_config.cutoff}_{model_config.max_neighbors}.pt"
    path = Path(cache_dir) / name
    if path.exists():
        return GraphDataset.load(path)
    data = build_graphs(structures_path, model_config, workers=workers)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    data.save(tmp)
    os.replace(tmp, path)
    return data


def run_study(
    which: str,
    *,
    params: dict[str, Any],
    structures_path: str | Path,
    split: dict[str, Any],
    perovskites_dir: str | Path,
    out_dir: str | Path,
    members_dir: str | Path | None = None,
    workers: int = 1,
    device: str = "auto",
    only: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Run a study of :mod:`tracer.pipeline.studies` from structure-tensor files (no pymatgen, no
    DVC),
    as the ``domain`` and ``transfer`` stages do; write ``<out>/<which>.json``.

    ``domain``: the main dataset (``structures_path`` and ``split``) with the perovskites of
    ``perovskites_dir`` (``structures.pt``, ``split.json`` of the perovskites stage).
    ``transfer``: the members of ``members_dir`` (``member_*.pt``) fine-tuned on the
    perovskites; their zero-shot test predictions go to ``<out>/zero_shot.parquet``.
    ``only``: train just the runs whose names match these patterns (no report is written), so
    that one study can be spread over several processes or GPUs."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    perov_dir = Path(perovskites_dir)
    perov_split = json.loads((perov_dir / "split.json").read_text())
    if which == "domain":
        gemnet = GemNetTConfig.from_params(params["gemnet"], params["graph"])
        flla = cached_graphs(structures_path, gemnet, out / "graphs", workers=workers)
        perov = cached_graphs(perov_dir / "structures.pt", gemnet, out / "graphs", workers=workers)
        report = domain_study(params, flla, split, out / "domain", device=device, only=only,
                              perovskites=(perov, perov_split))  # fmt: skip
    elif which == "transfer":
        if members_dir is None:
            raise ValueError("the transfer study needs --members")
        members = sorted(Path(members_dir).glob("member_*.pt"), key=member_seed)
        if not members:
            raise FileNotFoundError(f"no member_*.pt in {members_dir}")
        record = torch.load(members[0], map_location="cpu", weights_only=False)
        config = config_from_dict(record["kind"], record["model_config"])
        perov = cached_graphs(perov_dir / "structures.pt", config, out / "graphs", workers=workers)
        zero = ensemble_predictions(members, perov, perov_split, sets=("test",), device=device)
        tmp = out / f"zero_shot.{os.getpid()}.tmp"  # processes of one study share the folder
        zero.to_parquet(tmp, index=False)
        os.replace(tmp, out / "zero_shot.parquet")
        report = transfer_study(params, perov, perov_split, members, out / "transfer",
                                device=device, only=only)  # fmt: skip
    else:
        raise ValueError(f"unknown study {which!r} (domain, transfer)")
    if report is not None:
        (out / f"{which}.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
