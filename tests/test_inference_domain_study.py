"""The domain study's bookkeeping: every reason the domain gives is counted under its check."""

import pytest
from scipy.stats import binom

from tracer.inference.applicability import GEOMETRY
from tracer.inference.domain_study import (
    MIN_DETECTION,
    accepts,
    check_name,
    min_detection_to_accept,
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
