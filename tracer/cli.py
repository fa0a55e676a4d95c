"""The ``tracer`` command.

``tracer fetch [NAME]``        download and sha256-verify a data source into ``data/raw``
``tracer run-notebook NB``     execute a stage notebook with papermill (parameters from params.yaml)
``tracer profile [use NAME]``  show the active profile, or switch ``params.yaml`` to another one
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _cmd_fetch(args: argparse.Namespace) -> int:
    from tracer.download import ChecksumError, DataUnavailableError
    from tracer.sources import fetch_source

    name = args.name
    if name is None:
        from tracer.config import load_params

        name = load_params()["dataset"]["name"]
    try:
        path = fetch_source(name, args.raw_dir, registry_path=args.registry)
    except (DataUnavailableError, ChecksumError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path if path is not None else f"{name}: local source, nothing to fetch")
    return 0


def _cmd_run_notebook(args: argparse.Namespace) -> int:
    import yaml

    from tracer.notebook import run_notebook

    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    out = run_notebook(
        args.notebook,
        params_file=args.params,
        output_dir=args.output_dir,
        output_name=args.name,
        overrides=overrides,
    )
    print(out)
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from tracer.config import active_profile, use_profile

    if args.action == "use":
        if not args.name:
            print("error: profile use needs a NAME", file=sys.stderr)
            return 2
        try:
            use_profile(args.name, force=args.force)
        except (FileExistsError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"params.yaml now holds profile {args.name!r}")
        return 0
    name = active_profile()
    print(name if name is not None else "custom (params.yaml matches no profile)")
    return 0


def _cmd_record_gpu_studies(args: argparse.Namespace) -> int:
    import json

    from tracer.records import record_gpu_studies

    out = record_gpu_studies(args.run_dir, params_path=args.params, out_dir=args.out)
    print(json.dumps({k: v["status"] for k, v in out.items()}))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from tracer.predict import screen

    try:
        summary = screen(
            args.paths, args.output, ensemble=args.ensemble, budget=args.budget,
            threshold=args.threshold, device=args.device, force=args.force,
            progress=args.progress or sys.stderr.isatty(),
        )  # fmt: skip
    except FileExistsError as err:
        print(f"tracer predict: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0 if summary["predicted"] else 1


def _cmd_fit_domain(args: argparse.Namespace) -> int:
    import json

    from tracer.inference.domain_study import run_domain_study
    from tracer.predict import APPLICABILITY, Ensemble
    from tracer.splits import load_split
    from tracer.table import read_table

    ens = Ensemble.load(args.ensemble)
    folder = ens.members[0].parent
    target = folder / APPLICABILITY
    if target.exists() and not args.force:
        print(f"tracer fit-domain: would overwrite {target} (use --force)", file=sys.stderr)
        return 2
    ens.domain = None  # measured afresh, not with a previous fit
    split = load_split(args.split)
    domain, record = run_domain_study(ens, read_table(args.table), split,
                                      progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    domain.save(target)
    record["ensemble"] = folder.name
    record["split"] = str(args.split)
    (folder / "ood.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("flagged_fraction_test", "mae_ratio")}))
    return 0


def _cmd_make_folds(args: argparse.Namespace) -> int:
    import json

    from tracer.cross_validation import group_kfold, save_folds
    from tracer.splits import duplicate_groups, load_split
    from tracer.stages import Paths
    from tracer.table import read_table

    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"tracer make-folds: would overwrite {out} (use --force)", file=sys.stderr)
        return 2
    paths = Paths(args.dataset)
    table = read_table(paths.table)
    split = load_split(paths.split)  # the same data the seed-42 split was made from
    groups = duplicate_groups(list(table["reduced_formula"]), list(table["structure"]))
    runs = group_kfold(list(table["id"]), groups, k=args.k, seed=args.seed,
                       val_fraction=args.val_fraction)  # fmt: skip
    save_folds(out, runs, dataset=args.dataset, dataset_sha256=split["dataset_sha256"],
               table_sha256=split["table_sha256"], seed=args.seed,
               val_fraction=args.val_fraction)  # fmt: skip
    print(json.dumps({"k": args.k, "n_groups": int(groups.max()) + 1,
                      "test_sizes": [len(r["test"]) for r in runs]}))  # fmt: skip
    return 0


def _cmd_train_cv(args: argparse.Namespace) -> int:
    import json

    from tracer.config import load_params
    from tracer.cross_validation import load_folds
    from tracer.cv_launch import train_cv_members
    from tracer.launch import baseline_settings
    from tracer.models.gemnet import GemNetTConfig
    from tracer.train import TrainConfig

    params = load_params(args.params)
    folds = load_folds(args.folds)
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


def _cmd_prepare_perovskites(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from tracer.cross_validation import save_folds
    from tracer.cv_analysis import write_json
    from tracer.dataset import save_structure_tensors
    from tracer.download import sha256_file
    from tracer.perovskites import (
        MATBENCH_METHOD,
        MATBENCH_RANDOM_STATE,
        matbench_folds,
        read_perovskites_31k,
        target_ev_per_atom,
        validate_perovskites,
    )  # fmt: skip
    from tracer.provenance import provenance
    from tracer.table import table_sha256
    from tracer.validation import write_quarantine

    t0 = time.perf_counter()
    path = Path(args.path)
    result, summary = validate_perovskites(read_perovskites_31k(path))
    out = Path(args.out)
    write_quarantine(result, out / "quarantine.csv")
    cmr = result.clean[result.clean["database"] == "CMR"].reset_index(drop=True)
    data_sha = sha256_file(path if path.is_file() else path / "perovskites.csv.gz")
    folds_path = save_folds(
        args.folds, matbench_folds(list(cmr["id"])), dataset="perovskites_31k:CMR",
        dataset_sha256=data_sha, table_sha256=table_sha256(cmr),
        seed=MATBENCH_RANDOM_STATE, val_fraction=0.1, method=MATBENCH_METHOD)  # fmt: skip
    summary["dataset_sha256"] = data_sha
    summary["provenance"] = provenance(
        params={"rules": summary["rules"]}, dataset_sha256=data_sha,
        split_sha256=json.loads(folds_path.read_text())["cv_sha256"],
        wall_time_s=time.perf_counter() - t0)  # fmt: skip
    write_json(out / "data.json", summary)
    if args.structures:
        save_structure_tensors(args.structures, list(cmr["id"]), list(cmr["structure"]),
                               list(target_ev_per_atom(cmr)), "eV/atom")  # fmt: skip
    print(json.dumps({k: summary[k] for k in ("n_records", "n_clean", "quarantine_reasons")}))
    return 0


def _cmd_train_transfer_cv(args: argparse.Namespace) -> int:
    import json

    from tracer.config import load_params
    from tracer.cross_validation import load_folds
    from tracer.transfer_cv import train_transfer_cv

    folds = load_folds(args.folds)
    report = train_transfer_cv(
        structures_path=args.structures, folds=folds,
        which=args.which if args.which else range(folds["k"]), members=args.members,
        params=load_params(args.params), out_dir=args.out, parallel=args.parallel,
        workers=args.workers, curve_folds=args.curve_folds,
        scratch_members=args.scratch_members,
    )  # fmt: skip
    print(json.dumps({"wall_time_s": report["wall_time_s"], "runs": len(report["runs"])}))
    return 0


def _cmd_rescore_alignn(args: argparse.Namespace) -> int:
    from tracer.records import rescore_alignn

    print(f"ALIGNN recipe chosen on validation: {rescore_alignn(args.results)}")
    return 0


def _cmd_record_transfer_cv(args: argparse.Namespace) -> int:
    import json

    from tracer.config import load_params
    from tracer.cross_validation import load_folds
    from tracer.cv_analysis import write_json
    from tracer.provenance import provenance
    from tracer.transfer_cv import matbench_record, transfer_cv_report

    folds = load_folds(args.folds)
    report = matbench_record(
        transfer_cv_report(folds, args.run_dir, curve_folds=args.curve_folds), folds
    )
    report["provenance"] = provenance(
        params=load_params(args.params), dataset_sha256=folds["dataset_sha256"],
        split_sha256=folds["cv_sha256"], wall_time_s=0.0, device=args.device,
        extra={"dataset": folds["dataset"], "split": args.folds})  # fmt: skip
    write_json(args.out, report)
    print(
        json.dumps(
            {k: v.get("mae_ev_per_cell", v.get("status")) for k, v in report["models"].items()}
        )
    )
    return 0


def _cmd_record_cv(args: argparse.Namespace) -> int:
    import json

    from tracer.config import load_params
    from tracer.cross_validation import load_folds
    from tracer.cv_analysis import record_cv
    from tracer.table import read_table

    folds = load_folds(args.folds)
    records = record_cv(args.run_dir, folds, read_table(args.table), load_params(args.params),
                        device=args.device)  # fmt: skip
    models = records["cv_accuracy"]["models"]
    print(json.dumps({k: [v["mae"], v["mae_ci95"]] for k, v in models.items()}))
    return 0


def _cmd_lock_records(args: argparse.Namespace) -> int:
    import subprocess

    from tracer.record_lock import stale, write_lock

    status = subprocess.run(["dvc", "status", "--quiet"], capture_output=True, text=True)
    if status.returncode != 0:  # a lock written now would certify records its code did not make
        print("dvc status: stages out of date; run dvc repro first\n" + status.stdout[-2000:])
        return 1
    print(write_lock("."))
    problems = stale(".")
    for p in problems:
        print(p)
    return 1 if problems else 0


def _cmd_audit_readme(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from tracer.audit.evaluate import write_readme_block

    rows = json.loads(Path(args.checklist).read_text())
    print(write_readme_block(args.readme, rows))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from tracer.report import build_site

    print(build_site(".", args.out))
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    import json

    from tracer.config import load_params
    from tracer.launch import run_study

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


def _cmd_export_structures(args: argparse.Namespace) -> int:
    from tracer.dataset import save_structure_tensors
    from tracer.stages import Paths
    from tracer.table import read_table

    table = read_table(Paths(args.dataset).table)
    out = save_structure_tensors(
        args.out,
        list(table["id"]),
        list(table["structure"]),
        list(table["target"]),
        str(table["target_unit"].iloc[0]),
    )
    print(out)
    return 0


def _cmd_train_ensemble(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from tracer.config import load_params
    from tracer.ensemble import ensemble_predictions
    from tracer.launch import build_graphs, train_ensemble
    from tracer.models.gemnet import GemNetTConfig
    from tracer.splits import load_split
    from tracer.train import TrainConfig

    params = load_params(args.params)
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
    from tracer.dataset import GraphDataset

    frame = ensemble_predictions(
        [out / f"member_{s}.pt" for s in seeds], GraphDataset.load(graph_path), split
    )
    frame.to_parquet(out / "gemnet_t.parquet", index=False)
    print(json.dumps({str(k): round(v["best_val_mae"], 5) for k, v in result["members"].items()}))
    print(f"wall time {result['wall_time_s']:.1f} s")
    return 0


def _cmd_train_ddp(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch.distributed as dist

    from tracer.config import load_params
    from tracer.distributed import init_from_env, train_ddp
    from tracer.launch import cached_graphs
    from tracer.models.gemnet import GemNetTConfig
    from tracer.splits import load_split
    from tracer.train import TrainConfig

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


def _cmd_train_parallel(args: argparse.Namespace) -> int:
    import json

    from tracer.parallel import run_parallel

    out = run_parallel(args.targets, args.devices, force=args.force)
    print(json.dumps(out, indent=1))
    return 0


def _cmd_train_baseline(args: argparse.Namespace) -> int:
    import json

    from tracer.config import load_params
    from tracer.launch import train_baseline
    from tracer.splits import load_split

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


def _cmd_stage(args: argparse.Namespace) -> int:
    import json

    from tracer.config import load_params
    from tracer.train_stages import run_training_stage

    summary = run_training_stage(args.what, args.name, load_params(args.params))
    print(json.dumps(summary))
    return 0


def _cmd_train_alignn(args: argparse.Namespace) -> int:
    import json

    from tracer.alignn_train import RECIPES, run_alignn
    from tracer.splits import load_split

    if (args.split is None) == (args.folds is None):
        raise SystemExit("give --split, or --folds with --fold")
    if args.folds is not None:
        from tracer.cross_validation import load_folds

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


def _cmd_record_gpu_run(args: argparse.Namespace) -> int:
    import json

    from tracer.records import record_gpu_run

    out = record_gpu_run(args.run_dir, params_path=args.params, out_dir=args.out)
    print(json.dumps({k: round(v["mae"], 5) for k, v in out["accuracy"].items()}))
    print(json.dumps(out["half_precision"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download and verify a data source")
    p.add_argument("name", nargs="?", help="source name (default: dataset.name in params.yaml)")
    p.add_argument("--raw-dir", default="data/raw")
    p.add_argument(
        "--registry",
        default="data/checksums.json",
        help="checksum registry for sources without a published sha256",
    )
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("run-notebook", help="execute a stage notebook with papermill")
    p.add_argument("notebook")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--output-dir", default="notebooks/executed")
    p.add_argument("--name", help="name of the executed copy (default: the notebook's)")
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter not in params.yaml (YAML value)",
    )
    p.set_defaults(func=_cmd_run_notebook)

    p = sub.add_parser(
        "export-structures",
        help="write a dataset's structures as tensors (for a machine without pymatgen)",
    )
    p.add_argument("--dataset", default="flla")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_export_structures)

    p = sub.add_parser(
        "train-ensemble", help="build graphs, train all members and predict, without DVC"
    )
    p.add_argument("--structures", required=True, help="file from export-structures")
    p.add_argument("--split", required=True, help="split JSON")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="*")
    p.add_argument("--parallel", type=int, default=1, help="members trained concurrently")
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.set_defaults(func=_cmd_train_ensemble)

    p = sub.add_parser(
        "train-parallel",
        help="run DVC stages (the members: train) concurrently, one per device, then dvc commit",
    )
    p.add_argument("targets", nargs="+", help="DVC stages, e.g. train or train@0 train@1")
    p.add_argument("--devices", nargs="+", required=True, help="CUDA device ids, or cpu")
    p.add_argument("--force", action="store_true", help="also rerun stages up to date")
    p.set_defaults(func=_cmd_train_parallel)

    p = sub.add_parser(
        "train-ddp",
        help="train one member over several GPUs with DDP (launch with torchrun), no DVC",
    )
    p.add_argument("--structures", required=True, help="file from export-structures")
    p.add_argument("--split", required=True, help="split JSON")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.add_argument("--graphs-cache", help="graph-set folder to share (default OUT/graphs)")
    p.set_defaults(func=_cmd_train_ddp)

    p = sub.add_parser(
        "train-baseline", help="train SchNet or CGCNN (params baselines) on a split, no DVC"
    )
    p.add_argument("--model", choices=["schnet", "cgcnn"], required=True)
    p.add_argument("--structures", required=True, help="file from export-structures")
    p.add_argument("--split", required=True, help="split JSON")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.set_defaults(func=_cmd_train_baseline)

    p = sub.add_parser(
        "stage",
        help="a DVC stage without a notebook, with params.yaml's settings: graphs, dummy, one "
        "GemNet-T member (train@<seed>) or one Table 1 baseline (baseline@<model>)",
    )
    p.add_argument("what", choices=["graphs", "dummy", "member", "baseline"])
    p.add_argument("name", nargs="?", help="the member's seed, or the baseline's model name")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=_cmd_stage)

    p = sub.add_parser(
        "train-alignn", help="train the ALIGNN baseline (alignn package) on a split, no DVC"
    )
    p.add_argument("--structures", required=True, help="file from export-structures")
    p.add_argument("--split", help="split JSON")
    p.add_argument("--folds", help="cross-validation fold file (instead of --split), with --fold")
    p.add_argument("--fold", type=int, help="which fold of --folds: its train, val and test")
    p.add_argument("--recipe", choices=["defaults", "paper", "authors"], default="defaults")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.add_argument("--epochs", type=int, help="override the recipe's 300 epochs")
    p.add_argument("--graphs-cache", help="all structures' graphs in one file, shared by folds")
    p.set_defaults(func=_cmd_train_alignn)

    p = sub.add_parser(
        "study", help="run the domain or transfer study from structure tensors, no DVC"
    )
    p.add_argument("which", choices=["domain", "transfer"])
    p.add_argument("--structures", required=True, help="main dataset, file from export-structures")
    p.add_argument("--split", required=True, help="main dataset's split JSON")
    p.add_argument("--perovskites", required=True, help="folder of the perovskites stage")
    p.add_argument("--members", help="folder of member_*.pt to fine-tune (transfer)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.add_argument("--only", nargs="+", help="train just the runs matching these name patterns")
    p.set_defaults(func=_cmd_study)

    for name, what, func in (
        ("record-gpu-run", "a train-ensemble output folder", _cmd_record_gpu_run),
        ("record-gpu-studies", "a GPU run of `tracer study`", _cmd_record_gpu_studies),
    ):
        p = sub.add_parser(name, help=f"score {what} into results/gpu/")
        p.add_argument("--run-dir", required=True)
        p.add_argument("--params", default="profiles/gpu.yaml")
        p.add_argument("--out", default="results/gpu")
        p.set_defaults(func=func)

    p = sub.add_parser(
        "predict",
        help="screen structure files (CIF, POSCAR*, vasprun.xml, extxyz, pymatgen JSON, and "
        "crystal formats ASE recognises) with an ensemble",
    )
    p.add_argument("paths", nargs="+", help="files, folders or globs")
    p.add_argument("-o", "--output", required=True, help="CSV of the predictions")
    p.add_argument("--ensemble", default=None,
                   help="folder of member_*.pt (default: the shipped gpu-profile FLLA ensemble, "
                   "tracer/pretrained/flla_gemnet_t)")  # fmt: skip
    p.add_argument("--budget", type=int, help="also write the N structures most worth checking")
    p.add_argument(
        "--threshold", type=float, default=0.1,
        help="flag when the 95%% interval's half-width exceeds this (eV/atom)",
    )  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--progress", action="store_true",
                   help="progress bar on stderr even when it is not a terminal")  # fmt: skip
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "fit-domain",
        help="fit an ensemble's applicability domain on its training split and measure it "
        "(applicability.pt and ood.json beside the members; then `tracer ship` for the manifest)",
    )
    p.add_argument("--ensemble", default=None, help="members' folder (default: the shipped one)")
    p.add_argument("--table", default="data/processed/flla.parquet")
    p.add_argument("--split", default="data/splits/flla.json")
    p.add_argument("--force", action="store_true", help="replace an existing applicability.pt")
    p.set_defaults(func=_cmd_fit_domain)

    p = sub.add_parser("make-folds", help="group-aware k-fold runs of a dataset (fold file)")
    p.add_argument("--dataset", default="flla")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--out", default="data/splits/flla_cv5.json")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_cmd_make_folds)

    p = sub.add_parser(
        "train-cv", help="train the GemNet-T members of cross-validation folds, no DVC (GPU)"
    )
    p.add_argument("--structures", required=True, help="file from export-structures")
    p.add_argument("--folds", required=True, help="fold file from make-folds")
    p.add_argument("--params", default="profiles/gpu.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--which", type=int, nargs="*", help="folds to run (default: all)")
    p.add_argument(
        "--model",
        default="gemnet_t",
        choices=["gemnet_t", "schnet", "cgcnn"],
        help="GemNet-T's ensemble, or one baseline per fold (params baselines)",
    )
    p.add_argument("--parallel", type=int, default=1, help="members trained concurrently")
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.set_defaults(func=_cmd_train_cv)

    p = sub.add_parser(
        "prepare-perovskites",
        help="validate the 31k perovskite table, write its quarantine, the CMR matbench folds "
        "and the CMR structures as tensors (for a GPU machine)",
    )
    p.add_argument("--path", default="../shared/data/perovskites-31k/perovskites.csv.gz")
    p.add_argument("--out", default="results/perovskites_cv", help="quarantine and data report")
    p.add_argument("--folds", default="data/splits/perovskites_cmr_cv5.json")
    p.add_argument("--structures", help="write the clean CMR cells here (eV/atom targets)")
    p.set_defaults(func=_cmd_prepare_perovskites)

    p = sub.add_parser(
        "train-transfer-cv",
        help="zero-shot, fine-tuned and scratch runs on the CMR matbench folds, no DVC (GPU)",
    )
    p.add_argument("--structures", required=True, help="file from prepare-perovskites")
    p.add_argument("--folds", default="data/splits/perovskites_cmr_cv5.json")
    p.add_argument("--members", nargs="+", required=True, help="pre-trained member files")
    p.add_argument("--params", default="profiles/gpu.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--which", type=int, nargs="*", help="folds to run (default: all)")
    p.add_argument("--curve-folds", type=int, nargs="*", default=[0])
    p.add_argument("--scratch-members", type=int, default=1, help="scratch models per fold")
    p.add_argument("--parallel", type=int, default=1, help="runs trained concurrently")
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.set_defaults(func=_cmd_train_transfer_cv)

    p = sub.add_parser(
        "rescore-alignn",
        help="choose ALIGNN's recipe again from a results folder's kept runs (a recipe trained "
        "later: copy its alignn_<recipe>.parquet and histories/alignn_<recipe>.json into runs/)",
    )
    p.add_argument("--results", default="results/gpu")
    p.set_defaults(func=_cmd_rescore_alignn)

    p = sub.add_parser("record-transfer-cv", help="score a transfer cross-validation folder")
    p.add_argument("--run-dir", default="results/perovskites_cv/runs")
    p.add_argument("--folds", default="data/splits/perovskites_cmr_cv5.json")
    p.add_argument("--curve-folds", type=int, nargs="*", default=[0])
    p.add_argument("--params", default="profiles/gpu.yaml")
    p.add_argument("--device", required=True, help="the card the runs trained on")
    p.add_argument("--out", default="results/perovskites_cv/perovskites_matbench.json")
    p.set_defaults(func=_cmd_record_transfer_cv)

    p = sub.add_parser(
        "record-cv", help="score a cross-validation folder (out-of-fold records, cv_*.json)"
    )
    p.add_argument("--run-dir", default="results/flla_cv5")
    p.add_argument("--folds", default="data/splits/flla_cv5.json")
    p.add_argument("--table", default="data/processed/flla.parquet")
    p.add_argument("--params", default="profiles/gpu.yaml")
    p.add_argument("--device", required=True, help="the card the members trained on")
    p.set_defaults(func=_cmd_record_cv)

    p = sub.add_parser(
        "lock-records",
        help="write records.lock.json (the code and params hashes behind each record)",
    )
    p.set_defaults(func=_cmd_lock_records)

    p = sub.add_parser(
        "audit-readme", help="rewrite README's audit table from paper_figures/CHECKLIST.json"
    )
    p.add_argument("--readme", default="README.md")
    p.add_argument("--checklist", default="paper_figures/CHECKLIST.json")
    p.set_defaults(func=_cmd_audit_readme)

    p = sub.add_parser("report", help="render the run into an offline HTML site")
    p.add_argument("--out", default="docs/report")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("profile", help="show or switch the active params profile")
    p.add_argument("action", nargs="?", choices=["show", "use"], default="show")
    p.add_argument("name", nargs="?")
    p.add_argument("--force", action="store_true", help="replace a params.yaml with edits")
    p.set_defaults(func=_cmd_profile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tracer`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
