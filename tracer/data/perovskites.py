"""The 31,710-cell perovskite table of three databases (CMR, OQMD, Materials Project).

One gzipped CSV read by path (``source``, ``id``, ``target``, ``target_name``, ``cif``); see its
README. Each database gives its target in its own unit and against its own references:

========  ===============  =========================================================
database  target_name      unit
========  ===============  =========================================================
CMR       ``e_form``       eV per 5-atom cell (heat of formation; matbench_perovskites)
OQMD      ``formation_energy``  eV/atom
MP        ``formation_energy``  eV/atom
========  ===============  =========================================================

:func:`read_perovskites_31k` gives the canonical table (:mod:`tracer.data.sources`) plus a
``database`` column; :func:`validate_perovskites` applies the usual record checks
(:mod:`tracer.data.validation`), checks each database's declared unit against its values
(:func:`tracer.data.units.unit_check`) and adds two rules of its own, each stated here and tested:

* **exact duplicate** — two cells of one database with the same lattice (lengths to 1e-4 Å,
  angles to 1e-3°) and the same species on the same fractional positions (to 1e-4, any site
  order): the later row in file order is quarantined, naming the row it repeats and whether the
  two targets agree. Near-duplicates (the same prototype relaxed twice, targets a few meV apart)
  are not duplicates by this rule and stay.
* **implausible target** — a formation energy outside ``IMPLAUSIBLE_EV_PER_ATOM`` (−5 to +5
  eV/atom, per atom after the unit is applied): the most negative formation energies of known
  crystals (fluorides) lie near −4.5 eV/atom, and a cell whose atoms sit 5 eV each above their
  elements is not a converged DFT result of a bound solid. Targets between +2 and +5 eV/atom are
  kept and counted as ``high_but_kept``.

:func:`matbench_folds` cuts matbench v0.1's 5-fold cross-validation of the CMR cells.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from sklearn.model_selection import KFold

from tracer.data.sources import EV_PER_ATOM, EV_PER_CELL, _frame, _record, _structure_from_text
from tracer.data.units import unit_check
from tracer.data.validation import ValidationConfig, ValidationResult, validate

DATABASES: dict[str, tuple[str, str]] = {
    "CMR": ("e_form", EV_PER_CELL),
    "OQMD": ("formation_energy", EV_PER_ATOM),
    "MP": ("formation_energy", EV_PER_ATOM),
}
"""database → (target_name the file must give, unit of its target)."""

IMPLAUSIBLE_EV_PER_ATOM = (-5.0, 5.0)
KEPT_HIGH_EV_PER_ATOM = 2.0
MATBENCH_RANDOM_STATE = 18012019
MATBENCH_N_SPLITS = 5
REQUIRED_COLUMNS = ("source", "id", "target", "target_name", "cif")


def record_id(database: str, source_id: str) -> str:
    """Unique id across the databases: ``cmr-perov_0``, ``oqmd-4831941``, ``mp-mp-1187377``."""
    return f"{database.lower()}-{source_id}"


def read_perovskites_31k(path: str | Path) -> pd.DataFrame:
    """The canonical table of the file at ``path`` with a ``database`` column; an unknown
    database or a ``target_name`` other than the one its database gives is an error naming
    the row."""
    path = Path(path)
    if path.is_dir():
        path = path / "perovskites.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"perovskite table not found: {path} (dataset.path)")
    raw = pd.read_csv(path, dtype={"id": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; found {list(raw.columns)}")
    for pos, (db, name, rid) in enumerate(
        zip(raw["source"], raw["target_name"], raw["id"], strict=True)
    ):
        if db not in DATABASES:
            raise ValueError(f"{path}: row {pos} (id {rid}): unknown database {db!r}; "
                             f"known: {sorted(DATABASES)}")  # fmt: skip
        if name != DATABASES[db][0]:
            raise ValueError(f"{path}: row {pos} (id {rid}): {db} gives {DATABASES[db][0]!r}, "
                             f"this row {name!r}")  # fmt: skip
    frame = _frame(
        _record(
            record_id(db, rid),
            lambda cif=cif: _structure_from_text(cif),
            target,
            DATABASES[db][1],
            f"perovskites_31k:{db}",
        )
        for db, rid, target, cif in zip(
            raw["source"], raw["id"], raw["target"], raw["cif"], strict=True
        )
    )
    frame["database"] = raw["source"].to_numpy()
    return frame


def target_ev_per_atom(frame: pd.DataFrame) -> np.ndarray:
    """Targets per atom (eV/atom): eV/cell rows divided by their cell's atom count."""
    n = np.array([len(s) if s is not None else np.nan for s in frame["structure"]], dtype=float)
    per_cell = (frame["target_unit"] == EV_PER_CELL).to_numpy()
    return np.where(per_cell, frame["target"].to_numpy(float) / n, frame["target"].to_numpy(float))


def structure_fingerprint(structure: Structure) -> str:
    """Equal for the same lattice (lengths to 1e-4 Å, angles to 1e-3°) and the same species on
    the same fractional positions (to 1e-4, wrapped into the cell, any site order)."""
    lattice = [round(x, 4) for x in structure.lattice.abc] + [
        round(x, 3) for x in structure.lattice.angles
    ]
    frac = np.round(np.mod(structure.frac_coords, 1.0), 4) % 1.0
    sites = sorted(
        (site.specie.Z, *(float(x) for x in f)) for site, f in zip(structure, frac, strict=True)
    )
    return hashlib.sha256(json.dumps([lattice, sites]).encode()).hexdigest()


def exact_duplicates(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows repeating an earlier row's structure within the same database (the rule in the
    module docstring): ``row``, ``id``, ``of_row``, ``of_id``, ``same_target``."""
    seen: dict[tuple[str, str], int] = {}
    found = []
    for pos, (db, s) in enumerate(zip(frame["database"], frame["structure"], strict=True)):
        if s is None:
            continue
        key = (db, structure_fingerprint(s))
        if key in seen:
            first = seen[key]
            found.append({
                "row": pos, "id": frame["id"].iloc[pos],
                "of_row": first, "of_id": frame["id"].iloc[first],
                "same_target": bool(np.isclose(frame["target"].iloc[pos],
                                               frame["target"].iloc[first], atol=1e-6)),
            })  # fmt: skip
        else:
            seen[key] = pos
    return found


def implausible_targets(
    frame: pd.DataFrame, band: tuple[float, float] = IMPLAUSIBLE_EV_PER_ATOM
) -> list[dict[str, Any]]:
    """Rows whose target per atom lies outside ``band`` (eV/atom)."""
    per_atom = target_ev_per_atom(frame)
    lo, hi = band
    bad = np.flatnonzero((per_atom < lo) | (per_atom > hi))
    return [{"row": int(p), "id": frame["id"].iloc[p], "target_ev_per_atom": float(per_atom[p])}
            for p in bad]  # fmt: skip


def unit_checks(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each database's declared unit checked from its values (:func:`tracer.data.units.unit_check`);
    a ``contradicted`` verdict raises, naming the database."""

    out = {}
    for db, part in frame.groupby("database", sort=True):
        ok = part[part["structure"].notna()]
        n_atoms = [len(s) for s in ok["structure"]]
        check = unit_check(str(ok["target_unit"].iloc[0]), ok["target"], n_atoms)
        if check["verdict"] == "contradicted":
            raise ValueError(f"database {db}: its declared unit {check['declared']} is "
                             f"contradicted by its values: {check}")  # fmt: skip
        out[str(db)] = check
    return out


def validate_perovskites(
    frame: pd.DataFrame, config: ValidationConfig | None = None
) -> tuple[ValidationResult, dict[str, Any]]:
    """The record checks of :func:`tracer.data.validation.validate`, then the duplicate and
    implausible-target rules on the records that passed them. Returns the result (clean table
    with ``database``; quarantine with one row per reason) and a summary: per-database counts,
    unit checks, every duplicate pair and implausible target, and the kept high targets."""
    base = validate(frame, config)
    units = unit_checks(frame)
    clean = base.clean
    dups = exact_duplicates(clean)
    wild = implausible_targets(clean)
    rows = [
        (
            d["id"],
            d["row"],
            f"exact duplicate: same structure as {d['of_id']}, "
            f"{'same' if d['same_target'] else 'different'} target",
        )
        for d in dups
    ]
    rows += [(w["id"], w["row"], f"implausible target: {w['target_ev_per_atom']:.4g} eV/atom "
              f"(outside {IMPLAUSIBLE_EV_PER_ATOM[0]:g} to {IMPLAUSIBLE_EV_PER_ATOM[1]:g})")
             for w in wild]  # fmt: skip
    extra = pd.DataFrame(rows, columns=base.quarantine.columns)
    # quarantine rows carry the position in the source table (clean rows map back to it)
    source_pos = np.setdiff1d(np.arange(len(frame)), base.quarantine["row"].unique())
    extra["row"] = [int(source_pos[r]) for r in extra["row"]]
    drop = sorted({d["row"] for d in dups} | {w["row"] for w in wild})
    result = ValidationResult(
        clean=clean.drop(index=drop).reset_index(drop=True),
        quarantine=pd.concat([base.quarantine, extra], ignore_index=True),
        n_total=base.n_total,
    )
    per_atom = target_ev_per_atom(result.clean)
    high = result.clean.loc[per_atom > KEPT_HIGH_EV_PER_ATOM, "id"].tolist()
    summary = {
        **result.summary(),
        "per_database": {
            str(db): {
                "n_records": int((frame["database"] == db).sum()),
                "n_clean": int((result.clean["database"] == db).sum()),
            }
            for db in sorted(frame["database"].unique())
        },
        "unit_checks": units,
        "rules": {
            "exact_duplicate": "same database, lattice to 1e-4 Å / 1e-3 deg, species on the same "
            "fractional positions to 1e-4 (any site order): the later row is quarantined",
            "implausible_target_ev_per_atom": list(IMPLAUSIBLE_EV_PER_ATOM),
        },
        "exact_duplicates": dups,
        "implausible_targets": wild,
        "high_but_kept": {"above_ev_per_atom": KEPT_HIGH_EV_PER_ATOM, "ids": high},
    }
    return result, summary


def matbench_folds(
    ids: list[str],
    *,
    n_splits: int = MATBENCH_N_SPLITS,
    random_state: int = MATBENCH_RANDOM_STATE,
    val_fraction: float = 0.1,
    val_seed: int = 0,
) -> list[dict[str, list[str]]]:
    """matbench v0.1's cross-validation of ``ids`` (in the file's row order):
    ``KFold(n_splits, shuffle=True, random_state)``, each fold's test part held out. Inside
    each training part a seeded ``val_fraction`` (seed ``val_seed`` + fold) becomes the inner
    validation set (early stopping, recalibration); the rest trains. Fold membership depends on
    the row order, which matbench takes from its own file: it may differ from matbench's folds.
    Returns the runs ``{"train", "val", "test"}`` (ids in input order) for
    :func:`tracer.data.folds.save_folds`."""

    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    runs = []
    kfold = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    for f, (train_idx, test_idx) in enumerate(kfold.split(ids)):
        order = np.random.default_rng(val_seed + f).permutation(len(train_idx))
        n_val = round(val_fraction * len(train_idx))
        val_idx = np.sort(train_idx[order[:n_val]])
        fit_idx = np.sort(train_idx[order[n_val:]])
        runs.append({"train": [ids[i] for i in fit_idx], "val": [ids[i] for i in val_idx],
                     "test": [ids[i] for i in test_idx]})  # fmt: skip
    return runs


MATBENCH_METHOD = (
    f"matbench v0.1: KFold(n_splits={MATBENCH_N_SPLITS}, shuffle=True, random_state="
    f"{MATBENCH_RANDOM_STATE}) over the CMR rows in file order; inner validation 10% of each "
    "training part (seed 0 + fold). Membership depends on row order and may differ from matbench's"
)
