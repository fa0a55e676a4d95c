"""Chunked graph building gives, edge for edge, the per-structure builder's graphs."""

import numpy as np
import pytest
import torch

from tracer.graphs.batched import _chunks, graphs_batched
from tracer.graphs.dataset import graphs_from_arrays, structure_tensors

FIELDS = ("z", "pos", "cell", "atom_ptr", "source", "target_atom", "offset", "reverse", "edge_ptr")


@pytest.fixture(scope="module")
def flla_arrays(flla_table):
    """120 real FLLA structures across sizes, one-atom cells included."""
    by_size = flla_table.assign(n=[len(s) for s in flla_table.structure]).sort_values("n")
    picks = by_size.iloc[np.linspace(0, len(by_size) - 1, 120).astype(int)]
    assert picks["n"].min() == 1
    return list(picks["id"]), [structure_tensors(s) for s in picks.structure]


@pytest.mark.parametrize("max_neighbors", [12, None])
@pytest.mark.parametrize("budget", [1e4, 2e6])  # many small chunks, and a few large ones
def test_same_graphs_as_one_structure_at_a_time(flla_arrays, max_neighbors, budget):
    ids, arrays = flla_arrays
    ref = graphs_from_arrays(ids, arrays, None, cutoff=6.0, max_neighbors=max_neighbors)
    got = graphs_batched(ids, arrays, None, cutoff=6.0, max_neighbors=max_neighbors,
                         budget=budget)  # fmt: skip
    assert got.ids == ref.ids and got.cutoff == ref.cutoff
    for name in FIELDS:
        a, b = getattr(ref, name), getattr(got, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_isolated_atom_is_named(flla_arrays):
    ids, arrays = flla_arrays
    z, pos, cell = arrays[-1]
    far = (z[:2], torch.tensor([[0.0, 0, 0], [10.0, 10, 10]], dtype=torch.float64),
           torch.eye(3, dtype=torch.float64) * 30.0)  # fmt: skip
    with pytest.raises(ValueError, match="lonely-cell: atoms"):
        graphs_batched([*ids[:3], "lonely-cell"], [*arrays[:3], far], None, cutoff=6.0,
                       max_neighbors=12)  # fmt: skip


def test_chunks_respect_the_budget_and_cover_everything():
    cost = np.array([5.0, 1.0, 3.0, 50.0, 2.0, 2.0])
    groups = _chunks(cost, budget=6.0)
    assert sorted(np.concatenate(groups).tolist()) == list(range(6))
    for g in groups:  # padded cost: the group's largest times its size, unless alone
        assert len(g) == 1 or cost[g].max() * len(g) <= 6.0


def test_image_ranges_of_a_stack_match_one_cell_at_a_time(flla_arrays):
    from tracer.graphs.periodic import image_ranges

    cells = torch.stack([c.to(torch.float64) for _, _, c in flla_arrays[1]])
    want = torch.stack([image_ranges(c, 6.0) for c in cells])
    assert torch.equal(image_ranges(cells, 6.0), want)


def test_first_bad_structure_in_input_order_is_named(flla_arrays):
    ids, arrays = flla_arrays
    z, _, _ = arrays[0]
    lonely = (z[:1].repeat(2), torch.tensor([[0.0, 0, 0], [10.0, 10, 10]], dtype=torch.float64),
              torch.eye(3, dtype=torch.float64) * 30.0)  # fmt: skip
    # one atom in a cell 0.05 Å thick along c: images up to ±120 along c are in range, so with
    # no neighbour cap the offsets leave int8
    flat = (z[:1], torch.zeros(1, 3, dtype=torch.float64),
            torch.diag(torch.tensor([3.0, 3.0, 0.025], dtype=torch.float64)))  # fmt: skip
    with pytest.raises(ValueError, match="flat-cell: image offsets beyond int8"):
        graphs_batched([ids[0], "flat-cell", "lonely-cell"], [arrays[0], flat, lonely], None,
                       cutoff=6.0, max_neighbors=None)  # fmt: skip
    with pytest.raises(ValueError, match=r"lonely-cell: atoms \[0, 1\]"):
        graphs_batched([ids[0], "lonely-cell", "flat-cell"], [arrays[0], lonely, flat], None,
                       cutoff=6.0, max_neighbors=None)  # fmt: skip
