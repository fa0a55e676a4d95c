"""Negative result 2 (the domain module) and the transfer to perovskites, as sets of training runs.

A study is a list of :class:`Run`\\ s — model configuration, training settings, seed, split and
optionally the weights to start from — trained by the ensemble's own trainer
(:func:`tracer.training.trainer.train_member`) into one folder: ``<name>.pt`` (the model file),
``<name>.parquet`` (validation and test predictions, eV/atom) and ``<name>.json`` (training
summary with s/epoch and peak GPU memory). Runs are resumable one by one and a finished run is
skipped while its settings are unchanged, so the same command serves the CPU pipeline and a
GPU machine. Everything here works on graph datasets (no pymatgen); the reports
(:func:`domain_report`, :func:`multi_domain_report`, :func:`transfer_report`) read the folders.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tracer.analysis.studies import domain_report, transfer_report
from tracer.graphs.dataset import GraphDataset
from tracer.inference.ensemble import ensemble_predictions
from tracer.models.domain import MODES, DomainGemNetTConfig
from tracer.models.gemnet import GemNetTConfig
from tracer.models.registry import ModelConfig, config_from_dict
from tracer.training.settings import TrainConfig
from tracer.training.trainer import pick_device, train_member


@dataclass(frozen=True)
class Run:
    """One training run of a study (``split``: ``train``, ``val`` and ``test`` ids)."""

    name: str
    model_config: ModelConfig
    train_config: TrainConfig
    seed: int
    split: dict[str, list[str]]
    init_from: str | None = None

    def identity(self) -> str:
        """Hash of everything that defines the run (the starting weights by their content)."""
        init = None
        if self.init_from is not None:
            init = hashlib.sha256(Path(self.init_from).read_bytes()).hexdigest()
        payload = {
            "kind": self.model_config.kind,
            "model": self.model_config.to_dict(),
            "train": asdict(self.train_config),
            "seed": self.seed,
            "split": self.split,
            "init": init,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train_runs(
    runs: Sequence[Run],
    data: GraphDataset,
    out_dir: str | Path,
    *,
    device: str = "auto",
    only: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every run not yet finished with the same identity (with ``only``, just the runs
    whose names match one of its shell patterns: runs of one study can then be spread over
    several processes or GPUs writing into the same folder); return the summaries by name.

    Each summary adds ``s_per_epoch`` (median epoch time, s), ``peak_mem_gib`` (GPU, else
    None), ``n_train`` and ``identity`` to the trainer's."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("run names must be unique")
    if only is not None:
        runs = [r for r in runs if any(fnmatch.fnmatchcase(r.name, pat) for pat in only)]
    summaries: dict[str, dict[str, Any]] = {}
    for run in runs:
        path = out / f"{run.name}.json"
        identity = run.identity()
        if path.exists():
            done = json.loads(path.read_text())
            if done.get("identity") == identity:
                summaries[run.name] = done
                continue
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        summary = train_member(
            data=data,
            split=run.split,
            seed=run.seed,
            model_config=run.model_config,
            train_config=run.train_config,
            work_dir=out / "work" / run.name,
            member_path=out / f"{run.name}.pt",
            device=str(dev),
            progress=False,
            init_from=run.init_from,
        )
        history = torch.load(out / f"{run.name}.pt", weights_only=False)["history"]
        summary.update(
            s_per_epoch=float(np.median([h["epoch_time_s"] for h in history])),
            peak_mem_gib=torch.cuda.max_memory_allocated(dev) / 2**30
            if dev.type == "cuda"
            else None,
            n_train=len(set(run.split["train"])),  # distinct structures (a subset may repeat)
            identity=identity,
        )
        frame = ensemble_predictions([out / f"{run.name}.pt"], data, run.split, device=str(dev))
        frame[["id", "set", "y_true"]].assign(y_pred=frame["mean"]).to_parquet(
            out / f"{run.name}.parquet", index=False
        )
        path.write_text(json.dumps(summary, indent=1) + "\n")
        summaries[run.name] = summary
    return summaries


# --------------------------------------------------------------------------------------------
# the domain module: variants on one database, and on two
# --------------------------------------------------------------------------------------------
def domain_runs(
    gemnet: GemNetTConfig,
    train: TrainConfig,
    split: dict[str, list[str]],
    *,
    variants: Sequence[str],
    seeds: Sequence[int],
    num_domains: int = 1,
    emb_size: int = 16,
    prefix: str = "domain",
) -> list[Run]:
    """GemNet-T with each domain mode (:data:`tracer.models.domain.MODES`) and seed, on one
    split: ``<prefix>_<mode>_seed<seed>``."""
    unknown = set(variants) - set(MODES)
    if unknown:
        raise ValueError(f"unknown domain variants {sorted(unknown)} (known: {MODES})")
    base = {k: v for k, v in gemnet.to_dict().items()}
    return [
        Run(
            f"{prefix}_{mode}_seed{seed}",
            DomainGemNetTConfig(
                **base, domain_mode=mode, num_domains=num_domains, domain_emb_size=emb_size
            ),
            train,
            seed,
            split,
        )
        for mode in variants
        for seed in seeds
    ]


def multi_domain_split(
    parts: dict[str, dict[str, Sequence[str]]], *, train_limit: dict[str, int | None], seed: int
) -> dict[str, list[str]]:
    """One split over several databases: each part's own train/val/test ids (its training ids
    cut to ``train_limit[part]`` by a seeded draw when given)."""
    rng = np.random.default_rng(seed)
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name, part in parts.items():
        train = list(part["train"])
        limit = train_limit.get(name)
        if limit is not None and limit < len(train):
            train = sorted(rng.choice(train, size=limit, replace=False).tolist())
        split["train"] += train
        split["val"] += list(part["val"])
        split["test"] += list(part["test"])
    return split


# --------------------------------------------------------------------------------------------
# transfer: fine-tuning the FLLA ensemble on perovskites, and the learning curve
# --------------------------------------------------------------------------------------------
def repeats_for(n_train: int, *, batch_size: int, max_epochs: int, min_steps: int) -> int:
    """How many times an epoch passes over ``n_train`` structures so that ``max_epochs`` epochs
    still give ``min_steps`` optimiser steps (1 for a large set). A small learning-curve subset
    thus gets the same step budget in a few long epochs, not in hundreds of one-step epochs each
    followed by a validation pass and a checkpoint."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    return max(1, math.ceil(min_steps / (steps_per_epoch * max_epochs)))


def transfer_runs(
    members: Sequence[str | Path],
    model_config: ModelConfig,
    train: TrainConfig,
    split: dict[str, list[str]],
    *,
    sizes: Sequence[int],
    seed: int,
    min_steps: int,
    val_size: int | None = None,
    scratch_members: int = 1,
) -> list[Run]:
    """Fine-tuning runs on a new dataset's ``split``:

    * ``finetune_all_member<k>``: every pre-trained member ``k`` on all training structures
      (the fine-tuned ensemble, seed ``seed + k``), and ``scratch_all``: the same model from
      random weights (seed ``seed``); with ``scratch_members`` > 1 also
      ``scratch_all_member<k>`` (seed ``seed + k``, k ≥ 1): an ensemble of scratch models with
      the fine-tuned members' seeds, for a like-for-like ensemble comparison;
    * the learning curve: for each size ``n`` below the training-set size, a seeded subset
      (nested: each contains the smaller ones), ``finetune_n<n>`` from member 0 and
      ``scratch_n<n>``, both with :func:`repeats_for`'s passes over the subset per epoch; their
      validation set is the first ``val_size`` validation ids (all when None)."""
    if not members:
        raise ValueError("no pre-trained members to fine-tune")
    train_ids = list(split["train"])
    runs = [
        Run(f"finetune_all_member{k}", model_config, train, seed + k, split, str(path))
        for k, path in enumerate(members)
    ]
    runs.append(Run("scratch_all", model_config, train, seed, split))
    runs += [Run(f"scratch_all_member{k}", model_config, train, seed + k, split)
             for k in range(1, scratch_members)]  # fmt: skip
    order = np.random.default_rng(seed).permutation(len(train_ids))
    val = list(split["val"])[: val_size or None]
    for n in sorted(int(s) for s in sizes):
        if n >= len(train_ids):
            continue
        repeats = repeats_for(
            n, batch_size=train.batch_size, max_epochs=train.max_epochs, min_steps=min_steps
        )
        sub = {
            "train": [train_ids[i] for i in sorted(order[:n])] * repeats,
            "val": val,
            "test": list(split["test"]),
        }
        budget = replace(train, patience=max(train.patience, train.max_epochs))
        runs.append(Run(f"finetune_n{n}", model_config, budget, seed, sub, str(members[0])))
        runs.append(Run(f"scratch_n{n}", model_config, budget, seed, sub))
    return runs


# --------------------------------------------------------------------------------------------
# the studies as the pipeline and a GPU machine run them (params sections `domain`, `transfer`)
# --------------------------------------------------------------------------------------------
def _limited_train(split: dict[str, Any], limit: int | None, seed: int) -> dict[str, list[str]]:
    return multi_domain_split({"part": split}, train_limit={"part": limit}, seed=seed)


def domain_study(
    params: dict[str, Any],
    flla: GraphDataset,
    flla_split: dict[str, Any],
    out_dir: str | Path,
    *,
    perovskites: tuple[GraphDataset, dict[str, Any]] | str,
    device: str = "auto",
    only: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Negative result 2 from ``params["domain"]``: each variant and seed on the main dataset's
    split (its training part cut to ``train_limit``), then the multi-domain check — the main
    dataset and the perovskites together, the source as the domain — unless ``perovskites`` is
    the reason it is NOT RUN. Models under ``out_dir/single`` and ``out_dir/multi``. With
    ``only`` (name patterns, :func:`train_runs`) just those runs are trained and None returned."""
    d = params["domain"]
    gemnet = GemNetTConfig.from_params(params["gemnet"], params["graph"])
    train = TrainConfig(**{**params["train"], **d.get("train", {})})
    seed = int(params["seed"])
    split = _limited_train(flla_split, d.get("train_limit"), seed)
    runs = domain_runs(
        gemnet, train, split, variants=d["variants"], seeds=d["seeds"], emb_size=d["emb_size"]
    )
    train_runs(runs, flla, Path(out_dir) / "single", device=device, only=only)
    m = d["multi_domain"]
    if not isinstance(perovskites, str):
        perov, perov_split = perovskites
        both = GraphDataset.concat([flla, perov])
        msplit = multi_domain_split(
            {"main": flla_split, "perovskites": perov_split},
            train_limit={"main": d.get("train_limit"),
                         "perovskites": m.get("perovskite_train_limit")},
            seed=seed,
        )  # fmt: skip
        multi_runs = domain_runs(
            gemnet,
            replace(train, **m.get("train", {})),
            msplit,
            variants=m["variants"],
            seeds=m["seeds"],
            num_domains=2,
            emb_size=d["emb_size"],
            prefix="multi",
        )
        train_runs(multi_runs, both, Path(out_dir) / "multi", device=device, only=only)
    if only is not None:
        return None
    report: dict[str, Any] = {
        "n_train": len(split["train"]),
        "variants": domain_report(
            Path(out_dir) / "single", variants=d["variants"], seeds=d["seeds"]
        ),
    }
    if isinstance(perovskites, str):
        report["multi_domain"] = {"status": perovskites}
        return report
    domain_of = dict(zip(both.ids, both.domain.tolist(), strict=True))
    report["multi_domain"] = {
        "status": "RUN",
        "domains": {"0": params["dataset"]["name"], "1": "perovskites"},
        "n_train": {
            "0": sum(domain_of[i] == 0 for i in msplit["train"]),
            "1": sum(domain_of[i] == 1 for i in msplit["train"]),
        },
        "variants": domain_report(
            Path(out_dir) / "multi",
            variants=m["variants"],
            seeds=m["seeds"],
            prefix="multi",
            domain_of=domain_of,
        ),
    }
    return report


def transfer_study(
    params: dict[str, Any],
    perov: GraphDataset,
    perov_split: dict[str, Any],
    members: Sequence[str | Path],
    out_dir: str | Path,
    *,
    device: str = "auto",
    only: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Fine-tuning from ``params["transfer"]["fine_tune"]``: the pre-trained members (model
    files of the main dataset) on the perovskites' training split (cut to ``train_limit``),
    from scratch beside them, and the learning curve; returns :func:`transfer_report` (None
    with ``only``: just the runs matching its name patterns are trained)."""

    f = params["transfer"]["fine_tune"]
    record = torch.load(Path(members[0]), map_location="cpu", weights_only=False)
    model_config = config_from_dict(record["kind"], record["model_config"])
    train = TrainConfig(**{**params["train"], **f.get("train", {})})
    seed = int(params["transfer"]["seed"])
    split = _limited_train(perov_split, f.get("train_limit"), seed)
    runs = transfer_runs(
        members,
        model_config,
        train,
        split,
        sizes=f["sizes"],
        seed=seed,
        min_steps=f["min_steps"],
        val_size=f.get("val_size"),
    )
    train_runs(runs, perov, out_dir, device=device, only=only)
    if only is not None:
        return None
    atoms = dict(zip(perov.ids, perov.num_atoms().tolist(), strict=True))
    return transfer_report(out_dir, runs, atoms)
