"""Running a stage's notebook with papermill, its parameters taken from ``params.yaml``.

A notebook declares what it needs in its ``parameters`` cell, by name: ``<section>_<key>`` for
``params.yaml``'s ``section: {key: ...}`` (e.g. ``split_seed``), or a top-level scalar's own name.
:func:`run_notebook` fills every declared name from ``params.yaml`` (an unknown name is an error,
so a notebook cannot silently run on its defaults) and writes the executed copy to
``notebooks/executed/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tracer.pipeline.config import PARAMS_FILE, load_params, stage_parameters

EXECUTED_DIR = Path("notebooks") / "executed"


def declared_parameters(notebook: str | Path) -> list[str]:
    """Names assigned in the notebook's ``parameters`` cell."""
    import papermill as pm

    return list(pm.inspect_notebook(str(notebook)).keys())


def notebook_parameters(
    notebook: str | Path, params: dict[str, Any], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Values for every parameter the notebook declares, from the params mapping.

    ``overrides`` supplies values that do not live in ``params.yaml`` (e.g. the seed of one
    ensemble member in a DVC ``foreach`` stage).
    """
    available = {**stage_parameters(params, list(params)), **(overrides or {})}
    wanted = declared_parameters(notebook)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise KeyError(
            f"{notebook}: parameters {missing} have no value in {PARAMS_FILE} "
            "(expected <section>_<key> or a top-level name)"
        )
    return {name: available[name] for name in wanted}


def run_notebook(
    notebook: str | Path,
    *,
    params_file: str | Path = PARAMS_FILE,
    output_dir: str | Path = EXECUTED_DIR,
    output_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    root: str | Path = ".",
) -> Path:
    """Execute ``notebook`` with papermill in ``root``; return the executed copy's path.

    The copy is ``<output_dir>/<output_name or the notebook's name>.ipynb``.
    """
    import papermill as pm

    root = Path(root).resolve()
    notebook = Path(notebook)
    params = load_params(root / params_file)
    parameters = notebook_parameters(root / notebook, params, overrides)
    out_dir = root / output_dir
    out_dir.mkdir(parents=True, exist_ok=True)  # papermill does not create it
    output = out_dir / (f"{output_name}.ipynb" if output_name else notebook.name)
    pm.execute_notebook(
        str(root / notebook),
        str(output),
        parameters=parameters,
        cwd=str(root),
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
    )
    scrub_paths(output, root)
    return output


def scrub_paths(notebook: str | Path, root: str | Path) -> Path:
    """Write ``root`` (the checkout's absolute path) as ``.`` and the Python installation's
    prefix (in warnings' file names) as ``<python>`` throughout an executed notebook,
    papermill's metadata included, so that no machine path is committed."""

    notebook = Path(notebook)
    text = notebook.read_text()
    prefix = str(Path(root).resolve())
    cleaned = text.replace(prefix + "/", "").replace(prefix, ".")
    for python in {sys.base_prefix, sys.prefix}:
        if len(python) > 1:
            cleaned = cleaned.replace(python + "/", "<python>/")
    if cleaned != text:
        notebook.write_text(cleaned)
    return notebook
