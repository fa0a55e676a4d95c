"""The applicability domain: each check fires on what it is meant for and stays quiet inside
the training range; the representation threshold comes from validation."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from tracer.graphs.cell_lists import graph_dataset
from tracer.graphs.dataset import structure_tensors
from tracer.inference.applicability import (
    Domain,
    descriptors,
    fit_domain,
    geometry_of,
    knn_distance,
    pair_medians,
)


def _geometry(structures):
    arrays = [structure_tensors(s) for s in structures]
    data = graph_dataset([str(k) for k in range(len(arrays))], arrays, cutoff=6.0,
                         max_neighbors=12)  # fmt: skip
    return geometry_of(data)


def test_geometry_descriptors_by_hand():
    """Rock salt at a = 5.64 Å: bonds 2.82 Å, 26.5 Å³ per atom; within 1.3 x covalent radii
    (Na 1.66, Cl 1.02 Å) Na has its 6 Cl and its 12 Na at 3.99 Å, Cl only its 6 Na."""
    from ase.data import covalent_radii

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip
    geo = _geometry([s])
    medians, _ = pair_medians(geo)
    assert medians == {(11, 17): pytest.approx(2.82)}
    g = descriptors(geo, {(11, 17): 2.82 / 1.1}, 1.0)  # as if training bonds were 10% shorter
    ratio = 2.82 / (covalent_radii[11] + covalent_radii[17])
    assert g["min_bond_ratio"][0] == pytest.approx(ratio, rel=1e-6)
    for key in ("bond_dev_min", "bond_dev_median", "bond_dev_max"):
        assert g[key][0] == pytest.approx(np.log(1.1))
    assert g["coordination"][0] == (18 + 6) / 2
    assert g["volume_per_atom"][0] == pytest.approx(5.64**3 / 8)
    assert g["largest_gap"][0] == pytest.approx(5.64 / 2)  # (100) planes 2.82 Å apart


def test_knn_distance_against_brute_force():
    rng = np.random.default_rng(1)
    ref, q = rng.normal(size=(50, 4)), rng.normal(size=(7, 4))
    d = np.linalg.norm(q[:, None] - ref[None], axis=-1)
    np.testing.assert_allclose(knn_distance(q, ref, 3), np.sort(d, 1)[:, :3].mean(1))
    self_d = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    np.testing.assert_allclose(knn_distance(ref, ref, 2, exclude_self=True),
                               np.sort(self_d, 1)[:, 1:3].mean(1))  # fmt: skip


@pytest.fixture(scope="module")
def fitted(flla_structures):
    geo = _geometry(flla_structures)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(geo.z), 8))
    val = rng.normal(size=(len(geo.z), 8))
    domain = fit_domain(geo, geo, emb, val, k=3, representation_quantile=0.9,
                        max_val_flagged=1.0)  # fmt: skip
    return domain, geo, emb, val


def test_threshold_is_the_validation_quantile(fitted):
    domain, _, emb, val = fitted
    assert domain.representation_threshold == pytest.approx(
        np.quantile(knn_distance(val, emb, 3), 0.9)
    )


def test_training_structures_are_inside_and_each_check_fires(fitted, flla_structures):
    domain, geo, emb, _ = fitted
    assert domain.range_quantile == 0.005  # the first tried: validation allows any rate here
    whole = fit_domain(geo, geo, emb, emb, k=3, max_val_flagged=0.0)  # none allowed: min-max
    assert whole.range_quantile == 0.0
    inside = whole.check(geo, emb)  # the training rows themselves: within every range
    assert all(not any("outside" in r or "never" in r for r in why) for why in inside)
    # elements: one never seen
    s = flla_structures[0].copy()
    unseen = next(e for e in range(1, 90) if domain.element_counts.get(e, 0) == 0)
    from pymatgen.core import Element

    s.replace_species({s.composition.elements[0]: Element.from_Z(unseen)})
    [why] = domain.check(_geometry([s]), emb[:1])
    assert any(r.startswith("elements never in training") for r in why)
    # geometry: the same crystal stretched far beyond any training bond
    big = flla_structures[0].copy()
    big.scale_lattice(big.volume * 1.6**3)
    [why] = domain.check(_geometry([big]), emb[:1])
    assert any("outside training range" in r for r in why)
    # vacuum: a slab of the first crystal
    slab = flla_structures[0].copy()
    m = slab.lattice.matrix.copy()
    m[2] *= 1 + 15.0 / np.linalg.norm(m[2])
    slab = Structure(Lattice(m), slab.species, slab.cart_coords, coords_are_cartesian=True)
    [why] = domain.check(_geometry([slab]), emb[:1])
    assert any(r.startswith("widest empty slab") for r in why)
    # representation: far from every training embedding
    [why] = domain.check(_geometry(flla_structures[:1]), emb[:1] + 100.0)
    assert any("representation" in r for r in why)


def test_round_trip(tmp_path, fitted):
    domain = fitted[0]
    back = Domain.load(domain.save(tmp_path / "d.pt"))
    assert back.ranges == domain.ranges and back.element_counts == domain.element_counts
    np.testing.assert_array_equal(back.embeddings, domain.embeddings)
    assert isinstance(torch.load(tmp_path / "d.pt", weights_only=False)["embeddings"],
                      torch.Tensor)  # fmt: skip
