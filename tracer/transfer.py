"""Transfer to perovskites: target units checked from the data, and the zero-shot summary.

Perovskite sets (matbench_perovskites, the Castelli CSVs) give the heat of formation of the whole
5-atom cell (eV/cell) while GemNet-T predicts eV/atom. The unit a source declares is checked
against the data before anything is compared (:func:`unit_check`): an FLLA-trained model's
per-atom predictions agree far better with the targets divided by the atom count when the
targets are per cell. Errors are then reported in both units (:func:`zero_shot_summary`), with
the ensemble σ on the shifted data beside the in-domain σ: is the shift flagged?
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracer.accuracy import point_metrics

EV_PER_ATOM = "eV/atom"
EV_PER_CELL = "eV/cell"


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


def unit_check(declared: str, target: Any, n_atoms: Any, prediction_ev_per_atom: Any) -> dict:
    """Which reading of the targets agrees with per-atom predictions of a model trained on
    eV/atom data: MAE against the targets read as eV/atom and as eV/cell (divided by the atom
    count). ``verdict`` is ``consistent`` when the declared reading has the clearly smaller
    MAE (by a factor of 1.5), ``contradicted`` when the other one has, else ``undecided``."""
    target = np.asarray(target, dtype=float)
    pred = np.asarray(prediction_ev_per_atom, dtype=float)
    readings = {
        EV_PER_ATOM: float(np.mean(np.abs(pred - target))),
        EV_PER_CELL: float(np.mean(np.abs(pred - to_ev_per_atom(target, EV_PER_CELL, n_atoms)))),
    }
    if declared not in readings:
        raise ValueError(f"unknown energy unit {declared!r}")
    other = EV_PER_CELL if declared == EV_PER_ATOM else EV_PER_ATOM
    if readings[declared] * 1.5 < readings[other]:
        verdict = "consistent"
    elif readings[other] * 1.5 < readings[declared]:
        verdict = "contradicted"
    else:
        verdict = "undecided"
    return {
        "declared": declared,
        "mae_if_ev_per_atom": readings[EV_PER_ATOM],
        "mae_if_ev_per_cell": readings[EV_PER_CELL],
        "verdict": verdict,
    }


def zero_shot_summary(
    y_ev_per_atom: Any,
    mean_ev_per_atom: Any,
    sigma_ev_per_atom: Any,
    n_atoms: Any,
    in_domain_sigma: Any,
) -> dict[str, Any]:
    """Zero-shot errors in eV/atom and in eV per cell (× atom count), and the ensemble σ on the
    new data against the in-domain (FLLA test) σ: medians and the fraction of new structures
    above the in-domain 95th percentile."""
    y = np.asarray(y_ev_per_atom, dtype=float)
    mean = np.asarray(mean_ev_per_atom, dtype=float)
    sigma = np.asarray(sigma_ev_per_atom, dtype=float)
    n = np.asarray(n_atoms, dtype=float)
    ref = np.asarray(in_domain_sigma, dtype=float)
    per_atom = point_metrics(y, mean)
    per_cell = point_metrics(y * n, mean * n)
    p95 = float(np.quantile(ref, 0.95))
    return {
        "n": int(y.size),
        "mae_ev_per_atom": per_atom["mae"],
        "rmse_ev_per_atom": per_atom["rmse"],
        "mae_ev_per_cell": per_cell["mae"],
        "rmse_ev_per_cell": per_cell["rmse"],
        "r2": per_atom["r2"],
        "median_sigma": float(np.median(sigma)),
        "in_domain_median_sigma": float(np.median(ref)),
        "in_domain_sigma_p95": p95,
        "fraction_above_in_domain_p95": float(np.mean(sigma > p95)),
    }
