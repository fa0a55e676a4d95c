"""Import rules. The package's layers follow the data flow (docs/ARCHITECTURE.md): a module
imports only from its own layer or an earlier one; imports sit at the top of a module except at
the named boundaries (packages the GPU path must not need); and the training and prediction path
imports neither pymatgen nor DVC, so the GPU machine needs little beyond torch."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

LAYERS = ("data", "graphs", "models", "training", "inference", "analysis", "pipeline", "audit",
          "cli")  # fmt: skip
TOP_LEVEL = {"__init__": -1, "cli": LAYERS.index("cli"), "commands": LAYERS.index("cli")}
"""``tracer/cli.py`` and ``tracer/commands/`` form the last layer; ``tracer/__init__`` holds
the version only."""
# Packages imported inside functions on purpose, each for a reason.
BOUNDARIES = {
    "pymatgen": "structure parsing and matching: not needed to train or predict from tensors",
    "monty": "pymatgen's serialisation",
    "dvc": "the pipeline's own tool, absent on the GPU machine",
    "dvclive": "DVC's logger, absent on the GPU machine",
    "alignn": "the ALIGNN baseline's package, only where ALIGNN is built or trained",
    "jarvis": "ALIGNN's graph builder",
    "torch_geometric": "SchNet's and CGCNN's layers, only where a baseline is built: its import "
    "takes seconds in every process that reaches the model registry",
    "ase": "file formats and element data for screening, absent on the GPU machine",
    "spglib": "the applicability domain's symmetry search, only where a domain is checked",
    "papermill": "notebooks, only in the stages that run them",
    "nbformat": "notebooks, only in the report",
    "nbconvert": "notebooks, only in the report",
    "uncertainty_toolbox": "a reference computation inside the uncertainty report",
    "IPython": "display inside notebooks only",
}


def layer_of(module: str) -> int:
    """Index of a ``tracer`` module's layer (``tracer.data.splits`` → 0)."""
    parts = module.split(".")
    assert parts[0] == "tracer", module
    if len(parts) == 1:
        return -1
    if parts[1] in TOP_LEVEL:
        return TOP_LEVEL[parts[1]]
    return LAYERS.index(parts[1])


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return out


def backward_imports(root: Path) -> list[str]:
    """Every import of a later layer's module, as ``file:line module -> imported``."""
    found = []
    for path in sorted((root / "tracer").rglob("*.py")):
        name = module_name(path, root)
        here = layer_of(name)
        for line, imported in imported_modules(ast.parse(path.read_text())):
            if imported == "tracer" or not imported.startswith("tracer."):
                continue
            if layer_of(imported) > here:
                found.append(f"{path.relative_to(root)}:{line} {name} -> {imported}")
    return found


def late_imports(root: Path) -> list[str]:
    """Imports inside functions or classes of anything but a named boundary package."""
    found = []
    for path in sorted((root / "tracer").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for top in tree.body:
            if isinstance(top, (ast.Import, ast.ImportFrom, ast.If, ast.Try)):
                continue
            for line, imported in imported_modules(top):
                if imported.split(".")[0] not in BOUNDARIES:
                    found.append(f"{path.relative_to(root)}:{line} {imported}")
    return found


def test_every_module_is_in_a_layer():
    for path in (REPO / "tracer").rglob("*.py"):
        layer_of(module_name(path, REPO))  # raises for a module outside the layers


def test_no_module_imports_from_a_later_layer():
    assert backward_imports(REPO) == []


def _planted(tmp_path: Path, module: str, code: str) -> Path:
    """A copy of the package under ``tmp_path`` with ``code`` appended to ``module``'s file."""
    shutil.copytree(REPO / "tracer", tmp_path / "tracer",
                    ignore=shutil.ignore_patterns("pretrained", "__pycache__"))  # fmt: skip
    path = tmp_path / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + code)
    return tmp_path


def test_a_planted_backward_import_is_found(tmp_path):
    code = "\n\ndef f():\n    from tracer.analysis import accuracy\n"
    found = backward_imports(_planted(tmp_path, "tracer.data.splits", code))
    assert len(found) == 1 and "tracer.data.splits -> tracer.analysis" in found[0]


def test_imports_sit_at_the_top_except_at_named_boundaries():
    assert late_imports(REPO) == []


def test_a_planted_late_import_is_found(tmp_path):
    code = "\n\ndef g():\n    import json\n    import pymatgen\n"
    found = late_imports(_planted(tmp_path, "tracer.data.table", code))
    assert len(found) == 1 and found[0].endswith(" json")


def test_no_module_is_longer_than_about_400_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "tracer").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 440}  # fmt: skip
    assert set(long) <= {"tracer/models/gemnet.py"}, long


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'pymatgen', 'dvc', 'dvclive', 'papermill'}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_training_path_runs_without_pymatgen_or_dvc():
    code = (
        BLOCKER
        + """
import tracer.training.trainer, tracer.training.distributed, tracer.inference.ensemble
import tracer.inference.predict, tracer.inference.applicability, tracer.pipeline.launch
import tracer.pipeline.cv_launch, tracer.pipeline.transfer_cv, tracer.graphs.dataset
import tracer.graphs.cell_lists, tracer.models.gemnet_chunked, tracer.data.folds
import tracer.cli, tracer.commands.training  # the GPU machine's commands
args = ['train-cv', '--structures', 's', '--folds', 'f', '--out', 'o']
assert tracer.cli.build_parser().parse_args(args).func == 'training:cmd_train_cv'
from tracer.data.splits import load_split
from tracer.models.gemnet import GemNetT, GemNetTConfig
split = load_split('data/splits/flla.json')
print(len(split['train']))
"""
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 0


def test_blocker_really_blocks():
    out = subprocess.run(
        [sys.executable, "-c", BLOCKER + "import pymatgen.core"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "blocked" in out.stderr
