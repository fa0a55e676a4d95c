"""The ``tracer`` command.

``tracer fetch [NAME]``        download and sha256-verify a data source into ``data/raw``
``tracer run-notebook NB``     execute a stage notebook with papermill (parameters from params.yaml)
``tracer profile [use NAME]``  show the active profile, or switch ``params.yaml`` to another one
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tracer import PRETRAINED_DIR
from tracer.inference.thresholds import DESIGNS, MAX_VAL_FLAGGED
from tracer.pipeline.paths import RUN_OF_RECORD


def _fraction(text: str) -> float:
    """An argparse type: a fraction strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


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
    p.set_defaults(func="data:cmd_fetch")

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
    p.set_defaults(func="notebooks:cmd_run_notebook")

    p = sub.add_parser(
        "export-structures",
        help="write a dataset's structures as tensors (for a machine without pymatgen)",
    )
    p.add_argument("--dataset", default="flla")
    p.add_argument("--out", required=True)
    p.set_defaults(func="pipeline:cmd_export_structures")

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
    p.add_argument("--variance-head", action="store_true",
                   help="members with a variance head, Gaussian NLL (the σ study)")  # fmt: skip
    p.set_defaults(func="training:cmd_train_ensemble")

    p = sub.add_parser(
        "train-parallel",
        help="run DVC stages (the members: train) concurrently, one per device, then dvc commit",
    )
    p.add_argument("targets", nargs="+", help="DVC stages, e.g. train or train@0 train@1")
    p.add_argument("--devices", nargs="+", required=True,
                   help="CUDA device ids or cpu, one slot each; auto: every GPU, else a cpu slot "
                   "per core")  # fmt: skip
    p.add_argument("--force", action="store_true", help="also rerun stages up to date")
    p.add_argument("--upstream", action="store_true",
                   help="first dvc repro the stale stages upstream of the targets")  # fmt: skip
    p.set_defaults(func="pipeline:cmd_train_parallel")

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
    p.set_defaults(func="training:cmd_train_ddp")

    p = sub.add_parser(
        "train-baseline", help="train SchNet or CGCNN (params baselines) on a split, no DVC"
    )
    p.add_argument("--model", choices=["schnet", "cgcnn"], required=True)
    p.add_argument("--structures", required=True, help="file from export-structures")
    p.add_argument("--split", required=True, help="split JSON")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.set_defaults(func="training:cmd_train_baseline")

    p = sub.add_parser(
        "stage",
        help="a DVC stage without a notebook, with params.yaml's settings: graphs, dummy, one "
        "GemNet-T member (train@<seed>) or one Table 1 baseline (baseline@<model>)",
    )
    p.add_argument("what", choices=["graphs", "dummy", "member", "baseline"])
    p.add_argument("name", nargs="?", help="the member's seed, or the baseline's model name")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func="pipeline:cmd_stage")

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
    p.set_defaults(func="training:cmd_train_alignn")

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
    _study_run_options(p)
    p.set_defaults(func="training:cmd_study")

    for name, what, func in (
        ("record-run", "a train-ensemble output folder", "records:cmd_record_run"),
        ("record-studies", "a GPU run of `tracer study`", "records:cmd_record_studies"),
    ):
        p = sub.add_parser(name, help=f"score {what} into {RUN_OF_RECORD}/")
        p.add_argument("--run-dir", required=True)
        p.add_argument("--params", default="profiles/full.yaml")
        p.add_argument("--out", default=RUN_OF_RECORD)
        if name == "record-run":
            p.add_argument("--ship-to", default=None,
                           help="also ship the members in half precision into this folder "
                           "(e.g. tracer/pretrained/flla_gemnet_t); then `tracer release`",
                           )  # fmt: skip
        p.set_defaults(func=func)

    p = sub.add_parser(
        "reproduce",
        help="the reproduction report: this run's records beside the committed ones, each key "
        "judged against a measured tolerance; exit status 1 when NOT REPRODUCED",
    )
    p.add_argument("--reference", default="HEAD", help="the git revision of the reference")
    p.add_argument("--out", default="reproduction.md")
    p.set_defaults(func="records:cmd_reproduce")

    p = sub.add_parser(
        "release",
        help="finish a shipped ensemble from the committed records: calibration.json, "
        "MODEL_CARD.md, MANIFEST.json (the only command that writes them)",
    )
    p.add_argument("--folder", default=str(PRETRAINED_DIR), help="the shipped members' folder")
    p.add_argument("--records", default=RUN_OF_RECORD, help="the run of record")
    p.add_argument("--derived", default="metrics/run_of_record",
                   help="the run_of_record stage's analyses of it")  # fmt: skip
    p.add_argument("--params", default="profiles/full.yaml")
    p.add_argument("--check", action="store_true",
                   help="only say whether the folder is what a release would write")  # fmt: skip
    p.set_defaults(func="records:cmd_release")

    p = sub.add_parser(
        "predict",
        help="screen structure files (CIF, POSCAR*, vasprun.xml, extxyz, pymatgen JSON, and "
        "crystal formats ASE recognises) with an ensemble",
    )
    p.add_argument("paths", nargs="+", help="files, folders or globs")
    p.add_argument("-o", "--output", required=True, help="CSV of the predictions")
    p.add_argument("--ensemble", default=None,
                   help="folder of member_*.pt (default: the shipped full-profile FLLA ensemble, "
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
    p.set_defaults(func="data:cmd_predict")

    p = sub.add_parser(
        "fit-domain",
        help="fit an ensemble's applicability domain on its training split and measure it "
        "(applicability.pt and ood.json beside the members; then `tracer release` for the "
        "manifest)",
    )
    p.add_argument("--ensemble", default=None, help="members' folder (default: the shipped one)")
    p.add_argument("--table", default="data/processed/flla.parquet")
    p.add_argument("--split", default="data/splits/flla.json")
    p.add_argument("--folds", default="data/splits/flla_cv5.json",
                   help="fold file from make-folds (with --fold)")  # fmt: skip
    p.add_argument(
        "--fold",
        type=int,
        default=None,
        help="fit on this run of --folds instead of --split (the fold's members)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing applicability.pt")
    p.add_argument("--accept-weak", action="store_true",
                   help="keep a fit that flags too few of a kind of its shifted validation "
                   "copies (refused otherwise; ood.json says accepted: false)")  # fmt: skip
    p.add_argument("--design", default="tied", choices=sorted(DESIGNS),
                   help="how the thresholds are searched on validation (tied: one tail per "
                   "range; split-tails: the strain check's two sides apart, the widest empty "
                   "slab bounded above only; docs/screening.md)")  # fmt: skip
    p.add_argument("--max-val-flagged", type=_fraction, default=MAX_VAL_FLAGGED,
                   help="the most of the validation structures the chosen thresholds may flag "
                   f"(a fraction; default {MAX_VAL_FLAGGED:g})")  # fmt: skip
    p.set_defaults(func="data:cmd_fit_domain")

    p = sub.add_parser("make-folds", help="group-aware k-fold runs of a dataset (fold file)")
    p.add_argument("--dataset", default="flla")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--out", default="data/splits/flla_cv5.json")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func="data:cmd_make_folds")

    p = sub.add_parser(
        "train-cv", help="train the GemNet-T members of cross-validation folds, no DVC (GPU)"
    )
    p.add_argument("--structures", required=True, help="file from export-structures")
    p.add_argument("--folds", required=True, help="fold file from make-folds")
    p.add_argument("--params", default="profiles/full.yaml")
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
    p.add_argument("--variance-head", action="store_true",
                   help="GemNet-T members with a variance head, Gaussian NLL")  # fmt: skip
    p.set_defaults(func="training:cmd_train_cv")

    p = sub.add_parser(
        "prepare-perovskites",
        help="validate the 31k perovskite table, write its quarantine, the CMR matbench folds "
        "and the CMR structures as tensors (for a GPU machine)",
    )
    p.add_argument("--path", default="../shared/data/perovskites-31k/perovskites.csv.gz")
    p.add_argument("--out", default="results/perovskites_cv", help="quarantine and data report")
    p.add_argument("--folds", default="data/splits/perovskites_cmr_cv5.json")
    p.add_argument("--structures", help="write the clean CMR cells here (eV/atom targets)")
    p.set_defaults(func="data:cmd_prepare_perovskites")

    p = sub.add_parser(
        "prepare-pooled",
        help="FLLA and the 31k perovskites' three databases as one table, each a domain: "
        "structures per database (for a GPU machine), cross-database matches, a grouped split",
    )
    p.add_argument("--perovskites", default="../shared/data/perovskites-31k/perovskites.csv.gz")
    p.add_argument("--flla", default="data/processed/flla.parquet", help="the data stage's table")
    p.add_argument("--out", default="data/pooled",
                   help="folder for train-pooled: structures per database (not committed), "
                        "split, ids, matches")  # fmt: skip
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func="data:cmd_prepare_pooled")

    p = sub.add_parser(
        "train-pooled",
        help="the four-database domain study's runs (params section pooled), no DVC (GPU)",
    )
    p.add_argument("--pooled", required=True, help="folder of prepare-pooled")
    p.add_argument("--params", default="profiles/full.yaml")
    p.add_argument("--out", required=True)
    _study_run_options(p)
    p.set_defaults(func="training:cmd_train_pooled")

    p = sub.add_parser("record-pooled", help="score the four-database domain study")
    p.add_argument("--run-dir", default="results/pooled/runs")
    p.add_argument("--pooled", default="data/pooled", help="folder of prepare-pooled")
    p.add_argument("--params", default="profiles/full.yaml")
    p.add_argument("--device", required=True, help="the card the runs trained on")
    p.add_argument("--out", default="results/pooled",
                   help="domains.json, and the split, ids and matches it was scored with",
                   )  # fmt: skip
    p.set_defaults(func="records:cmd_record_pooled")

    p = sub.add_parser(
        "train-transfer-cv",
        help="zero-shot, fine-tuned and scratch runs on the CMR matbench folds, no DVC (GPU)",
    )
    p.add_argument("--structures", required=True, help="file from prepare-perovskites")
    p.add_argument("--folds", default="data/splits/perovskites_cmr_cv5.json")
    p.add_argument("--members", nargs="+", required=True, help="pre-trained member files")
    p.add_argument("--params", default="profiles/full.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--which", type=int, nargs="*", help="folds to run (default: all)")
    p.add_argument("--curve-folds", type=int, nargs="*", default=[0])
    p.add_argument("--scratch-members", type=int, default=1, help="scratch models per fold")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the profile's transfer.fine_tune.train.max_epochs (a budget "
                        "study; each run's identity and record carry it)")  # fmt: skip
    p.add_argument("--parallel", type=int, default=1, help="runs trained concurrently")
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.set_defaults(func="training:cmd_train_transfer_cv")

    p = sub.add_parser(
        "rescore-alignn",
        help="choose ALIGNN's recipe again from a results folder's kept runs (a recipe trained "
        "later: copy its alignn_<recipe>.parquet and histories/alignn_<recipe>.json into runs/)",
    )
    p.add_argument("--results", default=RUN_OF_RECORD)
    p.set_defaults(func="records:cmd_rescore_alignn")

    p = sub.add_parser("record-transfer-cv", help="score a transfer cross-validation folder")
    p.add_argument("--run-dir", default="results/perovskites_cv/runs")
    p.add_argument("--alignn-dir", default="results/perovskites_cv/alignn",
                   help="ALIGNN from scratch on the folds (train-alignn --folds)")  # fmt: skip
    p.add_argument("--folds", default="data/splits/perovskites_cmr_cv5.json")
    p.add_argument("--curve-folds", type=int, nargs="*", default=[0])
    p.add_argument("--params", default="profiles/full.yaml")
    p.add_argument("--device", required=True, help="the card the runs trained on")
    p.add_argument("--out", default="results/perovskites_cv/perovskites_matbench.json")
    p.set_defaults(func="records:cmd_record_transfer_cv")

    p = sub.add_parser(
        "record-transfer-budget",
        help="a longer fine-tuning budget against the base on the CMR folds, decided on validation",
    )
    p.add_argument("--base", default="results/perovskites_cv/runs")
    p.add_argument("--longer", default="results/perovskites_cv/runs_80_epochs",
                   help="train-transfer-cv --epochs N --members member_0 on some folds",
                   )  # fmt: skip
    p.add_argument("--rerun", default="results/perovskites_cv/runs_rerun",
                   help="the base runs trained again (run-to-run spread)")  # fmt: skip
    p.add_argument("--folds", default="data/splits/perovskites_cmr_cv5.json")
    p.add_argument("--params", default="profiles/full.yaml")
    p.add_argument("--device", required=True, help="the card the runs trained on")
    p.add_argument("--out", default="results/perovskites_cv/transfer_budget.json")
    p.set_defaults(func="records:cmd_record_transfer_budget")

    p = sub.add_parser(
        "record-cv", help="score a cross-validation folder (out-of-fold records, cv_*.json)"
    )
    p.add_argument("--run-dir", default="results/flla_cv5")
    p.add_argument("--folds", default="data/splits/flla_cv5.json")
    p.add_argument("--table", default="data/processed/flla.parquet")
    p.add_argument("--params", default="profiles/full.yaml")
    p.add_argument("--device", required=True, help="the card the members trained on")
    p.add_argument("--domain-only", action="store_true",
                   help="only cv_domain.json, for a run whose folds hold domain/ alone")
    p.set_defaults(func="records:cmd_record_cv")

    p = sub.add_parser(
        "lock-records",
        help="write records.lock.json (the code and params hashes behind each record)",
    )
    p.set_defaults(func="records:cmd_lock_records")

    p = sub.add_parser(
        "audit-readme", help="rewrite README's audit table from paper_figures/CHECKLIST.json"
    )
    p.add_argument("--readme", default="README.md")
    p.add_argument("--checklist", default="paper_figures/CHECKLIST.json")
    p.set_defaults(func="records:cmd_audit_readme")

    p = sub.add_parser("report", help="render the run into an offline HTML site")
    p.add_argument("--out", default="docs/report")
    p.set_defaults(func="records:cmd_report")

    p = sub.add_parser("profile", help="show or switch the active params profile")
    p.add_argument("action", nargs="?", choices=["show", "use"], default="show")
    p.add_argument("name", nargs="?")
    p.add_argument("--force", action="store_true", help="replace a params.yaml with edits")
    p.set_defaults(func="data:cmd_profile")
    return parser


def _study_run_options(p: argparse.ArgumentParser) -> None:
    """Device, graph-building processes and run selection of a study's GPU command."""
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1, help="processes building graphs")
    p.add_argument("--only", nargs="+", help="train just the runs matching these name patterns")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tracer`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    module, name = args.func.split(":")
    # handlers load only with their command: a GPU machine's training commands never import
    # the modules (pymatgen, DVC) that the data and pipeline commands need
    handler = getattr(importlib.import_module(f"tracer.commands.{module}"), name)
    return int(handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
