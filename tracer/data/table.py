"""Storage of the validated canonical table (Parquet, structures as pymatgen JSON).

The processed table written by the data stage is the single input of every later stage. Its
content hash (:func:`table_sha256`) identifies the data in splits and provenance records.

Both hold what the data is, not how a CPU rounded what pymatgen derives from it: a structure is
its species, lattice vectors and fractional coordinates. The stored JSON leaves out the values
pymatgen recomputes on reading (Cartesian coordinates, lattice lengths, angles and volume),
whose last bits differ between CPUs; the hash reads the lattice vectors (Å) and fractional
coordinates rounded to :data:`HASH_DECIMALS` decimals, so that the same data hashes alike on
every machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Structure

#: decimals of the lattice vectors (Å) and fractional coordinates that the content hash reads
HASH_DECIMALS = 9
#: values of a structure's pymatgen JSON that are derived from the others on reading
DERIVED_LATTICE_KEYS = ("a", "b", "c", "alpha", "beta", "gamma", "volume")

TABLE_COLUMNS = (
    "id",
    "formula",
    "reduced_formula",
    "n_atoms",
    "target",
    "target_unit",
    "source",
    "structure",
)


def stored_dict(structure: Structure) -> dict[str, Any]:
    """``structure.as_dict()`` without the values derived on reading (Cartesian coordinates,
    lattice lengths, angles and volume); :meth:`Structure.from_dict` gives back the same
    structure."""
    d = structure.as_dict()
    for key in DERIVED_LATTICE_KEYS:
        d["lattice"].pop(key, None)
    for site in d["sites"]:
        site.pop("xyz", None)
    return d


def canonical_structure(structure: Structure | str) -> str:
    """The text the content hash reads for one structure (a :class:`Structure` or its JSON):
    lattice vectors (Å) and each site's species (element, occupancy and any other field) and
    fractional coordinates, numbers rounded to :data:`HASH_DECIMALS` decimals, sites in order."""
    d = json.loads(structure) if isinstance(structure, str) else structure.as_dict()

    def num(x: float) -> float:
        return round(float(x), HASH_DECIMALS) + 0.0  # + 0.0: no negative zero

    def species(sp: dict[str, Any]) -> list[Any]:
        return sorted((k, num(v) if isinstance(v, float | int) and k != "element" else v)
                      for k, v in sp.items())  # fmt: skip

    return json.dumps({
        "lattice": [[num(x) for x in row] for row in d["lattice"]["matrix"]],
        "sites": [[sorted(species(sp) for sp in site["species"]),
                   [num(x) for x in site["abc"]]] for site in d["sites"]],
        "charge": d.get("charge"),
    })  # fmt: skip


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a validated table to Parquet; ``structure`` is stored as pymatgen JSON text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.loc[:, list(TABLE_COLUMNS)].copy()
    out["structure"] = [json.dumps(stored_dict(s), sort_keys=True) for s in out["structure"]]
    out.to_parquet(path, index=False)
    return path


def read_table(path: str | Path, *, structures: bool = True) -> pd.DataFrame:
    """Read a table written by :func:`write_table`.

    Args:
        path: Parquet file.
        structures: parse the ``structure`` column into :class:`Structure` objects (slow for
            large tables); with ``False`` the column is dropped.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"processed table not found: {path} (run the data stage first)")
    table = pd.read_parquet(path)
    if structures:
        table["structure"] = [Structure.from_dict(json.loads(s)) for s in table["structure"]]
    else:
        table = table.drop(columns=["structure"])
    return table


def table_sha256(table: pd.DataFrame) -> str:
    """Content hash of a table: ids, targets (repr), units and structures
    (:func:`canonical_structure`), in row order."""
    digest = hashlib.sha256()
    for row in table.itertuples(index=False):
        digest.update(f"{row.id}\t{row.target!r}\t{row.target_unit}\t".encode())
        digest.update(hashlib.sha256(canonical_structure(row.structure).encode()).digest())
    return digest.hexdigest()
