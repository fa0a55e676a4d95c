"""Validation of canonical records, with a quarantine report instead of silent drops.

Every record of a source is checked; each failing record goes to the quarantine table with its id
and *all* its reasons, and only records that pass every check reach the clean table. Nothing is
repaired or invented. When more than ``max_quarantine_fraction`` of the records fail, the caller
gets :class:`QuarantineError` (after the report has been written), so a broken download or a wrong
parser stops the pipeline loudly.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Element, Structure

QUARANTINE_COLUMNS = ("id", "row", "reason")


class QuarantineError(RuntimeError):
    """Too large a fraction of the records failed validation."""


@dataclass(frozen=True)
class ValidationConfig:
    """Thresholds of the record checks.

    Args:
        min_distance_angstrom: two atoms (including periodic images) closer than this (Å) make
            the structure invalid ("overlapping atoms").
        graph_cutoff_angstrom: every atom needs at least one neighbour within this radius (Å),
            the cutoff of the graph that the models build.
        max_atomic_number: heaviest element accepted (models embed elements up to this Z).
        max_quarantine_fraction: the largest tolerated fraction of quarantined records.
    """

    min_distance_angstrom: float = 0.5
    graph_cutoff_angstrom: float = 6.0
    max_atomic_number: int = 100
    max_quarantine_fraction: float = 0.05


def structure_problems(structure: Structure, config: ValidationConfig) -> list[str]:
    """Return the reasons a parsed structure is unusable (empty list when it is fine)."""
    if len(structure) == 0:
        return ["empty structure (no sites)"]
    reasons: list[str] = []
    if not structure.is_ordered:
        reasons.append("disordered structure (partial occupancies)")
        return reasons
    unknown: dict[str, list[int]] = {}
    for k, site in enumerate(structure):
        el = site.specie
        if not isinstance(el, Element) or config.max_atomic_number < el.Z:
            unknown.setdefault(str(el), []).append(k)
    reasons += [f"unknown or unsupported element {el} (site{'s' if len(ks) > 1 else ''} "
                f"{_site_list(ks)})" for el, ks in unknown.items()]  # fmt: skip
    volume = float(structure.volume)
    if not math.isfinite(volume) or volume <= 0.0:
        return [*reasons, f"non-positive cell volume {volume:.4g} Å^3"]
    coords = structure.frac_coords
    if not np.all(np.isfinite(coords)):
        return [*reasons, "non-finite atomic coordinates"]

    # One cell-list neighbour search (memory linear in the atoms) for both checks: the closest
    # pair, periodic images and exact overlaps of distinct sites included (only a site's zero
    # distance to itself is left out), and every atom's nearest neighbour within the cutoff.
    radius = max(config.graph_cutoff_angstrom, config.min_distance_angstrom)
    centers, points, _, dists = structure.get_neighbor_list(radius)
    if len(dists) and float(np.min(dists)) < config.min_distance_angstrom:
        k = int(np.argmin(dists))
        i, j = int(centers[k]), int(points[k])
        what = (f"sites {min(i, j)} and {max(i, j)} are" if i != j
                else f"site {i} and its periodic image are")  # fmt: skip
        close = dists < config.min_distance_angstrom
        pairs = np.unique(np.sort(np.stack([centers[close], points[close]], 1), axis=1), axis=0)
        n_close = len(pairs)
        more = f"; {n_close} close pairs in all" if n_close > 1 else ""
        reasons.append(f"overlapping atoms: {what} {float(dists[k]):.3f} Å apart "
                       f"(< {config.min_distance_angstrom} Å){more}")  # fmt: skip
    within = dists <= config.graph_cutoff_angstrom
    lonely = sorted(set(range(len(structure))) - set(np.asarray(centers[within]).tolist()))
    if lonely:
        reasons.append(
            f"no neighbour within {config.graph_cutoff_angstrom} Å for site(s) {_site_list(lonely)}"
        )
    return reasons


def _site_list(sites: list[int], shown: int = 10) -> str:
    """``0, 3, 5`` (the first ``shown`` site indices, then ``… (N in all)``)."""
    head = ", ".join(map(str, sites[:shown]))
    return head if len(sites) <= shown else f"{head} … ({len(sites)} in all)"


def record_problems(table: pd.DataFrame, config: ValidationConfig) -> dict[int, list[str]]:
    """Map row position → reasons, for every row of a canonical table that fails a check."""
    problems: dict[int, list[str]] = {}
    id_counts = Counter(table["id"])
    for pos, row in enumerate(table.itertuples(index=False)):
        reasons: list[str] = []
        if not isinstance(row.id, str) or not row.id or row.id in {"None", "nan"}:
            reasons.append("missing id")
        elif id_counts[row.id] > 1:
            reasons.append(f"duplicate id (appears {id_counts[row.id]} times)")
        if not math.isfinite(row.target):
            reasons.append(f"target is not a finite number ({row.target})")
        if row.parse_error is not None:
            reasons.append(f"unparsable structure: {row.parse_error}")
        elif row.structure is None:
            reasons.append("missing structure")
        else:
            try:
                reasons.extend(structure_problems(row.structure, config))
            except Exception as exc:  # a check crashing on odd input is itself a finding
                reasons.append(f"structure check failed: {type(exc).__name__}: {exc}")
        if reasons:
            problems[pos] = reasons
    return problems


@dataclass
class ValidationResult:
    """Clean table, quarantine report and counts of one validation pass."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    n_total: int

    @property
    def n_quarantined(self) -> int:
        return int(self.quarantine["id"].nunique(dropna=False)) if len(self.quarantine) else 0

    @property
    def n_quarantined_rows(self) -> int:
        return int(self.quarantine["row"].nunique()) if len(self.quarantine) else 0

    @property
    def quarantine_fraction(self) -> float:
        return self.n_quarantined_rows / self.n_total if self.n_total else 0.0

    def summary(self) -> dict[str, object]:
        """Counts for the metrics file: totals and records per first-reason kind."""
        kinds = Counter(reason.split(":")[0].split(" (")[0] for reason in self.quarantine["reason"])
        return {
            "n_records": self.n_total,
            "n_clean": len(self.clean),
            "n_quarantined": self.n_quarantined_rows,
            "quarantine_fraction": round(self.quarantine_fraction, 6),
            "quarantine_reasons": dict(sorted(kinds.items())),
        }


def validate(table: pd.DataFrame, config: ValidationConfig | None = None) -> ValidationResult:
    """Split a canonical table into clean records and a quarantine report (id, row, reason).

    A record with several problems appears once per reason. The clean table keeps the source's
    order and index-free positions; ``n_atoms`` (atoms in the cell) and ``reduced_formula`` are
    added for later stages.
    """
    config = config or ValidationConfig()
    problems = record_problems(table, config)
    quarantine = pd.DataFrame(
        [
            (table["id"].iloc[pos], pos, reason)
            for pos, reasons in sorted(problems.items())
            for reason in reasons
        ],
        columns=list(QUARANTINE_COLUMNS),
    )
    keep = np.ones(len(table), dtype=bool)
    keep[list(problems)] = False
    clean = table.loc[keep].drop(columns=["parse_error"]).reset_index(drop=True)
    clean["n_atoms"] = [len(s) for s in clean["structure"]]
    clean["reduced_formula"] = [s.composition.reduced_formula for s in clean["structure"]]
    return ValidationResult(clean=clean, quarantine=quarantine, n_total=len(table))


def enforce_quarantine_limit(result: ValidationResult, max_fraction: float) -> None:
    """Raise :class:`QuarantineError` when more than ``max_fraction`` of the records failed."""
    if result.quarantine_fraction > max_fraction:
        worst = result.quarantine.head(5).to_string(index=False)
        raise QuarantineError(
            f"{result.n_quarantined_rows} of {result.n_total} records "
            f"({result.quarantine_fraction:.1%}) failed validation, more than the allowed "
            f"{max_fraction:.1%}. First reasons:\n{worst}"
        )


def write_quarantine(result: ValidationResult, path: str | Path) -> Path:
    """Write the quarantine report as CSV (header only when nothing was quarantined)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.quarantine.to_csv(path, index=False)
    return path
