"""``tracer run-notebook``: a stage notebook executed with papermill. Its own module, so that each
notebook stage's command starts without importing torch and the rest of the package (the
notebook's kernel imports what it uses)."""

from __future__ import annotations

import argparse

import yaml

from tracer.pipeline.notebook import run_notebook


def cmd_run_notebook(args: argparse.Namespace) -> int:
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
