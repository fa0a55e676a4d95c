"""Physics of GemNet-T: invariances, cell choice, finite gradients, and that it can learn."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from tracer.graphs.dataset import structures_to_graphs
from tracer.models.gemnet import GemNetT, GemNetTConfig, fit_scale_factors, he_orthogonal_
from tracer.models.registry import build_model

CFG = GemNetTConfig(
    num_radial=16,
    num_blocks=2,
    emb_size_atom=32,
    emb_size_edge=32,
    emb_size_trip=16,
    emb_size_bil_trip=16,
    emb_size_cbf=8,
    emb_size_rbf=8,
    cutoff=5.0,
    max_neighbors=12,
)


@pytest.fixture(scope="module", params=["learned", "cgcnn"])
def model(request):
    """The reference's learned atom embedding, and CGCNN element features (physics alike)."""
    torch.manual_seed(0)
    m = GemNetT(replace(CFG, atom_features=request.param)).double().eval()
    if request.param == "cgcnn":  # a non-zero learned residual, as after training
        torch.nn.init.normal_(m.atom_emb.weight, std=0.3)
    # make scale factors non-trivial so they are part of what is tested
    for i, f in enumerate(x for x in m.modules() if type(x).__name__ == "ScaleFactor"):
        f.scale.fill_(0.5 + 0.1 * i)
    return m


def _graphs(structures, targets=None, max_neighbors=CFG.max_neighbors):
    ids = [str(i) for i in range(len(structures))]
    return structures_to_graphs(
        ids, structures, targets, cutoff=CFG.cutoff, max_neighbors=max_neighbors
    )


def _predict(model, structures):
    ds = _graphs(structures)
    with torch.no_grad():
        return model(ds.collate(np.arange(len(structures)))).numpy()


def test_rotation_translation_permutation_wrapping(model, flla_structures):
    rng = np.random.default_rng(0)
    for s in flla_structures[1:6]:
        base = _predict(model, [s])[0]
        rot = Rotation.random(random_state=1).as_matrix()
        rotated = Structure(
            Lattice(s.lattice.matrix @ rot.T),
            s.species,
            s.cart_coords @ rot.T,
            coords_are_cartesian=True,
        )
        moved = s.copy()
        moved.translate_sites(list(range(len(s))), [0.31, -0.2, 0.77], to_unit_cell=False)
        perm = rng.permutation(len(s))
        permuted = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
        unwrapped = Structure(
            s.lattice, s.species, s.frac_coords + rng.integers(-3, 4, size=(len(s), 3))
        )
        out = _predict(model, [rotated, moved, permuted, unwrapped])
        np.testing.assert_allclose(out, base, atol=1e-9, rtol=0)


def test_supercell_gives_same_energy_per_atom(model, flla_structures):
    for s in flla_structures[:5]:
        sc = s.copy()
        sc.make_supercell([2, 1, 1])
        e, e_sc = _predict(model, [s, sc])
        assert abs(e - e_sc) < 1e-5, s.formula


def test_batch_composition_does_not_change_predictions(model, flla_structures):
    alone = [_predict(model, [s])[0] for s in flla_structures]
    together = _predict(model, flla_structures)
    np.testing.assert_allclose(together, alone, atol=1e-10)


def test_gradients_finite_for_collinear_triplets(model):
    # a chain: every atom's neighbours along x are exactly collinear
    s = Structure(Lattice([[2.5, 0, 0], [0, 8.0, 0], [0, 0, 8.0]]), ["C"], [[0, 0, 0]])
    ds = _graphs([s], max_neighbors=None)
    batch = ds.collate([0])
    batch.pos.requires_grad_(True)
    model.zero_grad()
    out = model(batch)
    out.sum().backward()
    assert torch.isfinite(batch.pos.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_scale_factors_fit_in_call_order(flla_structures):
    torch.manual_seed(1)
    m = GemNetT(CFG)
    ds = _graphs(flla_structures)
    fitted = fit_scale_factors(m, [ds.collate(np.arange(len(flla_structures)))])
    assert list(fitted)[0] == "out_blocks.0.scale_sum"
    assert len(fitted) == 1 + CFG.num_blocks * 4
    assert all(np.isfinite(v) and v > 0 for v in fitted.values())


def test_can_overfit_a_tiny_set(flla_structures):
    torch.manual_seed(0)
    m = GemNetT(CFG)
    targets = torch.tensor([-1.0, 0.5, 1.5, -0.3, 0.8, -1.7, 0.1])
    ds = _graphs(flla_structures, targets.tolist())
    batch = ds.collate(np.arange(7))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss = (m(batch) - targets).abs().mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_a_model_built_to_be_loaded_skips_only_the_orthogonal_init(flla_structures):
    """``build_model(initialise=False)``: no orthogonal weights (nothing of the He-orthogonal
    statistics), yet once the state dict is loaded it predicts as the model it came from."""
    torch.manual_seed(0)
    ref = build_model(CFG).double().eval()
    torch.manual_seed(0)
    bare = build_model(CFG, initialise=False)
    w_ref, w_bare = ref.edge_emb.dense.linear.weight, bare.edge_emb.dense.linear.weight
    # He-orthogonal rows have zero mean and variance 1/fan_in; torch's default Linear init not
    assert torch.allclose(w_ref.mean(1), torch.zeros(w_ref.shape[0], dtype=w_ref.dtype), atol=1e-6)
    assert not torch.allclose(w_bare.mean(1), torch.zeros(w_bare.shape[0]), atol=1e-6)
    assert torch.allclose(he_orthogonal_(w_bare.detach().clone()).mean(1),
                          torch.zeros(w_bare.shape[0]), atol=1e-6)  # the switch is reset after
    bare.double().load_state_dict(ref.state_dict(), strict=True)
    bare.eval()
    np.testing.assert_array_equal(_predict(bare, flla_structures), _predict(ref, flla_structures))


def test_repr_and_parameter_count():
    m = GemNetT(CFG)
    assert "GemNetT(blocks=2" in repr(m) and m.num_params == sum(p.numel() for p in m.parameters())


def test_variance_head_gives_a_mean_and_a_positive_variance(flla_structures):
    """``variance_head``: ``[B, 2]``, split by ``mean_and_variance`` into the mean and
    softplus(raw) + 1e-6; the other weights are those of the one-output model (same names and
    shapes but the output layers'); without it the model gives ``[B]``."""
    from tracer.models.gemnet import MIN_VARIANCE, mean_and_variance

    g = structures_to_graphs(
        [f"s{i}" for i in range(4)], flla_structures[:4], [0.0] * 4, cutoff=5.0, max_neighbors=8
    ).collate(np.arange(4))
    torch.manual_seed(0)
    plain = GemNetT(CFG)
    torch.manual_seed(0)
    head = GemNetT(replace(CFG, variance_head=True))
    out = head(g)
    assert out.shape == (4, 2) and plain(g).shape == (4,)
    mean, var = mean_and_variance(out)
    torch.testing.assert_close(mean, out[:, 0])
    torch.testing.assert_close(var, torch.nn.functional.softplus(out[:, 1]) + MIN_VARIANCE)
    assert (var > 0).all()
    assert mean_and_variance(plain(g))[1] is None
    with pytest.raises(ValueError, match=r"\[B\] or \[B, 2\]"):
        mean_and_variance(torch.zeros(4, 3))
    a, b = plain.state_dict(), head.state_dict()
    assert a.keys() == b.keys()
    differ = {k for k in a if a[k].shape != b[k].shape}
    assert differ and all(k.startswith("out_blocks.") and ".out." in k for k in differ)
