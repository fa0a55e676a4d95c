"""Cell-list neighbour graphs equal the dense search's edge for edge, in any cell shape."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

import tracer.graphs.cell_lists as nb
from tracer.graphs.dataset import graphs_from_arrays, structure_tensors
from tracer.graphs.periodic import radius_graph_pbc


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k))
               for k in ("source", "target", "offset", "reverse"))  # fmt: skip


@pytest.mark.parametrize("max_neighbors", [None, 12])
def test_equal_to_the_dense_search_on_real_crystals(flla_structures, max_neighbors):
    for s in flla_structures:
        _, pos, cell = structure_tensors(s)
        dense = radius_graph_pbc(pos, cell, 6.0, max_neighbors=max_neighbors)
        cells = nb.radius_graph_cell_list(pos, cell, 6.0, max_neighbors=max_neighbors,
                                          chunk_pairs=500)  # fmt: skip
        assert _same(dense, cells), s.composition.reduced_formula


@pytest.mark.parametrize(
    ("lattice", "mult"),
    [
        (Lattice.cubic(5.64), (3, 3, 3)),  # several bins per direction
        (Lattice.from_parameters(4.1, 5.3, 6.2, 71, 83, 112), (4, 3, 2)),  # skewed, triclinic
        (Lattice.from_parameters(3.0, 3.2, 20.0, 90, 90, 120), (5, 5, 1)),  # one thin direction
        (Lattice.cubic(2.0), (1, 1, 1)),  # cell narrower than the cutoff: many images
    ],
)
def test_equal_in_any_cell_shape(lattice, mult):
    rng = np.random.default_rng(0)
    s = Structure(lattice, ["Na", "Cl", "O"], rng.random((3, 3))) * mult
    s.perturb(0.01)
    _, pos, cell = structure_tensors(s)
    pos = pos + torch.as_tensor(rng.normal(scale=3.0, size=pos.shape))  # not wrapped
    for cap in (None, 12):
        dense = radius_graph_pbc(pos, cell, 6.0, max_neighbors=cap)
        assert _same(dense, nb.radius_graph_cell_list(pos, cell, 6.0, max_neighbors=cap))


def test_bins_reach_every_neighbour():
    cell = torch.tensor(Lattice.from_parameters(30, 7, 3, 80, 95, 100).matrix)
    nbins, reach = nb._bins(cell, 6.0)
    spacing = 1.0 / torch.linalg.norm(torch.linalg.inv(cell), dim=-2)
    assert (nbins >= 1).all() and (reach >= 1).all()
    # a neighbour within the cutoff lies within `reach` bins along each direction
    assert (reach.double() / nbins >= 6.0 / spacing - 1e-9).all()


def test_large_cells_go_to_cell_lists_and_give_the_same_dataset(flla_structures, monkeypatch):
    ids = [str(k) for k in range(len(flla_structures))]
    arrays = [structure_tensors(s) for s in flla_structures]
    ref = graphs_from_arrays(ids, arrays, None, cutoff=6.0, max_neighbors=12)
    calls = []
    real = nb.radius_graph_cell_list
    monkeypatch.setattr(nb, "radius_graph_cell_list",
                        lambda *a, **k: calls.append(1) or real(*a, **k))  # fmt: skip
    monkeypatch.setattr(nb, "DENSE_PAIR_LIMIT", 0)  # every cell counts as large
    got = nb.graph_dataset(ids, arrays, cutoff=6.0, max_neighbors=12)
    assert len(calls) == len(ids)
    for key in ("z", "pos", "cell", "atom_ptr", "source", "target_atom", "offset", "reverse",
                "edge_ptr"):  # fmt: skip
        assert torch.equal(getattr(ref, key), getattr(got, key)), key


def test_an_atom_without_neighbours_is_named():
    z = torch.tensor([11, 17])
    pos = torch.tensor([[0.0, 0, 0], [10.0, 10, 10]], dtype=torch.float64)
    cell = torch.eye(3, dtype=torch.float64) * 30.0
    with pytest.raises(ValueError, match=r"lonely: atoms \[0, 1\] have no neighbour"):
        nb.graph_dataset(["lonely"], [(z, pos, cell)], cutoff=6.0, max_neighbors=12)
