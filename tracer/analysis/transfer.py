"""Transfer to perovskites: target units checked from the data, and the zero-shot summary.

Perovskite sets (matbench_perovskites, the Castelli CSVs) give the heat of formation of the whole
5-atom cell (eV/cell) while GemNet-T predicts eV/atom. The unit a source declares is checked
against the data before anything is compared (:func:`unit_check`): read in the wrong unit,
per-cell targets fall outside the range of plausible formation energies per atom. Errors are
then reported in both units (:func:`zero_shot_summary`), with the ensemble σ on the shifted data
beside the in-domain σ: is the shift flagged?
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracer.analysis.accuracy import point_metrics


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
