"""The periodic graph against pymatgen's neighbour list on real FLLA structures."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from tracer.graphs.periodic import (
    Triplets,
    edge_vectors,
    max_triplets_per_edge,
    radius_graph_pbc,
    triplet_cosines,
    triplets,
)


def _graph(s, cutoff, **kw):
    pos = torch.tensor(s.cart_coords)
    cell = torch.tensor(s.lattice.matrix)
    return pos, cell, radius_graph_pbc(pos, cell, cutoff, **kw)


def _pymatgen_edges(s, cutoff):
    c, p, img, d = s.get_neighbor_list(cutoff)
    return {(int(a), int(b), *map(int, o)): float(x) for a, b, o, x in zip(c, p, img, d)}


@pytest.mark.parametrize("cutoff", [4.0, 6.0])
def test_same_pairs_offsets_distances_as_pymatgen(flla_structures, cutoff):
    for s in flla_structures:
        pos, cell, g = _graph(s, cutoff)
        ref = _pymatgen_edges(s, cutoff)
        d = torch.linalg.norm(edge_vectors(pos, cell, g.source, g.target, g.offset), dim=1)
        mine = {
            (int(t), int(u), *map(int, o)): float(x)
            for t, u, o, x in zip(g.target, g.source, g.offset, d)
        }
        # pairs within 1e-6 Å of the cutoff may fall either side; there are none here
        assert set(mine) == set(ref), s.formula
        assert max(abs(mine[k] - ref[k]) for k in ref) < 1e-8


def test_positions_outside_the_cell_give_offsets_for_the_given_positions(flla_structures):
    s = flla_structures[3]
    shifted = Structure(
        s.lattice, s.species, s.frac_coords + np.array([2.0, -1.0, 3.0]), to_unit_cell=False
    )
    pos, cell, g = _graph(shifted, 5.0)
    assert {(int(t), int(u), *map(int, o)) for t, u, o in zip(g.target, g.source, g.offset)} == set(
        _pymatgen_edges(shifted, 5.0)
    )


def test_symmetric_with_reverse_ids_and_sorted_targets(flla_structures):
    for s in flla_structures:
        pos, cell, g = _graph(s, 5.0, max_neighbors=8)
        v = edge_vectors(pos, cell, g.source, g.target, g.offset)
        assert torch.equal(g.reverse[g.reverse], torch.arange(g.num_edges))
        assert torch.allclose(v[g.reverse], -v)
        assert bool((g.target[1:] >= g.target[:-1]).all())


def test_max_neighbors_keeps_degenerate_shells_whole():
    # simple cubic: 6 nearest neighbours at a, 12 at a*sqrt(2)
    s = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    for cap, expect in [(1, 6), (6, 6), (7, 18), (18, 18)]:
        _, _, g = _graph(s, 4.5, max_neighbors=cap)
        assert g.num_edges == expect, (cap, g.num_edges)
    # fcc Cu: 12 nearest neighbours
    cu = Structure(
        Lattice.cubic(3.6), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    _, _, g = _graph(cu, 6.0, max_neighbors=10)
    assert torch.bincount(g.target).tolist() == [12] * 4


def test_one_atom_cell_self_images_and_triplets():
    s = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    pos, cell, g = _graph(s, 3.1)
    assert g.num_edges == 6 and set(g.source.tolist()) == {0}
    trip = triplets(g.target, 1)
    assert trip.num_triplets == 6 * 5  # every ordered pair of distinct edges
    assert bool((trip.edge_in != trip.edge_out).all())
    cos = triplet_cosines(edge_vectors(pos, cell, g.source, g.target, g.offset), trip)
    # angles between +-x, +-y, +-z: 24 right angles and 6 opposite pairs
    assert sorted(np.round(cos.numpy(), 6).tolist()) == [-1.0] * 6 + [0.0] * 24


def test_triplet_slots_enumerate_each_edge_neighbours(flla_structures):
    s = flla_structures[4]
    _, _, g = _graph(s, 5.0, max_neighbors=10)
    trip = triplets(g.target, len(s))
    deg = torch.bincount(g.target)
    per_out = torch.bincount(trip.edge_out, minlength=g.num_edges)
    assert torch.equal(per_out, deg[g.target] - 1)
    assert int(trip.slot.max()) == int(deg.max()) - 2
    assert len({(int(o), int(k)) for o, k in zip(trip.edge_out, trip.slot)}) == trip.num_triplets
    with pytest.raises(ValueError, match="sorted"):
        triplets(g.target.flip(0), len(s))


def test_collinear_triplet_gradient_is_finite():
    vec = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [-1.5, 0, 0]], requires_grad=True)
    from tracer.graphs.periodic import Triplets

    trip = Triplets(
        edge_in=torch.tensor([0, 2]), edge_out=torch.tensor([1, 1]), slot=torch.tensor([0, 1])
    )
    cos = triplet_cosines(vec, trip)
    cos.sum().backward()
    assert torch.isfinite(vec.grad).all()


def test_padded_width_is_the_most_triplets_of_one_edge():
    none = torch.zeros(0, dtype=torch.long)
    empty = Triplets(edge_in=none, edge_out=none, slot=none)
    assert max_triplets_per_edge(empty) == 0
    # one atom with four incoming edges: each edge sees three others, slots 0..2
    assert max_triplets_per_edge(triplets(torch.zeros(4, dtype=torch.long), 1)) == 3


def test_cosines_stay_within_one_and_are_finite_for_a_zero_vector():
    torch.manual_seed(0)
    a = torch.randn(2000, 3)
    for sign in (3.0, -3.0):  # parallel and antiparallel pairs: float32 rounding leaves ±1
        vec = torch.cat([a, sign * a])
        trip = Triplets(edge_in=torch.arange(2000, 4000), edge_out=torch.arange(2000),
                        slot=torch.zeros(2000, dtype=torch.long))  # fmt: skip
        b = sign * a
        raw = (a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-12)
        assert (raw.abs() > 1).any()  # the clamp is needed, and used
        cos = triplet_cosines(vec, trip)
        over = raw.abs() > 1
        assert cos.abs().max() <= 1.0 and torch.equal(cos[over], torch.sign(raw[over]))
    zero = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    one = Triplets(edge_in=torch.tensor([1]), edge_out=torch.tensor([0]), slot=torch.tensor([0]))
    assert torch.equal(triplet_cosines(zero, one), torch.zeros(1))


@pytest.mark.parametrize("target", [[1, 0], [0, 2, 1]])
def test_unsorted_targets_are_refused(target):
    with pytest.raises(ValueError, match=r"^edges must be sorted by target atom$"):
        triplets(torch.tensor(target), 3)
