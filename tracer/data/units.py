"""Target units: per atom or per cell, declared by a source and checked from its values."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracer.data.sources import EV_PER_ATOM, EV_PER_CELL

PLAUSIBLE_EV_PER_ATOM = (-5.0, 2.0)


def to_ev_per_atom(values: Any, unit: str, n_atoms: Any) -> np.ndarray:
    """Energies in eV/atom from ``unit`` (``eV/atom`` or ``eV/cell``, the whole cell)."""
    values = np.asarray(values, dtype=float)
    if unit == EV_PER_ATOM:
        return values
    if unit == EV_PER_CELL:
        n = np.asarray(n_atoms, dtype=float)
        if (n <= 0).any():
            raise ValueError("atom counts must be positive")
        return values / n
    raise ValueError(f"unknown energy unit {unit!r}")


def unit_check(
    declared: str,
    target: Any,
    n_atoms: Any,
    *,
    plausible_ev_per_atom: tuple[float, float] = PLAUSIBLE_EV_PER_ATOM,
    prediction_ev_per_atom: Any = None,
) -> dict[str, Any]:
    """Is the declared unit borne out by the values? Formation energies of real crystals lie
    within ``plausible_ev_per_atom`` (eV/atom); the share of targets outside that range is
    computed for both readings (as eV/atom, and as eV/cell divided by the atom count).

    ``verdict``: ``contradicted`` when the declared reading puts at least 5% of the targets
    outside the range and the other reading at most 1%; ``consistent`` when the declared
    reading puts at most 1% outside and the other at least 5%; else ``undecided`` (per-atom
    data read per cell only shrink, so they cannot contradict that reading). With per-atom
    predictions of a model trained on eV/atom data, their MAE under both readings is added
    (different reference energies can offset these; the range decides)."""
    target = np.asarray(target, dtype=float)
    lo, hi = plausible_ev_per_atom
    readings = {EV_PER_ATOM: target, EV_PER_CELL: to_ev_per_atom(target, EV_PER_CELL, n_atoms)}
    if declared not in readings:
        raise ValueError(f"unknown energy unit {declared!r}")
    outside = {u: float(np.mean((v < lo) | (v > hi))) for u, v in readings.items()}
    other = EV_PER_CELL if declared == EV_PER_ATOM else EV_PER_ATOM
    if outside[declared] >= 0.05 and outside[other] <= 0.01:
        verdict = "contradicted"
    elif outside[declared] <= 0.01 and outside[other] >= 0.05:
        verdict = "consistent"
    else:
        verdict = "undecided"
    out: dict[str, Any] = {
        "declared": declared,
        "plausible_ev_per_atom": [lo, hi],
        "fraction_outside_if_ev_per_atom": outside[EV_PER_ATOM],
        "fraction_outside_if_ev_per_cell": outside[EV_PER_CELL],
        "verdict": verdict,
    }
    if prediction_ev_per_atom is not None:
        pred = np.asarray(prediction_ev_per_atom, dtype=float)
        for unit, values in readings.items():
            key = "ev_per_atom" if unit == EV_PER_ATOM else "ev_per_cell"
            out[f"model_mae_if_{key}"] = float(np.mean(np.abs(pred - values)))
    return out
