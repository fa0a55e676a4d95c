"""Every verdict rule of the audit with a case where it must PASS, one where it must FAIL and,
where it has one, its INCONCLUSIVE band."""

import pytest

from tracer.audit.rules import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Measurement,
    NotTestableError,
    apply,
    describe,
)


def m(value=None, interval=None, **extra):
    return Measurement(value, interval, None, "", extra)


@pytest.mark.parametrize(
    ("rule", "measurement", "expected"),
    [
        ({"kind": "below", "threshold": 0.0}, m(-0.01, (-0.02, -0.001)), PASS),
        ({"kind": "below", "threshold": 0.0}, m(0.01, (0.001, 0.02)), FAIL),
        ({"kind": "below", "threshold": 0.0}, m(-0.01, (-0.02, 0.01)), INCONCLUSIVE),
        ({"kind": "below", "threshold": 0.3333}, m(0.26), PASS),
        ({"kind": "below", "threshold": 0.3333}, m(0.5), FAIL),
        ({"kind": "above", "threshold": 0.2}, m(0.3, (0.25, 0.35)), PASS),
        ({"kind": "above", "threshold": 0.2}, m(0.1, (0.01, 0.18)), FAIL),
        ({"kind": "above", "threshold": 0.2}, m(0.2, (0.1, 0.3)), INCONCLUSIVE),
        ({"kind": "within", "low": 0.93, "high": 0.97}, m(0.95, (0.94, 0.96)), PASS),
        ({"kind": "within", "low": 0.93, "high": 0.97}, m(0.56, (0.51, 0.61)), FAIL),
        (
            {"kind": "within", "low": 0.93, "high": 0.97},
            m(0.955, (0.93 - 1e-3, 0.97)),
            INCONCLUSIVE,
        ),
        ({"kind": "equals", "expected": 42}, m(42), PASS),
        ({"kind": "equals", "expected": 42}, m(7), FAIL),
        ({"kind": "holds"}, m(True), PASS),
        ({"kind": "holds"}, m(False), FAIL),
    ],
)
def test_threshold_rules(rule, measurement, expected):
    assert apply(rule, measurement) == expected


def _groups(**g):
    return {"groups": {k: {"mae": v[0], "ci95": v[1], "n": v[2]} for k, v in g.items()}}


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (_groups(elemental=(0.18, [0.13, 0.24], 83), binary=(0.11, [0.10, 0.12], 992)), PASS),
        # another group clearly worse than the claimed one
        (_groups(elemental=(0.05, [0.04, 0.06], 83), binary=(0.11, [0.10, 0.12], 992)), FAIL),
        # largest, but the intervals overlap
        (_groups(elemental=(0.13, [0.10, 0.16], 83), binary=(0.11, [0.10, 0.12], 992)),
         INCONCLUSIVE),
        # largest and clear, but three structures are no evidence
        (_groups(elemental=(0.40, [0.27, 0.54], 3), binary=(0.12, [0.10, 0.14], 92)),
         INCONCLUSIVE),
    ],
)  # fmt: skip
def test_largest_group(groups, expected):
    assert apply({"kind": "largest_group", "group": "elemental"}, m(**groups)) == expected


def test_largest_group_without_the_group_is_not_testable():
    with pytest.raises(NotTestableError):
        apply({"kind": "largest_group", "group": "> 50 atoms"},
              m(**_groups(binary=(0.1, [0.09, 0.11], 5))))  # fmt: skip


def _row(u, mean, std):
    return {"uncertainty_yield": u, "random_yield_mean": mean, "random_yield_std": std}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([_row(0.88, 0.20, 0.05), _row(0.5, 0.1, 0.02)], PASS),
        ([_row(0.88, 0.20, 0.05), _row(0.09, 0.1, 0.02)], FAIL),
        ([_row(0.88, 0.20, 0.05), _row(0.14, 0.1, 0.02)], INCONCLUSIVE),
    ],
)
def test_beats_random(rows, expected):
    assert apply({"kind": "beats_random", "k_std": 3}, m(rows=rows)) == expected


@pytest.mark.parametrize(
    ("diff", "seed_std", "expected"),
    [(-0.0018, 0.0016, PASS), (0.01, 0.001, PASS), (-0.01, 0.001, FAIL), (-0.01, None,
                                                                           INCONCLUSIVE)],
)  # fmt: skip
def test_no_gain(diff, seed_std, expected):
    assert apply({"kind": "no_gain", "k": 2}, m(diff, seed_std=seed_std)) == expected


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="unknown rule"):
        apply({"kind": "roughly"}, m(1.0))
    with pytest.raises(ValueError, match="invalid interval"):
        apply({"kind": "below", "threshold": 0}, m(0.0, (0.1, -0.1)))
    with pytest.raises(ValueError, match="yes/no"):
        apply({"kind": "holds"}, m(1))
    assert "2× seed std" in describe({"kind": "no_gain", "k": 2})


@pytest.mark.parametrize(
    ("rule", "interval", "expected"),
    [  # intervals that touch the threshold: only wholly on one side decides
        ({"kind": "below", "threshold": 0.0}, (-0.1, 0.0), INCONCLUSIVE),
        ({"kind": "below", "threshold": 0.0}, (0.0, 0.1), FAIL),
        ({"kind": "above", "threshold": 0.2}, (0.2, 0.3), INCONCLUSIVE),
        ({"kind": "above", "threshold": 0.2}, (0.1, 0.2), FAIL),
        ({"kind": "within", "low": 0.93, "high": 0.97}, (0.93, 0.96), PASS),
        ({"kind": "within", "low": 0.93, "high": 0.97}, (0.94, 0.97), PASS),
        ({"kind": "within", "low": 0.93, "high": 0.97}, (0.90, 0.93), INCONCLUSIVE),
        ({"kind": "within", "low": 0.93, "high": 0.97}, (0.97, 0.99), INCONCLUSIVE),
        ({"kind": "below", "threshold": 1.0}, (0.5, 0.5), PASS),  # a point interval is valid
    ],
)
def test_threshold_rules_at_their_boundaries(rule, interval, expected):
    assert apply(rule, m(sum(interval) / 2, interval)) == expected


def test_an_interval_with_one_infinite_end_is_invalid():
    with pytest.raises(ValueError, match="invalid interval"):
        apply({"kind": "below", "threshold": 0}, m(0.0, (float("nan"), 1.0)))


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="unknown rule 'roughly'"):
        apply({"kind": "roughly"}, m(1.0))


@pytest.mark.parametrize(
    ("u", "expected"), [(0.5, PASS), (0.25, FAIL), (0.4, INCONCLUSIVE)]
)  # mean 0.25, std 0.125, k 2: exactly 0.5 clears, exactly the mean fails
def test_beats_random_at_its_boundaries(u, expected):
    rows = [_row(u, 0.25, 0.125)]
    assert apply({"kind": "beats_random", "k_std": 2}, m(rows=rows)) == expected


def test_no_gain_at_exactly_k_seed_spreads_is_no_gain():
    assert apply({"kind": "no_gain", "k": 2}, m(-0.5, seed_std=0.25)) == PASS


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        # n exactly min_n may pass; the alphabetically last group is not the worst
        (_groups(elemental=(0.18, [0.13, 0.24], 10), ternary=(0.07, [0.06, 0.08], 2000)), PASS),
        # another group's interval only touches the claimed one's: not clearly worse
        (_groups(elemental=(0.13, [0.10, 0.16], 83), binary=(0.18, [0.16, 0.20], 992)),
         INCONCLUSIVE),
        # another group's interval reaches above, but starts below: not clearly worse
        (_groups(elemental=(0.18, [0.13, 0.24], 83), binary=(0.12, [0.10, 0.25], 99)),
         INCONCLUSIVE),
        # the claimed group's interval only touches the next group's: not clear
        (_groups(elemental=(0.18, [0.12, 0.24], 83), binary=(0.11, [0.10, 0.12], 992)),
         INCONCLUSIVE),
    ],
)  # fmt: skip
def test_largest_group_at_its_boundaries(groups, expected):
    assert apply({"kind": "largest_group", "group": "elemental"}, m(**groups)) == expected


def test_largest_group_names_the_missing_group():
    with pytest.raises(NotTestableError, match="no structure in group 'elemental'"):
        apply({"kind": "largest_group", "group": "elemental"},
              m(**_groups(binary=(0.1, [0.09, 0.11], 5))))  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ({"kind": "below", "threshold": 0.0}, "95% interval below 0.0"),
        ({"kind": "above", "threshold": 0.2}, "95% interval above 0.2"),
        ({"kind": "within", "low": 0.93, "high": 0.97}, "95% interval within [0.93, 0.97]"),
        ({"kind": "equals", "expected": 42}, "equals 42"),
        ({"kind": "holds"}, "holds in the records"),
        ({"kind": "largest_group", "group": "elemental"},
         "'elemental' largest (n ≥ 10), interval clear of every other group"),
        ({"kind": "largest_group", "group": "x", "min_n": 30},
         "'x' largest (n ≥ 30), interval clear of every other group"),
        ({"kind": "beats_random", "k_std": 3}, "every budget ≥ random mean + 3 std"),
        ({"kind": "no_gain", "k": 2},
         "variant not better than baseline by more than 2× seed std"),
        ({"kind": "mystery"}, "mystery"),
    ],
)  # fmt: skip
def test_describe_every_rule(rule, text):
    assert describe(rule) == text
