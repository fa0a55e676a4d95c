"""Commands that record runs made elsewhere, lock the records to their code, and write the audit's
README table and the site."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from tracer.analysis.cross_validation import write_json
from tracer.analysis.pooled import pooled_report
from tracer.analysis.transfer_budget import budget_report
from tracer.analysis.transfer_cv import alignn_peer, matbench_record, transfer_cv_report
from tracer.audit.evaluate import write_readme_block
from tracer.audit.report import build_site
from tracer.data.download import sha256_file
from tracer.data.folds import load_folds
from tracer.data.table import read_table
from tracer.pipeline.config import load_params
from tracer.pipeline.cv_records import record_cv, record_cv_domain
from tracer.pipeline.packed import unpacked
from tracer.pipeline.paths import RUN_OF_RECORD
from tracer.pipeline.provenance import provenance
from tracer.pipeline.record_lock import stale, write_lock
from tracer.pipeline.records import record_run, rescore_alignn
from tracer.pipeline.release import release, release_status
from tracer.pipeline.reproduction import reproduction_report, write_report
from tracer.pipeline.study_records import record_studies


def cmd_record_studies(args: argparse.Namespace) -> int:
    out = record_studies(args.run_dir, params_path=args.params, out_dir=args.out)
    print(json.dumps({k: v["status"] for k, v in out.items()}))
    return 0


def cmd_rescore_alignn(args: argparse.Namespace) -> int:
    print(f"ALIGNN recipe chosen on validation: {rescore_alignn(args.results)}")
    return 0


def cmd_record_transfer_cv(args: argparse.Namespace) -> int:
    folds = load_folds(args.folds)
    with unpacked(args.run_dir) as runs:  # the committed runs are one archive
        report = transfer_cv_report(folds, runs, curve_folds=args.curve_folds)
        if args.alignn_dir is not None:
            report["alignn_scratch"] = alignn_peer(folds, runs, args.alignn_dir)
    report = matbench_record(report, folds)
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


def cmd_record_transfer_budget(args: argparse.Namespace) -> int:
    folds = load_folds(args.folds)
    with (unpacked(args.base) as base, unpacked(args.longer) as longer,
          unpacked(args.rerun) as rerun):  # fmt: skip
        report = budget_report(folds, base, longer, rerun)
    report["provenance"] = provenance(
        params=load_params(args.params), dataset_sha256=folds["dataset_sha256"],
        split_sha256=folds["cv_sha256"], wall_time_s=0.0, device=args.device,
        extra={"dataset": folds["dataset"], "split": args.folds, "runs": {
            "base": args.base, "longer": args.longer, "rerun": args.rerun}})  # fmt: skip
    write_json(args.out, report)
    print(json.dumps(report["decision"]))
    return 0


def cmd_record_pooled(args: argparse.Namespace) -> int:
    settings = load_params(args.params)
    params = settings["pooled"]
    pooled = Path(args.pooled)
    split = json.loads((pooled / "split.json").read_text())
    matches = pd.read_csv(pooled / "matches.csv", dtype={"id_a": str, "id_b": str})
    ids = json.loads((pooled / "ids.json").read_text())
    database_of = {i: d for d in split["databases"] for i in ids[d]}
    with unpacked(args.run_dir) as runs:  # committed as one archive
        report = pooled_report(runs, database_of, databases=split["databases"],
                               variants=params["variants"], seeds=params["seeds"],
                               matches=matches)  # fmt: skip
    single = json.loads((Path(RUN_OF_RECORD) / "domain.json").read_text())
    report = {"single_database": {
        "dataset": single["dataset"], "status": single["status"], "variants": {
            v: {"mae": e["mae"], "seed_std": e.get("mae_across_seeds", {}).get("std"),
                "params": e["params"], "s_per_epoch": e["s_per_epoch"]}
            for v, e in single["variants"].items()}},
        "multi_database": report}  # fmt: skip
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name in ("split.json", "ids.json", "matches.csv", "data.json"):  # small; no structures
        shutil.copyfile(pooled / name, out / "data" / name)
    report["provenance"] = provenance(
        params=settings, dataset_sha256=json.loads(
            (pooled / "data.json").read_text())["provenance"]["dataset_sha256"],
        split_sha256=sha256_file(pooled / "split.json"), wall_time_s=0.0, device=args.device,
        extra={"split": str(out / "data" / "split.json")})  # fmt: skip
    write_json(out / "domains.json", report)
    print(report["multi_database"]["finding"])
    return 0


def cmd_record_cv(args: argparse.Namespace) -> int:
    folds = load_folds(args.folds)
    with unpacked(Path(args.run_dir) / "runs") as runs:  # the folds' files: an archive
        if args.domain_only:
            domain = record_cv_domain(runs, folds, load_params(args.params), device=args.device,
                                      folds_path=args.folds, out_dir=args.run_dir)  # fmt: skip
            print(json.dumps({"flagged": domain["flagged"]["fraction"],
                              "accepted_folds": domain["accepted_folds"],
                              "refusal_rule": domain["verdicts"]["refusal_rule"]}))  # fmt: skip
            return 0
        records = record_cv(runs, folds, read_table(args.table), load_params(args.params),
                            device=args.device, out_dir=args.run_dir,
                            folds_path=args.folds)  # fmt: skip
    models = records["cv_accuracy"]["models"]
    print(json.dumps({k: [v["mae"], v["mae_ci95"]] for k, v in models.items()}))
    return 0


def cmd_lock_records(args: argparse.Namespace) -> int:
    status = subprocess.run(["dvc", "status", "--quiet"], capture_output=True, text=True)
    if status.returncode != 0:  # a lock written now would certify records its code did not make
        print("dvc status: stages out of date; run dvc repro first\n" + status.stdout[-2000:])
        return 1
    print(write_lock("."))
    problems = stale(".")
    for p in problems:
        print(p)
    return 1 if problems else 0


def cmd_audit_readme(args: argparse.Namespace) -> int:
    rows = json.loads(Path(args.checklist).read_text())
    print(write_readme_block(args.readme, rows))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(build_site(".", args.out))
    return 0


def cmd_record_run(args: argparse.Namespace) -> int:
    out = record_run(args.run_dir, params_path=args.params, out_dir=args.out,
                     ship_dir=args.ship_to)  # fmt: skip
    print(json.dumps({k: round(v["mae"], 5) for k, v in out["accuracy"].items()}))
    print(json.dumps(out["half_precision"]))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    if args.check:
        reason = release_status(args.folder, args.records, params, derived_dir=args.derived)
        print(reason or f"{args.folder} is what `tracer release` writes from the records")
        return 1 if reason else 0
    folder = release(args.folder, args.records, params, derived_dir=args.derived)
    print(f"released {folder}: calibration.json, MODEL_CARD.md, MANIFEST.json")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    report = reproduction_report(".", args.reference)
    path = write_report(report, args.out)
    counts = ", ".join(f"{n} {v}" for v, n in sorted(report["counts"].items()))
    print(f"{report['verdict']} against {args.reference} ({counts}); details: {path}")
    return 0 if report["verdict"] == "REPRODUCED" else 1
