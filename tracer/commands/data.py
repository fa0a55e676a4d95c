"""Commands on data, settings and users' structures: fetch, profiles, folds, the perovskite
table, screening and the applicability domain."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tracer.analysis.cross_validation import write_json
from tracer.data.download import ChecksumError, DataUnavailableError, sha256_file
from tracer.data.folds import group_kfold, load_folds, save_folds
from tracer.data.perovskites import (
    MATBENCH_METHOD,
    MATBENCH_RANDOM_STATE,
    matbench_folds,
    read_perovskites_31k,
    target_ev_per_atom,
    validate_perovskites,
)
from tracer.data.pooled import DATABASES, cross_database_matches, pooled_split, pooled_table
from tracer.data.sources import fetch_source
from tracer.data.splits import duplicate_groups, load_split
from tracer.data.table import read_table, table_sha256
from tracer.data.validation import write_quarantine
from tracer.graphs.dataset import save_structure_tensors
from tracer.inference.domain_study import run_domain_study, weak_kinds
from tracer.inference.predict import APPLICABILITY, Ensemble
from tracer.inference.screening import screen
from tracer.pipeline.config import active_profile, load_params, use_profile
from tracer.pipeline.paths import Paths
from tracer.pipeline.provenance import provenance


def cmd_fetch(args: argparse.Namespace) -> int:
    name = args.name
    if name is None:
        name = load_params()["dataset"]["name"]
    try:
        path = fetch_source(name, args.raw_dir, registry_path=args.registry)
    except (DataUnavailableError, ChecksumError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path if path is not None else f"{name}: local source, nothing to fetch")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
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


def cmd_predict(args: argparse.Namespace) -> int:
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


def domain_split(split_path: str | Path, folds_path: str | Path,
                 fold: int | None) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The split a domain is fitted on and how ``ood.json`` names it: the split file, or run
    ``fold`` of a fold file (then the members must be that fold's)."""
    if fold is None:
        return load_split(split_path), {"split": str(split_path)}
    runs = load_folds(folds_path)["folds"]
    if not 0 <= fold < len(runs):
        raise ValueError(f"fold {fold} is not in {folds_path} ({len(runs)} folds)")
    return runs[fold], {"split": str(folds_path), "fold": fold}


def cmd_fit_domain(args: argparse.Namespace) -> int:
    ens = Ensemble.load(args.ensemble, domain=False)  # measured afresh, not with a previous fit
    folder = ens.members[0].parent
    target = folder / APPLICABILITY
    if target.exists() and not args.force:
        print(f"tracer fit-domain: would overwrite {target} (use --force)", file=sys.stderr)
        return 2
    split, where = domain_split(args.split, args.folds, args.fold)
    domain, record = run_domain_study(ens, read_table(args.table), split, design=args.design,
                                      max_val_flagged=args.max_val_flagged,
                                      progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    record["ensemble"] = folder.name
    record.update(where, split_sha256=split["split_sha256"])
    weak = weak_kinds(record)
    if weak:
        shares = ", ".join(f"{share:.1%} of {kind}" for kind, share in weak.items())
        need = f"{record['min_detection_val_to_accept']:.1%}"
        if not args.accept_weak:
            print(f"tracer fit-domain: refused: on validation this domain flags only {shares} "
                  f"shifted copies (an accepted fit flags at least {need} of each kind); "
                  f"nothing written to {folder} (docs/screening.md § Refusing a weak fit; "
                  "--accept-weak keeps it)", file=sys.stderr)  # fmt: skip
            return 3
        print(f"tracer fit-domain: warning: kept by --accept-weak, though on validation it "
              f"flags only {shares} shifted copies (accepted from {need})", file=sys.stderr)
    domain.save(target)
    (folder / "ood.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("flagged_fraction_test", "mae_ratio")}))
    return 0


def cmd_make_folds(args: argparse.Namespace) -> int:
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


def cmd_prepare_pooled(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    perov_path = Path(args.perovskites)
    perov, _ = validate_perovskites(read_perovskites_31k(perov_path))
    flla = read_table(args.flla)
    frame = pooled_table(flla, perov.clean)
    matches = cross_database_matches(frame)
    matches.to_csv(out / "matches.csv", index=False)
    split = pooled_split(frame, matches, seed=args.seed)
    (out / "split.json").write_text(json.dumps(split, indent=1))
    ids = {d: list(frame.loc[frame["database"] == d, "id"]) for d in DATABASES}
    (out / "ids.json").write_text(json.dumps(ids))
    for d in DATABASES:
        part = frame[frame["database"] == d]
        save_structure_tensors(out / f"structures_{d}.pt", list(part["id"]),
                               list(part["structure"]), list(part["target"]),
                               "eV/atom")  # fmt: skip
    pairs = matches.groupby(["database_a", "database_b"]).size()
    summary = {
        "n": {d: int((frame["database"] == d).sum()) for d in DATABASES},
        "sizes": split["sizes"], "matched_groups": split["matched_groups"],
        "matched_pairs": {f"{a}-{b}": int(n) for (a, b), n in pairs.items()},
        "provenance": provenance(
            params={"seed": args.seed}, dataset_sha256=sha256_file(
                perov_path if perov_path.is_file() else perov_path / "perovskites.csv.gz"),
            split_sha256=None, wall_time_s=time.perf_counter() - t0,
            extra={"flla_table_sha256": table_sha256(flla)}),
    }  # fmt: skip
    write_json(out / "data.json", summary)
    print(json.dumps({k: summary[k] for k in ("n", "matched_pairs")}))
    return 0


def cmd_prepare_perovskites(args: argparse.Namespace) -> int:
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
