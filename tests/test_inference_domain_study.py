"""The domain study's bookkeeping: every reason the domain gives is counted under its check."""

import numpy as np
import pytest
from scipy.stats import binom

from tracer.inference.applicability import GEOMETRY
from tracer.inference.domain_study import (
    MIN_DETECTION,
    SHIFTS,
    absent_element,
    accepts,
    check_name,
    min_detection_to_accept,
    predicted_part,
    shifted_validation,
    weak_kinds,
)


@pytest.mark.parametrize(
    ("reason", "check"),
    [
        *[(f"{text} 0.5 outside training range [0, 0.4]", key) for key, text in GEOMETRY.items()],
        ("elements never in training: Tc", "elements_never_seen"),
        ("elements rare in training: Pa (2)", "elements_rare"),
        (
            "far from training structures in the model's representation (kNN distance 3 > 2)",
            "representation",
        ),
        ("no symmetry within 0.1 Å (space group P1; 0.4% of training structures)", "symmetry"),
    ],
)
def test_each_reason_is_counted_under_its_check(reason, check):
    assert check_name(reason) == check


def test_an_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown reason 'cosmic rays'"):
        check_name("cosmic rays")


def test_the_share_to_accept_is_the_goal_plus_two_binomial_standard_errors():
    for n in (50, 393, 394, 5000):
        se = binom(n, MIN_DETECTION).std() / n  # scipy's binomial as the reference
        assert min_detection_to_accept(n) == pytest.approx(MIN_DETECTION + 2 * se)
    assert round(min_detection_to_accept(394), 3) == 0.930
    with pytest.raises(ValueError, match="n_val=0"):
        min_detection_to_accept(0)


def test_weak_kinds_are_read_from_the_validation_copies():
    import json
    from pathlib import Path

    from tracer.pipeline.packed import unpacked

    planted = {"n_val": 394,
               "shift_detection": {"strained": {"flagged_fraction_val": 0.929,
                                                "flagged_fraction": 0.99},
                                   "vacuum": {"flagged_fraction_val": 0.931,
                                              "flagged_fraction": 0.1}}}  # fmt: skip
    assert weak_kinds(planted) == {"strained": 0.929}  # test shares are not read
    assert weak_kinds(planted, minimum=0.9) == {} and not accepts(planted)
    root = Path(__file__).resolve().parents[1]
    shipped = json.loads((root / "tracer/pretrained/flla_gemnet_t/ood.json").read_text())
    assert weak_kinds(shipped) == {} and accepts(shipped)  # worst 94.4% of 393
    with unpacked(root / "results/flla_cv5/runs") as runs:
        earlier = [json.loads((runs / f"domain/fold_{f}/ood.json").read_text()) for f in range(5)]
    assert set(weak_kinds(earlier[4])) == {"strained", "vacuum"}
    assert not any(accepts(r) for r in earlier)  # as docs/screening.md declares


def test_an_unknown_design_is_refused_before_any_work():
    from tracer.inference.domain_study import run_domain_study

    with pytest.raises(ValueError, match=r"unknown domain design 'loose'.*split-tails"):
        run_domain_study(None, None, {}, design="loose")


def test_the_absent_element_is_the_lightest_one_no_training_structure_holds():
    assert absent_element([np.array([1, 2, 8]), np.array([3, 8])]) == 4
    assert absent_element([np.array([8, 26])]) == 1


def test_no_absent_element_is_an_error_not_a_made_up_one():
    with pytest.raises(ValueError, match="no element is left"):
        absent_element([np.arange(1, 95)])


def test_a_predicted_part_and_its_shifted_copies_come_from_the_ensemble(flla_table):
    from tracer.inference.predict import Ensemble

    ens = Ensemble.load()
    by_id = flla_table.set_index("id")
    ids = list(flla_table["id"].iloc[:6])
    part = predicted_part(ens, by_id, ids, "val", progress=lambda m: None)
    direct = ens.predict(list(by_id.loc[ids, "structure"]), device="cpu")
    target = by_id.loc[ids, "target"].to_numpy(float)
    np.testing.assert_allclose(part["abs_err"], np.abs(direct["mean"] - target), atol=1e-6)
    np.testing.assert_allclose(part["sigma"], direct["sigma"], atol=1e-6)
    assert part["embedding"].shape[0] == len(part["geometry"].z) == 6
    absent = absent_element(part["z"])
    copies = shifted_validation(ens, part["structures"], absent, progress=lambda m: None)
    assert set(copies) == set(SHIFTS)
    again = shifted_validation(ens, part["structures"], absent, progress=lambda m: None)
    for kind, (geometry, embedding, _, n_made) in copies.items():
        assert n_made == 6 and len(geometry.z) == embedding.shape[0] <= 6
        np.testing.assert_array_equal(embedding, again[kind][1])  # one seeded stream
    assert all(absent in z for z in copies["absent_element"][0].z)
