"""The domain study's bookkeeping: every reason the domain gives is counted under its check."""

import pytest

from tracer.inference.applicability import GEOMETRY
from tracer.inference.domain_study import check_name, weak_kinds


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


def test_weak_kinds_are_read_from_the_validation_copies():
    import json
    from pathlib import Path

    from tracer.pipeline.packed import unpacked

    planted = {"shift_detection": {"strained": {"flagged_fraction_val": 0.899,
                                                "flagged_fraction": 0.99},
                                   "vacuum": {"flagged_fraction_val": 0.9,
                                              "flagged_fraction": 0.1}}}  # fmt: skip
    assert weak_kinds(planted) == {"strained": 0.899}  # test shares are not read
    root = Path(__file__).resolve().parents[1]
    shipped = json.loads((root / "tracer/pretrained/flla_gemnet_t/ood.json").read_text())
    assert weak_kinds(shipped) == {}
    with unpacked(root / "results/flla_cv5/runs") as runs:
        fold_4 = json.loads((runs / "domain/fold_4/ood.json").read_text())
    assert set(weak_kinds(fold_4)) == {"strained", "vacuum"}
