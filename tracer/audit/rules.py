"""Verdict rules of the audit: each turns one measurement (a value, its 95% interval where it has
one, its n) into PASS, FAIL or INCONCLUSIVE. Rules are declared per claim in ``claims.yaml``
before any run is scored; every rule here has a test where it must FAIL and one where it must
PASS (``tests/test_audit_rules.py``).

* ``below`` / ``above``: the interval (else the value) against a threshold — wholly on the
  claimed side: PASS; wholly on the other side: FAIL; straddling: INCONCLUSIVE.
* ``within``: the interval inside [low, high]: PASS; disjoint: FAIL; else INCONCLUSIVE.
* ``equals``: the value equals the expected one.
* ``holds``: a yes/no finding (a check computed from the records, with its evidence).
* ``largest_group``: the named group (of at least ``min_n`` structures) has the largest error
  and its interval clears every other group's interval: PASS; another group's interval lies
  wholly above it: FAIL; else INCONCLUSIVE.
* ``beats_random``: at every budget the σ-ranked yield ≥ random mean + k·std: PASS; at some
  budget ≤ the random mean: FAIL; else INCONCLUSIVE.
* ``no_gain``: variant − baseline ≥ −k × the seed spread (the variant is not better by more
  than the seed-to-seed noise): PASS; better by more: FAIL; fewer than 2 seeds: INCONCLUSIVE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
NOT_RUN, NOT_TESTABLE, NOT_APPLICABLE = "NOT RUN", "NOT TESTABLE", "N/A"


@dataclass
class Measurement:
    """What a run shows for a claim: ``value`` (with its ``interval`` [low, high] and ``n``
    where it has them), ``text`` as the audit prints it, and rule inputs in ``extra``."""

    value: Any
    interval: tuple[float, float] | None = None
    n: int | None = None
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class NotRunError(Exception):
    """The run does not have what the claim needs (the reason is the message)."""


class NotTestableError(Exception):
    """The data cannot show the claim (e.g. no cell of more than 50 atoms)."""


def _bounds(m: Measurement) -> tuple[float, float]:
    if m.interval is not None:
        lo, hi = (float(x) for x in m.interval)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"invalid interval {m.interval}")
        return lo, hi
    v = float(m.value)
    if not math.isfinite(v):
        raise ValueError(f"non-finite value {m.value}")
    return v, v


def below(m: Measurement, threshold: float) -> str:
    lo, hi = _bounds(m)
    return PASS if hi < threshold else FAIL if lo >= threshold else INCONCLUSIVE


def above(m: Measurement, threshold: float) -> str:
    lo, hi = _bounds(m)
    return PASS if lo > threshold else FAIL if hi <= threshold else INCONCLUSIVE


def within(m: Measurement, low: float, high: float) -> str:
    lo, hi = _bounds(m)
    if low <= lo and hi <= high:
        return PASS
    return FAIL if hi < low or lo > high else INCONCLUSIVE


def equals(m: Measurement, expected: Any) -> str:
    return PASS if m.value == expected else FAIL


def holds(m: Measurement) -> str:
    if not isinstance(m.value, bool):
        raise ValueError(f"rule 'holds' needs a yes/no value, got {m.value!r}")
    return PASS if m.value else FAIL


def largest_group(m: Measurement, group: str, min_n: int = 10) -> str:
    """``m.extra["groups"]``: name → ``{"mae", "ci95": [lo, hi], "n"}`` (groups with n = 0 are
    left out). A claimed group of fewer than ``min_n`` structures cannot PASS: its bootstrap
    interval is not to be trusted (INCONCLUSIVE unless another group is clearly worse)."""
    groups = {k: g for k, g in m.extra["groups"].items() if g.get("n")}
    if group not in groups:
        raise NotTestableError(f"no structure in group {group!r}")
    lo, hi = groups[group]["ci95"]
    others = [g for k, g in groups.items() if k != group]
    if any(g["ci95"][0] > hi for g in others):
        return FAIL
    worst = max(groups, key=lambda k: groups[k]["mae"])
    if worst == group and groups[group]["n"] >= min_n and all(lo > g["ci95"][1] for g in others):
        return PASS
    return INCONCLUSIVE


def beats_random(m: Measurement, k_std: float) -> str:
    """``m.extra["rows"]``: ``{"uncertainty_yield", "random_yield_mean", "random_yield_std"}``."""
    rows = m.extra["rows"]
    if not rows:
        raise ValueError("no triage rows")
    if any(r["uncertainty_yield"] <= r["random_yield_mean"] for r in rows):
        return FAIL
    clear = all(
        r["uncertainty_yield"] >= r["random_yield_mean"] + k_std * r["random_yield_std"]
        for r in rows
    )
    return PASS if clear else INCONCLUSIVE


def no_gain(m: Measurement, k: float) -> str:
    """``m.value``: variant − baseline MAE; ``m.extra["seed_std"]``: the seed spread (None with
    fewer than two seeds)."""
    spread = m.extra.get("seed_std")
    if spread is None:
        return INCONCLUSIVE
    return PASS if float(m.value) >= -k * float(spread) else FAIL


RULES: dict[str, Callable[..., str]] = {
    "below": below,
    "above": above,
    "within": within,
    "equals": equals,
    "holds": holds,
    "largest_group": largest_group,
    "beats_random": beats_random,
    "no_gain": no_gain,
}


def apply(rule: dict[str, Any], m: Measurement) -> str:
    """The verdict of ``rule`` (``{"kind": <name>, **parameters}``) on ``m``."""
    params = {k: v for k, v in rule.items() if k != "kind"}
    try:
        fn = RULES[rule["kind"]]
    except KeyError:
        raise ValueError(f"unknown rule {rule.get('kind')!r}; known: {sorted(RULES)}") from None
    return fn(m, **params)


def describe(rule: dict[str, Any]) -> str:
    """The rule as the audit prints it."""
    kind = rule["kind"]
    p = {k: v for k, v in rule.items() if k != "kind"}
    text = {
        "below": lambda: f"95% interval below {p['threshold']}",
        "above": lambda: f"95% interval above {p['threshold']}",
        "within": lambda: f"95% interval within [{p['low']}, {p['high']}]",
        "equals": lambda: f"equals {p['expected']}",
        "holds": lambda: "holds in the records",
        "largest_group": lambda: (
            f"'{p['group']}' largest (n ≥ {p.get('min_n', 10)}), interval "
            "clear of every other group"
        ),
        "beats_random": lambda: f"every budget ≥ random mean + {p['k_std']} std",
        "no_gain": lambda: f"variant not better than baseline by more than {p['k']}× seed std",
    }
    return text[kind]() if kind in text else kind
