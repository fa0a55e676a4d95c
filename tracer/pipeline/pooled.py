"""The four-database pooled study as training runs, on a GPU machine (no pymatgen, no DVC).

``tracer prepare-pooled`` (here) writes a folder: one structure-tensor file per database of
:data:`tracer.data.pooled.DATABASES` (``structures_<db>.pt``, eV/atom), ``split.json``
(:func:`tracer.data.pooled.pooled_split`, with the database order under ``databases``) and
``matches.csv`` (crystals in two databases). :func:`run_pooled` builds their graphs,
concatenates them in that order (so each structure's domain is its database's index) and
trains, from ``params["pooled"]``:

* ``pooled_<variant>_seed<s>``: one GemNet-T on every database with each domain variant of
  :data:`tracer.models.domain.MODES` — ``baseline`` (no domain input), ``offset`` (a learned
  number per database), ``domain_embedding``, ``film``;
* ``separate_<db>_seed<s>``: GemNet-T on one database's structures alone (with ``separate``).

Every run sees the same training and validation structures of its databases (cut to
``train_limit`` per database when set: the CPU smoke run) and is scored on the held-out test
structures (:func:`tracer.analysis.pooled.pooled_report`). Runs are resumable and can be spread
over processes or GPUs (``only``), as every study of :mod:`tracer.pipeline.studies`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from tracer.graphs.dataset import GraphDataset, load_structure_tensors
from tracer.models.domain import DomainGemNetTConfig
from tracer.models.gemnet import GemNetTConfig
from tracer.pipeline.launch import cached_graphs
from tracer.pipeline.studies import Run, domain_runs, multi_domain_split, train_runs
from tracer.training.settings import TrainConfig


def limited(split: dict[str, Any], database_of: dict[str, str], limit: int | None,
            seed: int) -> dict[str, list[str]]:  # fmt: skip
    """``split``'s train, val and test ids, each database's training ids cut to ``limit`` by a
    seeded draw (all when None): :func:`tracer.pipeline.studies.multi_domain_split` with the
    databases as its parts."""
    parts = {d: {p: [i for i in split[p] if database_of[i] == d] for p in ("train", "val", "test")}
             for d in split["databases"]}  # fmt: skip
    return multi_domain_split(parts, train_limit=dict.fromkeys(parts, limit), seed=seed)


def pooled_runs(
    gemnet: GemNetTConfig,
    train: TrainConfig,
    split: dict[str, list[str]],
    database_of: dict[str, str],
    *,
    databases: Sequence[str],
    variants: Sequence[str],
    seeds: Sequence[int],
    emb_size: int,
    separate: bool,
) -> list[Run]:
    """The runs of the study (see the module docstring); the separate models use the
    baseline's configuration with their database's part of ``split``."""
    n = len(databases)
    runs = domain_runs(gemnet, train, split, variants=variants, seeds=seeds, num_domains=n,
                       emb_size=emb_size, prefix="pooled")  # fmt: skip
    if separate:
        config = DomainGemNetTConfig(**gemnet.to_dict(), domain_mode="baseline", num_domains=n,
                                     domain_emb_size=emb_size)  # fmt: skip
        for d in databases:
            part = {p: [i for i in split[p] if database_of[i] == d]
                    for p in ("train", "val", "test")}
            runs += [Run(f"separate_{d}_seed{s}", config, train, s, part) for s in seeds]
    return runs


def load_pooled(
    folder: str | Path, gemnet: GemNetTConfig, cache_dir: str | Path, *, workers: int
) -> tuple[GraphDataset, dict[str, Any], dict[str, str]]:
    """The pooled graphs (databases concatenated in the split's ``databases`` order), the
    split and each id's database."""
    folder = Path(folder)
    split = json.loads((folder / "split.json").read_text())
    parts, database_of = [], {}
    for d in split["databases"]:
        path = folder / f"structures_{d}.pt"
        parts.append(cached_graphs(path, gemnet, cache_dir, workers=workers))
        database_of.update(dict.fromkeys(load_structure_tensors(path)["ids"], d))
    return GraphDataset.concat(parts), split, database_of


def write_offsets(out_dir: str | Path, databases: Sequence[str]) -> list[Path]:
    """For each trained ``pooled_offset_*`` model file: its per-database offsets in eV/atom
    (the learned number times the target scale) as ``<run>.offsets.json``."""
    written = []
    for path in sorted(Path(out_dir).glob("pooled_offset_seed*.pt")):
        record = torch.load(path, map_location="cpu", weights_only=False)
        scale = float(record["scaler"]["std"])
        values = record["state_dict"]["offset.weight"].reshape(-1).double() * scale
        out = path.with_suffix(".offsets.json")
        out.write_text(json.dumps(dict(zip(databases, values.tolist(), strict=True)), indent=1))
        written.append(out)
    return written


def run_pooled(
    params: dict[str, Any],
    pooled_dir: str | Path,
    out_dir: str | Path,
    *,
    device: str = "auto",
    workers: int = 1,
    only: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every run of ``params["pooled"]`` not yet finished into ``out_dir``; write the
    offset models' offsets; return the runs' summaries."""
    p = params["pooled"]
    gemnet = GemNetTConfig.from_params(params["gemnet"], params["graph"])
    data, split, database_of = load_pooled(pooled_dir, gemnet, Path(out_dir) / "graphs",
                                           workers=workers)  # fmt: skip
    train = replace(TrainConfig(**params["train"]), **p.get("train", {}))
    databases = split["databases"]
    split = limited(split, database_of, p.get("train_limit"), int(params["seed"]))
    runs = pooled_runs(gemnet, train, split, database_of, databases=databases,
                       variants=p["variants"], seeds=p["seeds"], emb_size=p["emb_size"],
                       separate=p.get("separate", True))  # fmt: skip
    summaries = train_runs(runs, data, out_dir, device=device, only=only)
    write_offsets(out_dir, databases)
    return summaries
