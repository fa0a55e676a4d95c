"""The domain study's bookkeeping: every reason the domain gives is counted under its check."""

import pytest

from tracer.inference.applicability import GEOMETRY
from tracer.inference.domain_study import check_name


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
