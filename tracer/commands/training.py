"""Commands that train: ensembles, cross-validation folds, studies, baselines, DDP and the DVC
training stages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch.distributed as dist

from tracer.data.folds import load_folds
from tracer.data.splits import load_split
from tracer.graphs.dataset import GraphDataset
from tracer.inference.ensemble import ensemble_predictions
from tracer.models.gemnet import GemNetTConfig
from tracer.pipeline.config import load_params, merge_settings, with_variance_head
from tracer.pipeline.cv_launch import train_cv_members
from tracer.pipeline.launch import (
    baseline_settings,
    build_graphs,
    cached_graphs,
    run_study,
    train_baseline,
    train_ensemble,
)
from tracer.pipeline.pooled import run_pooled
from tracer.pipeline.transfer_cv import train_transfer_cv
from tracer.training.alignn import RECIPES, run_alignn
from tracer.training.distributed import init_from_env, train_ddp
from tracer.training.settings import TrainConfig


def cmd_train_cv(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    folds = load_folds(args.folds)
    if args.variance_head:
        if args.model != "gemnet_t":
            raise SystemExit("tracer train-cv: --variance-head is for GemNet-T's members")
        params = with_variance_head(params)
    if args.model == "gemnet_t":
        config = GemNetTConfig.from_params(params["gemnet"], params["graph"])
        train, seeds = TrainConfig(**params["train"]), params["ensemble"]["seeds"]
    else:
        config, train, seed = baseline_settings(args.model, params["baselines"], params["train"])
        seeds = [seed]
    report = train_cv_members(
        structures_path=args.structures, folds=folds,
        which=args.which if args.which else range(folds["k"]), seeds=seeds,
        model_config=config, train_config=train, out_dir=args.out,
        parallel=args.parallel, workers=args.workers,
    )  # fmt: skip
    print(json.dumps({"wall_time_s": report["wall_time_s"], "folds": list(report["folds"])}))
    return 0


def cmd_train_transfer_cv(args: argparse.Namespace) -> int:
    folds = load_folds(args.folds)
    params = load_params(args.params)
    if args.epochs is not None:
        params = merge_settings(
            params, {"transfer": {"fine_tune": {"train": {"max_epochs": args.epochs}}}}
        )
    report = train_transfer_cv(
        structures_path=args.structures, folds=folds,
        which=args.which if args.which else range(folds["k"]), members=args.members,
        params=params, out_dir=args.out, parallel=args.parallel,
        workers=args.workers, curve_folds=args.curve_folds,
        scratch_members=args.scratch_members,
    )  # fmt: skip
    print(json.dumps({"wall_time_s": report["wall_time_s"], "runs": len(report["runs"])}))
    return 0


def cmd_train_pooled(args: argparse.Namespace) -> int:
    summaries = run_pooled(load_params(args.params), args.pooled, args.out, device=args.device,
                           workers=args.workers, only=args.only)  # fmt: skip
    print(json.dumps({k: round(v["best_val_mae"], 5) for k, v in summaries.items()}))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    run_study(
        args.which,
        params=load_params(args.params),
        structures_path=args.structures,
        split=json.loads(Path(args.split).read_text()),
        perovskites_dir=args.perovskites,
        out_dir=args.out,
        members_dir=args.members,
        workers=args.workers,
        device=args.device,
        only=args.only,
    )
    return 0


def cmd_train_ensemble(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    if args.variance_head:
        params = with_variance_head(params)
    model_config = GemNetTConfig.from_params(params["gemnet"], params["graph"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split(args.split)
    graph_path = out / "graphs.pt"
    if not graph_path.exists():
        build_graphs(args.structures, model_config, workers=args.workers).save(graph_path)
    seeds = args.seeds or params["ensemble"]["seeds"]
    result = train_ensemble(
        graph_path=graph_path,
        split=split,
        seeds=seeds,
        model_config=model_config,
        train_config=TrainConfig(**params["train"]),
        out_dir=out,
        parallel=args.parallel,
    )

    frame = ensemble_predictions(
        [out / f"member_{s}.pt" for s in seeds], GraphDataset.load(graph_path), split
    )
    frame.to_parquet(out / "gemnet_t.parquet", index=False)
    print(json.dumps({str(k): round(v["best_val_mae"], 5) for k, v in result["members"].items()}))
    print(f"wall time {result['wall_time_s']:.1f} s")
    return 0


def cmd_train_ddp(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    config = GemNetTConfig.from_params(params["gemnet"], params["graph"])
    out = Path(args.out)
    rank, world, _ = init_from_env()
    cache = Path(args.graphs_cache) if args.graphs_cache else out / "graphs"
    if rank == 0:  # one process builds the graphs, the others read them
        cached_graphs(args.structures, config, cache, workers=args.workers)
    if world > 1:
        dist.barrier()
    data = cached_graphs(args.structures, config, cache, workers=args.workers)
    train = TrainConfig(**params["train"])
    summary = train_ddp(data=data, split=load_split(args.split), seed=args.seed,
                        model_config=config, train_config=train,
                        work_dir=out / "work" / f"member_{args.seed}",
                        member_path=out / f"member_{args.seed}.pt")  # fmt: skip
    if rank == 0:
        keys = ("best_epoch", "best_val_mae", "train_time_s", "processes")
        print(json.dumps({k: summary[k] for k in keys}))
    if dist.is_initialized():  # torchrun starts a group for one process too
        dist.destroy_process_group()
    return 0


def cmd_train_baseline(args: argparse.Namespace) -> int:
    summary = train_baseline(
        args.structures,
        load_split(args.split),
        args.model,
        load_params(args.params),
        args.out,
        workers=args.workers,
    )
    print(json.dumps({k: summary[k] for k in ("best_epoch", "best_val_mae", "train_time_s")}))
    return 0


def cmd_train_alignn(args: argparse.Namespace) -> int:
    if (args.split is None) == (args.folds is None):
        raise SystemExit("give --split, or --folds with --fold")
    if args.folds is not None:

        if args.fold is None:
            raise SystemExit("--folds needs --fold")
        split = {k: list(v) for k, v in load_folds(args.folds)["folds"][args.fold].items()
                 if k in ("train", "val", "test")}  # fmt: skip
    else:
        split = load_split(args.split)
    summary = run_alignn(
        args.structures,
        split,
        RECIPES[args.recipe],
        args.out,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        epochs=args.epochs,
        on_epoch_end=lambda epoch, row: print(json.dumps(row), flush=True),
        graphs_cache=args.graphs_cache,
    )
    print(json.dumps({k: summary[k] for k in ("best_epoch", "best_val_mae", "train_time_s")}))
    return 0
