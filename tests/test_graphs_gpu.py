"""Graphs built on a GPU against the CPU builders, edge for edge, on real FLLA crystals.

The GPU machine has no pymatgen, so the crystals come as a structure-tensor file (``tracer
export-structures``) named by ``TRACER_STRUCTURES``, and the module needs no conftest::

    TRACER_STRUCTURES=flla.pt pytest --noconftest tests/test_graphs_gpu.py

Skipped without CUDA or without the file. Recorded run: docs/testing.md § CUDA-only tests on a GPU.
"""

import os

import numpy as np
import pytest
import torch

from tracer.graphs.batched import graphs_batched
from tracer.graphs.dataset import graphs_from_arrays, load_structure_tensors
from tracer.graphs.periodic import radius_graph_pbc

FIELDS = ("z", "pos", "cell", "atom_ptr", "source", "target_atom", "offset", "reverse", "edge_ptr")

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(
        not os.environ.get("TRACER_STRUCTURES"),
        reason="TRACER_STRUCTURES names no structure-tensor file",
    ),
]


@pytest.fixture(scope="module")
def arrays():
    """120 FLLA structures across sizes (one-atom cells included), as (z, pos, cell) tensors."""
    payload = load_structure_tensors(os.environ["TRACER_STRUCTURES"])
    sizes = np.array([len(z) for z in payload["z"]])
    order = np.argsort(sizes, kind="stable")
    picks = order[np.linspace(0, len(order) - 1, 120).astype(int)]
    assert sizes[picks].min() == 1
    ids = [payload["ids"][i] for i in picks]
    return ids, [(payload["z"][i], payload["pos"][i], payload["cell"][i]) for i in picks]


@pytest.mark.parametrize("max_neighbors", [12, None])
def test_batched_graphs_on_the_gpu_are_the_cpu_graphs(arrays, max_neighbors):
    ids, structures = arrays
    ref = graphs_from_arrays(ids, structures, None, cutoff=6.0, max_neighbors=max_neighbors)
    got = graphs_batched(ids, structures, None, cutoff=6.0, max_neighbors=max_neighbors,
                         device="cuda")  # fmt: skip
    assert got.ids == ref.ids
    for name in FIELDS:
        a, b = getattr(ref, name), getattr(got, name)
        assert a.dtype == b.dtype and torch.equal(a, b.cpu()), name


@pytest.mark.parametrize("max_neighbors", [12, None])
def test_one_structure_on_the_gpu_is_the_cpu_graph(arrays, max_neighbors):
    for _, pos, cell in arrays[1]:
        pos, cell = (
            torch.as_tensor(pos, dtype=torch.float64),
            torch.as_tensor(cell, dtype=torch.float64),
        )
        cpu = radius_graph_pbc(pos, cell, 6.0, max_neighbors=max_neighbors)
        gpu = radius_graph_pbc(pos.cuda(), cell.cuda(), 6.0, max_neighbors=max_neighbors)
        for name in ("source", "target", "offset", "reverse"):
            assert torch.equal(getattr(cpu, name), getattr(gpu, name).cpu()), name
