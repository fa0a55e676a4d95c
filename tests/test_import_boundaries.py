"""The training and prediction path imports neither pymatgen nor DVC (so the GPU machine needs
little beyond torch)."""

import subprocess
import sys

from conftest import REPO

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
import tracer.train, tracer.ensemble, tracer.launch, tracer.dataset, tracer.graphs
import tracer.neighbors, tracer.models.gemnet_chunked, tracer.cv_launch, tracer.cross_validation
import tracer.inference.applicability
from tracer.splits import load_split
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
