"""Data sources: each returns one canonical table of crystals with a target and its unit.

The canonical table (a :class:`pandas.DataFrame`) has one row per record of the source, in the
source's order, with the columns of :data:`CANONICAL_COLUMNS`:

``id``
    identifier as the source spells it (e.g. ``mp-10``, ``JVASP-1002``).
``formula``
    formula of the cell (``Composition.formula`` without spaces).
``structure``
    :class:`pymatgen.core.Structure`, or ``None`` when the record could not be parsed.
``target``
    the source's target as a float (``nan`` when missing or unreadable; never substituted).
``target_unit``
    ``"eV/atom"`` or ``"eV/cell"`` (heat of formation of the whole cell).
``source``
    dataset name and, where useful, the file the row came from.
``parse_error``
    ``None``, or why the record could not be parsed. Such rows are quarantined by
    :mod:`tracer.data.validation`, never dropped here.

Sources: ``flla`` (embedded default), ``jarvis_dft_3d_2020`` / ``_2021`` / ``_2022``,
``matbench_mp_e_form``, ``matbench_perovskites`` (downloaded and sha256-verified),
``castelli_local`` (a local folder of Castelli-perovskite CSVs) and ``local_csv`` (a CSV of the
user's own: ``id``, ``structure`` as CIF text or pymatgen JSON, and a target column named with its
unit, ``target_ev_per_atom`` or ``target_ev_per_cell``); the last two are read by path.
"""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import itertools
import json
import math
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Composition, Lattice, Structure

from tracer.data.download import ChecksumRegistry, Location, RawFile, fetch, sha256_file

EV_PER_ATOM = "eV/atom"
EV_PER_CELL = "eV/cell"
CANONICAL_COLUMNS = ("id", "formula", "structure", "target", "target_unit", "source", "parse_error")

_PYPI_MATMINER_039 = (
    "https://files.pythonhosted.org/packages/21/c8/"
    "21c7ad2d6ef08d7de00098bc559bcc0cf0483345ae006cb2c0a6ab21fab2/matminer-0.3.9.tar.gz"
)

FLLA = RawFile(
    filename="flla_2015.csv",
    sha256="35b8dbc0b92f4dc7e219fd6606c3a27bee18a9618f376cfee1ff731e306210bb",
    locations=(
        Location(
            url="https://raw.githubusercontent.com/hackingmaterials/matminer/v0.3.9/"
            "matminer/datasets/flla_2015.csv",
            description="matminer v0.3.9 public repository (matminer/datasets/flla_2015.csv)",
        ),
        Location(
            url=_PYPI_MATMINER_039,
            member="matminer-0.3.9/matminer/datasets/flla_2015.csv",
            description="PyPI sdist matminer==0.3.9, member matminer/datasets/flla_2015.csv",
        ),
    ),
    how_to_supply="It is matminer/datasets/flla_2015.csv inside PyPI's matminer-0.3.9.tar.gz "
    "(`pip download --no-deps --no-binary :all: matminer==0.3.9`).",
    citation="F. Faber, A. Lindmaa, O. A. von Lilienfeld, R. Armiento, Int. J. Quantum Chem. 115, "
    "1094 (2015), doi:10.1002/qua.24917; data from the Materials Project (CC-BY 4.0).",
)


def _jarvis(release: str, url: str) -> RawFile:
    return RawFile(
        filename=f"jdft_3d-{release}.json.zip",
        sha256=None,
        locations=(Location(url=url, description=f"JARVIS-DFT figshare release {release}"),),
        how_to_supply=f"It is the zip that jarvis-tools downloads for jdft_3d-{release}.json "
        f"({url}).",
        citation="K. Choudhary et al., npj Comput. Mater. 6, 173 (2020).",
        extra={"member": f"jdft_3d-{release}.json"},
    )


JARVIS_RELEASES: dict[str, RawFile] = {
    "jarvis_dft_3d_2020": _jarvis("4-26-2020", "https://ndownloader.figshare.com/files/22471022"),
    "jarvis_dft_3d_2021": _jarvis("8-18-2021", "https://ndownloader.figshare.com/files/29204826"),
    "jarvis_dft_3d_2022": _jarvis("12-12-2022", "https://ndownloader.figshare.com/files/38521619"),
}


def _matbench(task: str, sha256: str) -> RawFile:
    url = f"https://ml.materialsproject.org/projects/{task}.json.gz"
    return RawFile(
        filename=f"{task}.json.gz",
        sha256=sha256,
        locations=(Location(url=url, description=f"Matbench v0.1 {task}"),),
        how_to_supply=f"Download {url} on a machine with network access.",
        citation="A. Dunn et al., npj Comput. Mater. 6, 138 (2020).",
    )


MATBENCH: dict[str, RawFile] = {
    "matbench_mp_e_form": _matbench(
        "matbench_mp_e_form", "dedcb1d4ba2e3e50dbdd45ba5bc647a00e9c2bcf8f8bf556dc8e92caa39eb21f"
    ),
    "matbench_perovskites": _matbench(
        "matbench_perovskites", "4641e2417f8ec8b50096d2230864468dfa08278dc9d257c327f65d0305278483"
    ),
}


# --------------------------------------------------------------------------------------------
# Record helpers
# --------------------------------------------------------------------------------------------
def _to_float(value: Any) -> float:
    """Float of a raw target; ``nan`` when missing or unreadable (e.g. JARVIS's ``"na"``)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _formula_of(structure: Structure | None, fallback: str | Callable[[], str] = "") -> str:
    if structure is not None:
        return structure.composition.formula.replace(" ", "")
    return fallback() if callable(fallback) else fallback


def _record(
    rid: Any,
    make_structure: Callable[[], Structure],
    target: Any,
    unit: str,
    source: str,
    formula_hint: str | Callable[[], str] = "",
) -> dict[str, Any]:
    """Build one canonical row; a structure that fails to parse is kept with its error (and
    the formula ``formula_hint`` gives: a callable is called only then)."""
    structure: Structure | None = None
    error: str | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = make_structure()
    except Exception as exc:  # any parser failure is reported per record, never raised
        error = f"{type(exc).__name__}: {exc}"[:300]
    return {
        "id": str(rid),
        "formula": _formula_of(structure, formula_hint),
        "structure": structure,
        "target": _to_float(target),
        "target_unit": unit,
        "source": source,
        "parse_error": error,
    }


def _frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=list(CANONICAL_COLUMNS))
    df["target"] = df["target"].astype(float)
    return df


# --------------------------------------------------------------------------------------------
# Parsers (each tested on fixtures in the real file format)
# --------------------------------------------------------------------------------------------
def _csv_rows_skipping_comments(path: Path) -> Iterator[dict[str, str]]:
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as fh:
        lines = (line for line in fh if not line.startswith("#"))
        yield from csv.DictReader(lines)


def _formula_hint_from_dict_repr(text: str) -> str:
    try:
        return Composition(ast.literal_eval(text)).formula.replace(" ", "")
    except Exception:
        return str(text)


def read_flla_csv(path: str | Path, limit: int | None = None) -> pd.DataFrame:
    """Parse matminer 0.3.9's ``flla_2015.csv`` (structures as Python dict literals); with
    ``limit``, only its first ``limit`` records.

    Target: ``formation_energy_per_atom`` (eV/atom).
    """
    path = Path(path)
    rows = []
    for row in itertools.islice(_csv_rows_skipping_comments(path), limit):
        text, formula = row["structure"], row.get("formula", "")
        rows.append(
            _record(
                row["material_id"],
                lambda text=text: Structure.from_dict(ast.literal_eval(text)),
                row["formation_energy_per_atom"],
                EV_PER_ATOM,
                "flla",
                lambda formula=formula: _formula_hint_from_dict_repr(formula),
            )
        )
    return _frame(rows)


def _jarvis_structure(atoms: dict[str, Any]) -> Structure:
    return Structure(
        Lattice(atoms["lattice_mat"]),
        atoms["elements"],
        atoms["coords"],
        coords_are_cartesian=bool(atoms.get("cartesian", False)),
    )


def read_jarvis_zip(
    path: str | Path, member: str | None = None, target_key: str = "formation_energy_peratom"
) -> pd.DataFrame:
    """Parse a JARVIS-DFT 3D release (a zip holding one JSON list of records).

    Target: ``formation_energy_peratom`` (eV/atom); JARVIS writes ``"na"`` for missing values,
    which become ``nan`` here and are quarantined by validation.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        name = member or next(n for n in zf.namelist() if n.endswith(".json"))
        with zf.open(name) as fh:
            records = json.load(fh)
    return _frame(
        _record(
            rec.get("jid"),
            lambda rec=rec: _jarvis_structure(rec["atoms"]),
            rec.get(target_key),
            EV_PER_ATOM,
            f"jarvis:{name}",
            str(rec.get("formula", "")),
        )
        for rec in records
    )


def read_matbench_json_gz(path: str | Path, target_column: str, unit: str) -> pd.DataFrame:
    """Parse a Matbench/matminer ``.json.gz`` (pandas split orient: index, columns, data)."""
    path = Path(path)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        payload = json.load(fh)
    columns = list(payload["columns"])
    s_col, t_col = columns.index("structure"), columns.index(target_column)
    name = path.name.removesuffix(".json.gz")
    return _frame(
        _record(
            rid,
            lambda row=row: Structure.from_dict(row[s_col]),
            row[t_col],
            unit,
            name,
        )
        for rid, row in zip(payload["index"], payload["data"], strict=True)
    )


def read_castelli_dir(path: str | Path) -> pd.DataFrame:
    """Read a folder of Castelli-perovskite CSVs (columns ``material_id``, ``cif``, ``heat_ref``).

    Target: ``heat_ref``, the heat of formation of the whole 5-atom cell (eV/cell), as in
    matbench_perovskites. Files are read in name order; ids are ``castelli-<material_id>``.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"Castelli perovskite directory not found: {path}. Set dataset.path in "
            "params.yaml to a folder of CSVs with columns material_id, cif, heat_ref."
        )
    files = sorted(path.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"No *.csv files in Castelli perovskite directory {path}")
    rows = []
    for file in files:
        for row in _csv_rows_skipping_comments(file):
            cif = row["cif"]
            rows.append(
                _record(
                    f"castelli-{row['material_id']}",
                    lambda cif=cif: _structure_from_text(cif),
                    row["heat_ref"],
                    EV_PER_CELL,
                    f"castelli:{file.name}",
                    row.get("formula", ""),
                )
            )
    return _frame(rows)


def _structure_from_text(text: str) -> Structure:
    """A structure from CIF text or pymatgen JSON (as written by ``Structure.to_json``)."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return Structure.from_dict(json.loads(stripped))
    return Structure.from_str(text, fmt="cif")


LOCAL_TARGET_COLUMNS = {"target_ev_per_atom": EV_PER_ATOM, "target_ev_per_cell": EV_PER_CELL}


def read_local_csv(path: str | Path) -> pd.DataFrame:
    """Read a user's CSV: ``id``, ``structure`` (CIF or pymatgen JSON) and a unit-named target.

    The target column must be ``target_ev_per_atom`` or ``target_ev_per_cell`` so that the unit
    is never guessed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"local dataset file not found: {path} (dataset.path)")
    rows = list(_csv_rows_skipping_comments(path))
    header = set(rows[0]) if rows else set()
    target_cols = [c for c in LOCAL_TARGET_COLUMNS if c in header]
    if not {"id", "structure"} <= header or len(target_cols) != 1:
        raise ValueError(
            f"{path}: need columns id, structure and exactly one of "
            f"{sorted(LOCAL_TARGET_COLUMNS)}; found {sorted(header)}"
        )
    (t_col,) = target_cols
    return _frame(
        _record(
            row["id"],
            lambda text=row["structure"]: _structure_from_text(text),
            row[t_col],
            LOCAL_TARGET_COLUMNS[t_col],
            f"local:{path.name}",
        )
        for row in rows
    )


# --------------------------------------------------------------------------------------------
# Registry of named sources
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSpec:
    """A named data source: the raw file it needs (if any) and how to parse it."""

    name: str
    raw: RawFile | None
    description: str


SOURCES: dict[str, SourceSpec] = {
    "flla": SourceSpec("flla", FLLA, "FLLA 2015: 3,938 Materials Project crystals, eV/atom"),
    **{
        name: SourceSpec(name, raw, f"JARVIS-DFT 3D release {raw.filename}, eV/atom")
        for name, raw in JARVIS_RELEASES.items()
    },
    "matbench_mp_e_form": SourceSpec(
        "matbench_mp_e_form", MATBENCH["matbench_mp_e_form"], "Matbench mp_e_form, eV/atom"
    ),
    "matbench_perovskites": SourceSpec(
        "matbench_perovskites", MATBENCH["matbench_perovskites"], "Matbench perovskites, eV/cell"
    ),
    "castelli_local": SourceSpec(
        "castelli_local", None, "local folder of Castelli perovskite CSVs, eV/cell"
    ),
    "local_csv": SourceSpec("local_csv", None, "a CSV of the user's own (id, structure, target)"),
}


def fetch_source(
    name: str, raw_dir: str | Path, *, registry_path: str | Path | None = None
) -> Path | None:
    """Download and verify the raw file of source ``name``; return its path (``None`` if local)."""
    spec = _spec(name)
    if spec.raw is None:
        return None
    registry = ChecksumRegistry(registry_path) if registry_path is not None else None
    return fetch(spec.raw, raw_dir, registry=registry)


def load_source(
    name: str,
    *,
    raw_dir: str | Path = "data/raw",
    path: str | Path | None = None,
    registry_path: str | Path | None = "data/checksums.json",
    limit: int | None = None,
) -> pd.DataFrame:
    """Return the canonical table of source ``name``, fetching its raw file when needed.

    ``path`` is the folder (``castelli_local``) or file (``local_csv``) of sources read by path.
    ``limit``: only the first ``limit`` records, in the file's order (FLLA's parser stops
    there; the others' tables are cut after reading).
    """
    spec = _spec(name)
    if spec.raw is None:
        if path is None:
            raise ValueError(f"source {name} is read by path: set dataset.path")
        table = read_castelli_dir(path) if name == "castelli_local" else read_local_csv(path)
        return _first(table, limit)
    raw_path = fetch_source(name, raw_dir, registry_path=registry_path)
    assert raw_path is not None
    if name == "flla":
        return read_flla_csv(raw_path, limit)
    if name in JARVIS_RELEASES:
        return _first(read_jarvis_zip(raw_path, member=spec.raw.extra.get("member")), limit)
    if name == "matbench_mp_e_form":
        return _first(read_matbench_json_gz(raw_path, "e_form", EV_PER_ATOM), limit)
    if name == "matbench_perovskites":
        return _first(read_matbench_json_gz(raw_path, "e_form", EV_PER_CELL), limit)
    raise AssertionError(f"no parser wired for source {name}")  # pragma: no cover


def _first(table: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    return table if limit is None else table.iloc[: int(limit)].reset_index(drop=True)


def raw_sha256(name: str, raw_dir: str | Path, path: str | Path | None = None) -> str:
    """sha256 identifying a source's raw data (for a folder: of its sorted files' hashes)."""
    spec = _spec(name)
    if spec.raw is not None:
        return sha256_file(Path(raw_dir) / spec.raw.filename)
    if path is None:
        raise ValueError(f"source {name} is read by path: set dataset.path")
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.csv")):
        digest.update(f"{file.name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def _spec(name: str) -> SourceSpec:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown data source {name!r}; known: {sorted(SOURCES)}") from None
