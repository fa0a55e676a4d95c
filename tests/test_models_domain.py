"""The domain module: every mode equals GemNet-T at initialisation, conditions on the domain
once trained, keeps GemNet-T's invariances and passes gradients to its layers."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from tracer.graphs.dataset import structures_to_graphs
from tracer.models.domain import MODES, DomainConfig, DomainGemNetT
from tracer.models.gemnet import GemNetTConfig

CFG = GemNetTConfig(num_radial=8, num_blocks=2, emb_size_atom=16, emb_size_edge=16,
                    emb_size_trip=8, emb_size_bil_trip=8, emb_size_cbf=8, emb_size_rbf=8,
                    num_atom=1, cutoff=5.0, max_neighbors=12)  # fmt: skip


def _batch(structures):
    ids = [str(i) for i in range(len(structures))]
    data = structures_to_graphs(ids, structures, None, cutoff=5.0, max_neighbors=12)
    return data.collate(np.arange(len(structures)))


def _model(mode, seed=0):
    torch.manual_seed(seed)
    return DomainGemNetT(CFG, DomainConfig(mode=mode, num_domains=2, emb_size=4)).double()


def _perturb(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("base."):
                p.normal_(0.0, 0.3)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_the_baseline_at_initialisation(mode, flla_structures):
    batch = _batch(flla_structures[:4])
    base = _model("baseline")
    model = _model(mode)
    model.base.load_state_dict(base.base.state_dict())
    with torch.no_grad():
        ref = base(batch)
        for d in (0, 1):
            out = model(batch, torch.full((4,), d))
            torch.testing.assert_close(out, ref, rtol=0, atol=0)
    extra = model.num_params - base.num_params
    assert (extra == 0) == (mode == "baseline")


@pytest.mark.parametrize("mode", ["domain_embedding", "film", "offset"])
def test_conditioning_separates_domains_and_keeps_invariances(mode, flla_structures):
    model = _model(mode)
    _perturb(model)
    s = flla_structures[2]
    rot = Rotation.random(random_state=3).as_matrix()
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.cart_coords @ rot.T,
                        coords_are_cartesian=True)  # fmt: skip
    batch = _batch([s, rotated])
    with torch.no_grad():
        d0 = model(batch, torch.tensor([0, 0]))
        d1 = model(batch, torch.tensor([1, 1]))
        mixed = model(batch, torch.tensor([0, 1]))
    torch.testing.assert_close(d0[0], d0[1], rtol=0, atol=1e-9)  # rotation
    assert abs(float(d0[0] - d1[0])) > 1e-6  # the domain changes the prediction
    torch.testing.assert_close(mixed, torch.stack([d0[0], d1[1]]), rtol=0, atol=1e-9)


def test_the_offset_mode_shifts_each_domain_by_its_own_number(flla_structures):
    batch = _batch(flla_structures[:3])
    base, model = _model("baseline"), _model("offset")
    model.base.load_state_dict(base.base.state_dict())
    with torch.no_grad():
        model.offset.weight.copy_(torch.tensor([[0.25], [-1.5]], dtype=torch.float64))
        ref = base(batch)
        out = model(batch, torch.tensor([0, 1, 1]))
    torch.testing.assert_close(out - ref, torch.tensor([0.25, -1.5, -1.5], dtype=torch.float64))
    assert model.num_params - base.num_params == 2  # one number per domain


def test_gradients_reach_the_conditioning_layers(flla_structures):
    model = _model("film")
    batch = _batch(flla_structures[:3])
    model(batch, torch.tensor([0, 1, 1])).sum().backward()
    film = [p.grad for n, p in model.named_parameters() if n.startswith("film.")]
    assert film and all(g is not None and torch.isfinite(g).all() for g in film)
    assert any(g.abs().sum() > 0 for g in film)
    with pytest.raises(ValueError, match="mode"):
        DomainGemNetT(CFG, DomainConfig(mode="adapter"))


def test_padded_batches_carry_the_domain_and_keep_the_real_outputs(flla_structures):
    from tracer.graphs.dataset import GraphDataset
    from tracer.graphs.padding import plan_static_shapes

    structures = flla_structures[:5]
    ids = [str(i) for i in range(5)]
    one = structures_to_graphs(ids, structures, [0.0] * 5, cutoff=5.0, max_neighbors=12)
    two = structures_to_graphs([f"b{i}" for i in ids], structures, [0.0] * 5, cutoff=5.0,
                               max_neighbors=12)  # fmt: skip
    data = GraphDataset.concat([one, two])
    assert data.domain.tolist() == [0] * 5 + [1] * 5
    model = _model("film")
    _perturb(model)
    idx = np.array([0, 5, 3, 9])
    shapes = plan_static_shapes(data, [idx, np.arange(10)], buckets=1)
    padded, _, weight = data.collate_padded(idx, shapes)
    assert padded.domain.tolist()[:4] == [0, 1, 0, 1] and padded.num_structures > 4
    with torch.no_grad():
        plain = model(data.collate(idx))
        out = model(padded)[: len(idx)]
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-9)
    assert weight[: len(idx)].eq(1).all() and weight[len(idx) :].eq(0).all()
    assert abs(float(plain[0] - plain[1])) > 1e-6  # the same structure, another domain


@pytest.mark.parametrize("mode", ["domain_embedding", "film"])
def test_a_deep_copy_conditions_itself(mode, flla_structures):
    """The weight average (EMA) is a deep copy: its hooks must use the copy's own layers."""
    import copy

    model = _model(mode)
    _perturb(model)
    twin = copy.deepcopy(model)
    batch = _batch(flla_structures[:2])
    dom = torch.tensor([0, 1])
    with torch.no_grad():
        ref = model(batch, dom)
        torch.testing.assert_close(twin(batch, dom), ref, rtol=0, atol=0)
        for name, p in twin.named_parameters():
            if not name.startswith("base."):
                p.zero_()  # the copy alone loses its conditioning
        assert not torch.allclose(twin(batch, dom), ref)
        torch.testing.assert_close(model(batch, dom), ref, rtol=0, atol=0)
