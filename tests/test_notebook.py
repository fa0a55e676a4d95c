"""Every stage notebook declares parameters that params.yaml supplies and that its DVC stage
lists, so a settings change always reruns the stages that read it."""

import json

import pytest
import yaml
from conftest import REPO

from tracer.pipeline.config import load_params, resolved_stages
from tracer.pipeline.notebook import declared_parameters, notebook_parameters

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


STAGES = {
    name: spec for name, spec in resolved_stages(DVC).items() if "run-notebook" in spec["cmd"]
}


def _covered(param: str, declared_params: list) -> bool:
    """Is notebook parameter <section>_<key> covered by a dvc.yaml params entry?"""
    for entry in declared_params:
        dotted = entry.replace(".", "_")
        if param == dotted or param.startswith(dotted + "_"):
            return True
    return False


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_notebook_parameters_are_tracked(stage):
    spec = STAGES[stage]
    words = spec["cmd"].split()
    notebook = words[words.index("run-notebook") + 1]
    overrides = {words[i + 1]: 0 for i, w in enumerate(words) if w in ("-p", "--parameter")}
    assert notebook in spec["deps"], f"{stage}: its notebook must be a dependency"
    names = declared_parameters(REPO / notebook)
    assert names, f"{notebook} has no parameters cell"
    values = notebook_parameters(REPO / notebook, load_params(REPO / "params.yaml"), overrides)
    assert set(values) == set(names)
    untracked = [n for n in names if not _covered(n, spec.get("params", [])) and n not in overrides]
    assert not untracked, f"{stage}: parameters {untracked} missing from dvc.yaml params"


def test_unknown_parameter_is_an_error(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell("no_such_setting = 1")
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(KeyError, match="no_such_setting"):
        notebook_parameters(path, {"seed": 1})


def test_executed_notebooks_hold_no_machine_path(tmp_path):

    from tracer.pipeline.notebook import scrub_paths

    root = tmp_path / "checkout"
    nb = tmp_path / "nb.ipynb"
    paths = {"input_path": f"{root}/notebooks/a.ipynb",
             "output_path": f"{root}/notebooks/executed/a.ipynb"}  # fmt: skip
    import sys

    text = f"wrote {root}/results/x.json in {root}; {sys.base_prefix}/lib/functools.py: warning"
    nb.write_text(json.dumps({"metadata": {"papermill": paths},
                              "cells": [{"outputs": [{"text": text}]}]}))  # fmt: skip
    scrub_paths(nb, root)
    doc = json.loads(nb.read_text())
    assert doc["metadata"]["papermill"]["input_path"] == "notebooks/a.ipynb"
    assert doc["cells"][0]["outputs"][0]["text"] == (
        "wrote results/x.json in .; <python>/lib/functools.py: warning"
    )
    assert str(tmp_path) not in nb.read_text()


def test_every_notebook_cell_has_an_id():
    """nbformat 4.5 cell ids: papermill warns on a notebook without them (and nbformat will
    refuse one)."""
    missing = {
        path.name: sum("id" not in cell for cell in json.loads(path.read_text())["cells"])
        for path in sorted((REPO / "notebooks").glob("*.ipynb"))
    }
    assert not {name: n for name, n in missing.items() if n}


def test_dvc_lock_holds_only_stages_of_dvc_yaml():
    """A stage removed or renamed in dvc.yaml leaves its entry in dvc.lock (DVC never drops
    one); such an entry names files no stage writes any more."""
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    stale = sorted(name for name in lock if name.split("@")[0] not in DVC)
    assert not stale, f"dvc.lock entries without a stage in dvc.yaml: {stale}"
