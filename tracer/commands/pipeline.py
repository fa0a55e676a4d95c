"""Commands of the DVC pipeline on this machine: the training stages' entry point, members trained
in parallel and recorded as DVC records them, and the structure file a GPU machine trains from."""

from __future__ import annotations

import argparse
import json

from tracer.data.table import read_table
from tracer.graphs.dataset import save_structure_tensors
from tracer.pipeline.config import load_params
from tracer.pipeline.parallel import run_parallel
from tracer.pipeline.paths import Paths
from tracer.pipeline.train_stages import run_training_stage


def cmd_export_structures(args: argparse.Namespace) -> int:
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


def cmd_train_parallel(args: argparse.Namespace) -> int:
    out = run_parallel(args.targets, args.devices, force=args.force, upstream=args.upstream)
    print(json.dumps(out, indent=1))
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    summary = run_training_stage(args.what, args.name, load_params(args.params))
    print(json.dumps(summary))
    return 0
