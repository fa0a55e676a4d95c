"""Storage of the validated canonical table (Parquet, structures as pymatgen JSON).

The processed table written by the data stage is the single input of every later stage. Its
content hash (:func:`table_sha256`) identifies the data in splits and provenance records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

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


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a validated table to Parquet; ``structure`` is stored as pymatgen JSON text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.loc[:, list(TABLE_COLUMNS)].copy()
    out["structure"] = [json.dumps(s.as_dict(), sort_keys=True) for s in out["structure"]]
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
    """Content hash of a table: ids, targets (repr), units and structures, in row order."""
    digest = hashlib.sha256()
    for row in table.itertuples(index=False):
        structure = row.structure
        text = (
            structure
            if isinstance(structure, str)
            else json.dumps(structure.as_dict(), sort_keys=True)
        )
        digest.update(f"{row.id}\t{row.target!r}\t{row.target_unit}\t".encode())
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()
