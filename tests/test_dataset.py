import itertools

import numpy as np
import pytest
import torch

from tracer.graphs.dataset import GraphDataset, batches_by_size, structures_to_graphs
from tracer.graphs.padding import (
    PaddedBatcher,
    fitting_shape,
    plan_static_shape,
    plan_static_shapes,
)
from tracer.graphs.periodic import radius_graph_pbc
from tracer.models.gemnet import GemNetT, GemNetTConfig


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


def test_epoch_batches_are_a_seeded_shuffle_per_epoch():
    from tracer.graphs.dataset import epoch_batches

    edges = np.arange(40) % 7 + 3
    idx = np.arange(3, 40)

    def cut(seed, epoch):
        return [b.tolist() for b in epoch_batches(idx, edges, batch_size=5, max_edges=20,
                                                  seed=seed, epoch=epoch)]  # fmt: skip

    first = cut(1, 0)
    assert first == cut(1, 0)  # a resumed or second trainer cuts the same epoch
    assert first != cut(1, 1) and first != cut(2, 0)  # reshuffled per epoch and per seed
    assert sorted(i for b in first for i in b) == idx.tolist()
    assert all(len(b) <= 5 and edges[b].sum() <= 20 for b in first)


def test_scale_fit_batches_are_the_first_of_their_own_seeded_shuffle():
    from tracer.graphs.dataset import epoch_batches, scale_fit_batches

    edges = np.arange(40) % 7 + 3
    idx = np.arange(3, 40)
    fit = [b.tolist() for b in scale_fit_batches(idx, edges, batch_size=5, seed=1, count=3)]
    assert fit == [b.tolist() for b in scale_fit_batches(idx, edges, batch_size=5, seed=1, count=3)]
    assert len(fit) == 3 and all(len(b) == 5 for b in fit)
    assert len({i for b in fit for i in b}) == 15 and set().union(*fit) <= set(idx.tolist())
    # the convention the checkpoints of record were trained with: shuffle by default_rng([seed, 0])
    order = np.random.default_rng([1, 0]).permutation(idx).tolist()
    assert fit == [order[0:5], order[5:10], order[10:15]]
    first_epoch = epoch_batches(idx, edges, batch_size=5, max_edges=None, seed=1, epoch=0)
    assert fit != [b.tolist() for b in first_epoch[:3]]  # not the first epoch's batches
    assert scale_fit_batches(idx, edges, batch_size=5, seed=2, count=3)[0].tolist() != fit[0]


def test_unknown_id_named(flla_structures):
    ds = structures_to_graphs(["a"], flla_structures[:1], None, cutoff=5.0, max_neighbors=None)
    try:
        ds.index_of(["a", "zzz"])
    except KeyError as exc:
        assert "zzz" in str(exc)
    else:
        raise AssertionError("expected KeyError")


def _small_graphs(flla_structures, n=7):
    return structures_to_graphs(
        [f"s{i}" for i in range(n)],
        flla_structures[:n],
        [float(-i) for i in range(n)],
        cutoff=5.0,
        max_neighbors=8,
    )


def test_triplet_counts_match_built_triplets(flla_structures):
    data = _small_graphs(flla_structures)
    n_trip, k_max = data.triplet_counts()
    for i in range(len(data)):
        batch = data.collate([i])
        assert n_trip[i] == batch.triplets.num_triplets
        assert k_max[i] == batch.k_max


def test_padded_batch_gives_identical_outputs_loss_and_gradients(flla_structures):
    data = _small_graphs(flla_structures)
    plans = [np.array([0, 3, 5]), np.array([1, 2, 4, 6]), np.array([6])]
    shape = plan_static_shape(data, plans, round_to=8)
    assert shape.structures == 5
    cfg = GemNetTConfig(
        num_radial=8, num_blocks=1, emb_size_atom=16, emb_size_edge=16, emb_size_trip=8,
        emb_size_bil_trip=8, emb_size_cbf=8, emb_size_rbf=8, num_atom=1, cutoff=5.0,
        max_neighbors=8,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GemNetT(cfg).double()
    for plan in plans:
        batch, y = data.collate(plan), data.targets(plan)
        padded, y_pad, w = data.collate_padded(plan, shape)
        assert padded.z.numel() == shape.atoms and padded.source.numel() == shape.edges
        assert padded.triplets.num_triplets == shape.triplets
        assert torch.equal(padded.reverse[padded.reverse], torch.arange(shape.edges))

        model.zero_grad()
        ref = model(batch)
        (ref - y).abs().mean().backward()
        ref_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        out = model(padded)
        loss = ((out - y_pad).abs() * w).sum() / w.sum()
        loss.backward()
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[: len(plan)], ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(loss, (ref - y).abs().mean(), rtol=1e-10, atol=1e-10)
        for p, g in zip(model.parameters(), ref_grads, strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-10)


def test_pad_batch_refuses_a_batch_too_large(flla_structures):
    data = _small_graphs(flla_structures)
    shape = plan_static_shape(data, [np.array([0])], round_to=2)
    with pytest.raises(ValueError, match="fits none"):
        data.collate_padded(np.array([0, 1, 2, 3]), shape)


def test_padded_batcher_equals_collate_padded(flla_structures):
    data = _small_graphs(flla_structures)
    plans = [np.array([6, 0, 3]), np.array([1, 2, 4, 5]), np.array([5])]
    shapes = plan_static_shapes(data, plans, buckets=3, round_to=16)
    assert len(shapes) > 1  # batches land in different shapes
    batcher = PaddedBatcher(data, shapes)
    for plan in plans:
        fast, y_fast, w_fast = batcher(plan)
        ref, y_ref, w_ref = data.collate_padded(plan, shapes)
        for name in ("z", "pos", "cell", "atom_batch", "source", "target", "offset", "reverse"):
            assert torch.equal(getattr(fast, name), getattr(ref, name)), name
        assert torch.equal(fast.atom_counts, ref.atom_counts)
        for name in ("edge_in", "edge_out", "slot"):
            assert torch.equal(getattr(fast.triplets, name), getattr(ref.triplets, name)), name
        assert fast.k_max == ref.k_max and fast.num_structures == ref.num_structures
        assert torch.equal(y_fast, y_ref) and torch.equal(w_fast, w_ref)


def test_bucketed_shapes_grow_hold_every_batch_and_pad_less(flla_structures):
    data = _small_graphs(flla_structures)
    rng = np.random.default_rng(0)
    plans = [rng.choice(len(data), size=int(rng.integers(1, 5)), replace=False) for _ in range(40)]
    (one,) = plan_static_shapes(data, plans, buckets=1, round_to=8)
    assert one == plan_static_shape(data, plans, round_to=8)
    shapes = plan_static_shapes(data, plans, buckets=4, round_to=8)
    assert 1 < len(shapes) <= 4 and shapes[-1] == one
    for small, large in itertools.pairwise(shapes):
        assert all(a <= b for a, b in zip(small.__dict__.values(), large.__dict__.values()))
        assert small != large
    n_trip, _ = data.triplet_counts()
    padded_trip = {"one": 0, "buckets": 0}
    for plan in plans:
        batch, _, w = data.collate_padded(plan, shapes)
        assert int(w.sum()) == len(plan)
        assert batch.triplets.num_triplets in {s.triplets for s in shapes}
        padded_trip["buckets"] += batch.triplets.num_triplets
        padded_trip["one"] += one.triplets
    assert padded_trip["buckets"] < padded_trip["one"]
    with pytest.raises(ValueError, match="buckets"):
        plan_static_shapes(data, plans, buckets=0)


def test_fitting_shape_takes_the_first_that_holds_the_batch(flla_structures):
    data = _small_graphs(flla_structures)
    shapes = plan_static_shapes(data, [np.array([0]), np.arange(len(data))], buckets=2)
    sizes = {"structures": 1, "atoms": 1, "edges": 2, "triplets": 0, "k_max": 1}
    assert fitting_shape(shapes, **sizes) == shapes[0]
    assert fitting_shape(shapes, **{**sizes, "structures": shapes[0].structures}) == shapes[1]
    with pytest.raises(ValueError, match="fits none"):
        fitting_shape(shapes, **{**sizes, "triplets": shapes[-1].triplets + 1})
