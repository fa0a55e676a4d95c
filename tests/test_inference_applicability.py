"""The applicability domain: each check fires on what it is meant for and stays quiet inside
the training range; the representation threshold comes from validation."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from tracer.graphs.cell_lists import graph_dataset
from tracer.graphs.dataset import structure_tensors
from tracer.inference.applicability import (
    RARE_P1_FRACTION,
    SHELLS,
    BondLengths,
    Domain,
    choose_thresholds,
    descriptors,
    fit_domain,
    fit_training,
    geometry_of,
    knn_distance,
)
from tracer.inference.thresholds import DESIGNS


@pytest.fixture(autouse=True, scope="module")
def small_bond_length_model():
    """A smaller booster than the shipped one (40 rounds, not 400): the tests check what is
    computed, not how well, and every fit here reads its settings from ``BondLengths.PARAMS``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BondLengths, "PARAMS", {**BondLengths.PARAMS, "max_iter": 40})
        yield


def _geometry(structures):
    arrays = [structure_tensors(s) for s in structures]
    data = graph_dataset([str(k) for k in range(len(arrays))], arrays, cutoff=6.0,
                         max_neighbors=12)  # fmt: skip
    return geometry_of(data)


def _rock_salt():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip


def test_geometry_descriptors_by_hand():
    """Rock salt at a = 5.64 Å: bonds 2.82 Å, 26.5 Å³ per atom; within 1.3 x covalent radii
    (Na 1.66, Cl 1.02 Å) Na has its 6 Cl and its 12 Na at 3.99 Å, Cl only its 6 Na. Each atom's
    shells: its 6 nearest within 1.05-1.3 x 2.82 Å; within 1.5 x all 18 (the graph keeps the
    ties at its cap of 12)."""
    from ase.data import covalent_radii

    geo = _geometry([_rock_salt()])
    assert geo.nn_distance[0] == pytest.approx(np.full(8, 2.82))
    np.testing.assert_array_equal(geo.shells[0], np.tile([6, 6, 6, 6, 18], (8, 1)))
    np.testing.assert_allclose(geo.shell_z[0], np.where(geo.z[0] == 11, 17.0, 11.0))
    assert geo.scalars["space_group"][0] == 225
    expected = [np.full(8, np.log(2.82 / 1.1))]  # as if relaxed bonds were 10% shorter
    g = descriptors(geo, expected)
    ratio = 2.82 / (covalent_radii[11] + covalent_radii[17])
    assert g["min_bond_ratio"][0] == pytest.approx(ratio, rel=1e-6)
    for key in ("bond_dev_min", "bond_dev_median", "bond_dev_max"):
        assert g[key][0] == pytest.approx(np.log(1.1))
    assert g["coordination"][0] == (18 + 6) / 2
    assert g["volume_per_atom"][0] == pytest.approx(5.64**3 / 8)
    assert g["largest_gap"][0] == pytest.approx(5.64 / 2)  # (100) planes 2.82 Å apart


def test_bond_lengths_see_strain_as_a_shift_and_rattling_as_no_symmetry(flla_structures):
    """Every feature of the bond-length model is scale-free: a cell scaled by 1.1 gets the same
    expected distances, so its deviations move by exactly log 1.1; rattling leaves P1."""
    geo = _geometry(flla_structures)
    bonds = BondLengths.fit(geo)
    assert BondLengths.features(geo).shape == (sum(map(len, geo.z)), 3 + len(SHELLS) + 92 * 2 + 1)
    big = [s.copy() for s in flla_structures]
    for s in big:
        s.scale_lattice(s.volume * 1.1**3)
    strained = _geometry(big)
    for a, b in zip(bonds.log_expected(geo), bonds.log_expected(strained), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    base = descriptors(geo, bonds.log_expected(geo))["bond_dev_median"]
    moved = descriptors(strained, bonds.log_expected(strained))["bond_dev_median"]
    np.testing.assert_allclose(moved - base, np.log(1.1), atol=1e-12)
    rng = np.random.default_rng(0)
    salt = _rock_salt()
    rattled = Structure(salt.lattice, salt.species,
                        salt.cart_coords + rng.normal(0, 0.2, (len(salt), 3)),
                        coords_are_cartesian=True)  # fmt: skip
    assert _geometry([rattled]).scalars["space_group"][0] == 1


def test_out_of_fold_bond_lengths_come_from_models_without_the_structure(flla_structures):
    """Fold by fold as scikit-learn's GroupKFold deals the structures; an in-sample fit is
    closer to the training distances than the out-of-fold one."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import GroupKFold

    geo = _geometry(flla_structures * 2)  # two copies: a structure's twin is another group
    oof = np.concatenate(BondLengths.out_of_fold(geo, folds=3))
    x, y = BondLengths.features(geo), np.log(np.concatenate(geo.nn_distance))
    groups = np.repeat(np.arange(len(geo.z)), [len(z) for z in geo.z])
    fit_rows, held = next(GroupKFold(n_splits=3).split(x, y, groups))
    ref = HistGradientBoostingRegressor(**BondLengths.PARAMS).fit(x[fit_rows], y[fit_rows])
    np.testing.assert_allclose(oof[held], ref.predict(x[held]))
    inside = np.concatenate(BondLengths.fit(geo).log_expected(geo))
    assert np.abs(inside - y).mean() < np.abs(oof - y).mean()


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
    domain = fit_domain(geo, geo, emb, val, k=3, representation_quantiles=(0.9,),
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
    # (the bond deviations' ranges come from out-of-fold fits: not asserted for training rows)
    assert all(not any(("outside" in r and "expected bond length" not in r) or "never" in r
                       for r in why) for why in inside)  # fmt: skip
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
    # symmetry: a rattled crystal is P1, and P1 is rare in training here
    rng = np.random.default_rng(0)
    big_cell = flla_structures[-1]
    shaken = Structure(big_cell.lattice, big_cell.species,
                       big_cell.cart_coords + rng.normal(0, 0.2, (len(big_cell), 3)),
                       coords_are_cartesian=True)  # fmt: skip
    assert domain.p1_fraction <= RARE_P1_FRACTION
    [why] = domain.check(_geometry([shaken]), emb[:1])
    assert any(r.startswith("no symmetry within 0.1 Å") for r in why)
    [why] = domain.check(_geometry([big_cell]), emb[:1])
    assert not any(r.startswith("no symmetry") for r in why)
    # ... unless P1 cells are common in training: then the check does not apply
    from dataclasses import replace

    [why] = replace(domain, p1_fraction=0.2).check(_geometry([shaken]), emb[:1])
    assert not any(r.startswith("no symmetry") for r in why)
    # representation: far from every training embedding
    [why] = domain.check(_geometry(flla_structures[:1]), emb[:1] + 100.0)
    assert any("representation" in r for r in why)


def test_round_trip(tmp_path, fitted):
    domain = fitted[0]
    back = Domain.load(domain.save(tmp_path / "d.pt"))
    assert back.ranges == domain.ranges and back.element_counts == domain.element_counts
    assert back.p1_fraction == domain.p1_fraction
    geo = _geometry([_rock_salt()])
    np.testing.assert_array_equal(back.bond_lengths.log_expected(geo)[0],
                                  domain.bond_lengths.log_expected(geo)[0])  # fmt: skip
    np.testing.assert_array_equal(back.embeddings, domain.embeddings)
    assert isinstance(torch.load(tmp_path / "d.pt", weights_only=False)["embeddings"],
                      torch.Tensor)  # fmt: skip


def test_a_domain_from_an_earlier_tracer_is_refused_with_the_fix(tmp_path, fitted):
    payload = torch.load(fitted[0].save(tmp_path / "d.pt"), weights_only=False)
    del payload["bond_lengths"]
    payload["pair_medians"] = {}
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old.pt: a domain fitted by an earlier tracer.*"
                                         r"tracer fit-domain --force"):  # fmt: skip
        Domain.load(tmp_path / "old.pt")


def _with_stretched_copies(structures):
    """The structures' geometry, random 4-d embeddings, and copies stretched by 4% (the same
    embeddings) as the one kind of shifted validation copy."""
    geo = _geometry(structures)
    stretched = [s.copy() for s in structures]
    for s in stretched:
        s.scale_lattice(s.volume * 1.04**3)
    emb = np.random.default_rng(3).normal(size=(len(geo.z), 4))
    return geo, emb, {"stretched": (_geometry(stretched), emb)}


def test_thresholds_chosen_on_validation_detect_the_most_within_the_budget(flla_structures):
    """With shifted validation copies the chosen setting is, of all in the grid that keep within
    the budget, one whose worst detection rate is the highest (checked by brute force); with no
    setting within the budget, the least sensitive one is taken."""
    geo, emb, shifted = _with_stretched_copies(flla_structures)
    grid = {"representation_quantiles": (0.5, 1.0), "strain_quantiles": (0.3, 0.0),
            "range_quantiles": (0.0,)}  # fmt: skip
    training = fit_training(geo)  # fit_domain = fit_training, then choose_thresholds
    # 5 of 7 validation structures may be flagged, not 6: the toy bond-length model flags 4 or 5
    # of them at the narrow strain range, depending on the CPU's float rounding
    budget = 0.75
    chosen = choose_thresholds(training, emb, geo, emb, shifted_val=shifted, k=2,
                               min_element_count=1, max_val_flagged=budget, **grid)  # fmt: skip

    def rate(domain, g):
        return np.mean([bool(r) for r in domain.check(g, emb)])

    scores = []
    for rq in grid["representation_quantiles"]:
        for sq in grid["strain_quantiles"]:
            d = choose_thresholds(training, emb, geo, emb, k=2, min_element_count=1,
                                  max_val_flagged=1.0, representation_quantiles=(rq,),
                                  strain_quantiles=(sq,), range_quantiles=(0.0,))  # fmt: skip
            if rate(d, geo) <= budget:
                scores.append(rate(d, shifted["stretched"][0]))
    assert rate(chosen, geo) <= budget
    assert rate(chosen, shifted["stretched"][0]) == max(scores)
    assert chosen.strain_quantile == 0.3  # the strained copies need the narrow strain range
    none_fits = choose_thresholds(training, emb, geo, emb, shifted_val=shifted, k=2,
                                  min_element_count=1, max_val_flagged=-1.0, **grid)  # fmt: skip
    assert (none_fits.representation_quantile, none_fits.strain_quantile) == (1.0, 0.0)


def test_split_tails_choose_each_side_of_the_strain_check_on_validation(flla_structures):
    """With the strain check's two sides searched apart, the chosen pair is, of all pairs that
    keep within the budget, one whose detection of stretched copies is highest (brute force over
    single settings); its ranges are the training quantiles of those tails; a descriptor
    bounded above only has no lower bound; and since the split grid holds the tied one, it never
    detects less than the tied choice under the same budget."""
    geo, emb, shifted = _with_stretched_copies(flla_structures)
    training = fit_training(geo)
    common = {"k": 2, "min_element_count": 1, "representation_quantiles": (1.0,),
              "range_quantiles": (0.0,), "upper_only": ("largest_gap",)}  # fmt: skip
    tails, budget = (0.45, 0.3, 0.0), 0.5

    def rate(domain, g):
        return np.mean([bool(r) for r in domain.check(g, emb)])

    split = choose_thresholds(training, emb, geo, emb, shifted_val=shifted,
                              max_val_flagged=budget, strain_quantiles=tails,
                              strain_low_quantiles=tails, **common)  # fmt: skip
    scores = {}
    for hi in tails:
        for lo in tails:
            d = choose_thresholds(training, emb, geo, emb, max_val_flagged=1.0,
                                  strain_quantiles=(hi,), strain_low_quantiles=(lo,),
                                  **common)  # fmt: skip
            if rate(d, geo) <= budget:
                scores[hi, lo] = rate(d, shifted["stretched"][0])
    assert rate(split, geo) <= budget
    assert scores[split.strain_quantile, split.strain_low_quantile] == max(scores.values())
    median = training.descriptors["bond_dev_median"]
    assert split.ranges["bond_dev_median"] == (
        pytest.approx(np.quantile(median, split.strain_low_quantile)),
        pytest.approx(np.quantile(median, 1 - split.strain_quantile)))  # fmt: skip
    gap = training.descriptors["largest_gap"]
    assert split.ranges["largest_gap"] == (-np.inf, pytest.approx(gap.max()))
    tied = choose_thresholds(training, emb, geo, emb, shifted_val=shifted,
                             max_val_flagged=budget, strain_quantiles=tails,
                             **{**common, "upper_only": ()})  # fmt: skip
    assert tied.strain_low_quantile is None
    assert tied.ranges["largest_gap"][0] == pytest.approx(gap.min())
    assert rate(split, shifted["stretched"][0]) >= rate(tied, shifted["stretched"][0])


def test_every_design_is_a_choice_of_fit_domain():
    from tracer.cli import build_parser

    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["fit-domain"]
                  ._actions if a.dest == "design")  # fmt: skip
    assert set(action.choices) == set(DESIGNS)
    assert action.default == "tied"
