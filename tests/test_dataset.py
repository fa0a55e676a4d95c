import numpy as np
import torch

from tracer.dataset import GraphDataset, batches_by_size, structures_to_graphs
from tracer.graphs import radius_graph_pbc


def test_collate_matches_per_structure_graphs(tmp_path, flla_structures):
    ids = [f"s{i}" for i in range(len(flla_structures))]
    ds = structures_to_graphs(
        ids, flla_structures, list(range(len(ids))), cutoff=5.0, max_neighbors=10
    )
    path = ds.save(tmp_path / "g.pt")
    ds = GraphDataset.load(path)
    order = [4, 0, 2]
    b = ds.collate(order)
    assert b.num_structures == 3 and torch.equal(
        ds.targets(order), torch.tensor([4.0, 0.0, 2.0], dtype=torch.float64)
    )
    start_atom, start_edge = 0, 0
    for k, i in enumerate(order):
        s = flla_structures[i]
        g = radius_graph_pbc(
            torch.tensor(s.cart_coords), torch.tensor(s.lattice.matrix), 5.0, max_neighbors=10
        )
        n, e = len(s), g.num_edges
        assert torch.equal(
            b.z[start_atom : start_atom + n], torch.tensor([site.specie.Z for site in s])
        )
        assert torch.equal(b.source[start_edge : start_edge + e] - start_atom, g.source)
        assert torch.equal(b.target[start_edge : start_edge + e] - start_atom, g.target)
        assert torch.equal(b.reverse[start_edge : start_edge + e] - start_edge, g.reverse)
        assert torch.equal(b.offset[start_edge : start_edge + e], g.offset)
        assert bool((b.atom_batch[start_atom : start_atom + n] == k).all())
        start_atom, start_edge = start_atom + n, start_edge + e
    assert bool((b.target[1:] >= b.target[:-1]).all())  # globally sorted: triplets work


def test_batches_by_size_caps_structures_and_edges():
    edges = np.array([10, 10, 10, 30, 5, 5])
    batches = batches_by_size(np.arange(6), edges, batch_size=3, max_edges=25, shuffle=False)
    assert [b.tolist() for b in batches] == [[0, 1], [2], [3], [4, 5]]
    rng = np.random.default_rng(0)
    shuffled = batches_by_size(np.arange(6), edges, batch_size=2, shuffle=True, rng=rng)
    assert sorted(np.concatenate(shuffled).tolist()) == list(range(6))


def test_unknown_id_named(flla_structures):
    ds = structures_to_graphs(["a"], flla_structures[:1], None, cutoff=5.0, max_neighbors=None)
    try:
        ds.index_of(["a", "zzz"])
    except KeyError as exc:
        assert "zzz" in str(exc)
    else:
        raise AssertionError("expected KeyError")
