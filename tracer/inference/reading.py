"""Reading a chemist's structure files for screening: every file accounted for.

:func:`discover` walks the paths a user gives and sorts every file into one of two piles: files
to read (a structure format recognised by name, or by ASE from the file's content) and files
skipped, each with the reason (not a structure format, a hidden file). :func:`read_file` parses
one file into ``(id, Structure, notes)`` items, one per structure it holds (every data block of a
CIF, every frame of an extended XYZ, the final structure of a ``vasprun.xml``), and strips what
the model does not use at the boundary: oxidation states (``K+``, ``O2-``, ``Li0+``), magnetic
moments, charges and other site properties; the notes say what was stripped.

Formats by name: ``*.cif``/``*.mcif`` (every data block), any name containing ``POSCAR`` or
``CONTCAR`` (``POSCAR``, ``POSCAR_NaCl``, ``NaCl.POSCAR``), ``*.vasp``/``*.poscar``,
``vasprun*.xml``, ``*.json`` (a pymatgen ``Structure`` dict, a list of them, or an object with a
``structure`` such as a ``ComputedStructureEntry``), ``*.extxyz``/``*.xyz`` (every frame); each
may end in ``.gz``, ``.bz2`` or ``.xz``. Other files are read by ASE when ASE recognises one of
the crystal formats of :data:`ASE_FORMATS` in them, and skipped otherwise.
"""

from __future__ import annotations

import glob
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pymatgen.core import Structure

COMPRESSED = (".gz", ".bz2", ".xz")
SUFFIXES = {".cif": "cif", ".mcif": "cif", ".vasp": "poscar", ".poscar": "poscar",
            ".json": "json", ".extxyz": "extxyz", ".xyz": "extxyz"}  # fmt: skip
#: ASE formats read when ASE recognises them in a file of another name (crystal and
#: simulation-cell formats; ASE's guesses such as ``txt``, ``py`` or ``csv`` are not structures)
ASE_FORMATS = frozenset({
    "aims", "castep-cell", "castep-geom", "cfg", "cif", "crystal", "dftb", "espresso-in",
    "espresso-out", "extxyz", "gen", "gpaw-out", "lammps-data", "proteindatabank", "res",
    "struct", "traj", "vasp", "vasp-out", "vasp-xdatcar", "vasp-xml", "xsf", "xyz",
})  # fmt: skip


@dataclass
class Discovery:
    """Files to read (``files``: path and format), files skipped with the reason
    (``skipped``: path, reason) and paths that named nothing (``missing``: path, reason)."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)


def format_by_name(path: Path) -> str | None:
    """The reader of a file judged by its name alone (``None``: not a name this module knows)."""
    name = path.name
    low = name.lower()
    for ext in COMPRESSED:
        if low.endswith(ext):
            low = low[: -len(ext)]
    if low.startswith("vasprun") and low.endswith(".xml"):
        return "vasprun"
    if "poscar" in low or "contcar" in low:
        return "poscar"
    return SUFFIXES.get(Path(low).suffix)


def format_by_content(path: Path) -> str | None:
    """``ase:<format>`` when ASE recognises one of :data:`ASE_FORMATS` in the file."""
    from ase.io.formats import filetype

    try:
        fmt = filetype(str(path), read=True, guess=True)
    except Exception:  # ASE raises several kinds for unknown, empty or binary files
        return None
    return f"ase:{fmt}" if fmt in ASE_FORMATS else None


def classify(path: Path) -> tuple[str | None, str]:
    """``(format, "")`` for a file to read, ``(None, reason)`` for one to skip."""
    if path.name.startswith("."):
        return None, "hidden file"
    fmt = format_by_name(path) or format_by_content(path)
    if fmt is None:
        return None, f"not a structure format (suffix {path.suffix or 'none'!r})"
    return fmt, ""


def discover(paths: Sequence[str | Path]) -> Discovery:
    """Every file under ``paths`` (files, folders walked recursively, globs), in order and
    without repeats, sorted into files to read and files skipped with the reason. A file named
    directly is always read (by name, by content, else as ASE guesses); a path that matches
    nothing is listed in ``missing``."""

    found = Discovery()
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            candidates, named = sorted(f for f in p.rglob("*") if f.is_file()), False
        elif p.is_file():
            candidates, named = [p], True
        else:
            candidates = sorted(Path(m) for m in glob.glob(str(raw), recursive=True)
                                if Path(m).is_file())  # fmt: skip
            named = False
        if not candidates:
            found.missing.append((str(raw), "no such file, or nothing matches"))
        for f in candidates:
            if f in seen:
                continue
            seen.add(f)
            fmt, reason = classify(f)
            if fmt is None and named and not f.name.startswith("."):
                fmt = "ase:guess"
            if fmt is None:
                found.skipped.append((str(f), reason))
            else:
                found.files.append((f, fmt))
    return found


def strip_to_model_input(structure: Structure) -> tuple[Structure, list[str]]:
    """The structure with only what the model reads (lattice, elements or occupancies, fractional
    coordinates): oxidation states and site properties removed, with a note for each removal."""
    notes: list[str] = []
    charged = sorted({str(sp) for site in structure for sp in site.species
                      if getattr(sp, "oxi_state", None) is not None})  # fmt: skip
    if charged:
        structure = structure.copy()
        structure.remove_oxidation_states()
        notes.append(f"oxidation states removed ({', '.join(charged[:8])}"
                     f"{' …' if len(charged) > 8 else ''})")  # fmt: skip
    props = sorted(structure.site_properties)
    if props:
        notes.append(f"site properties ignored ({', '.join(props)})")
    bare = Structure(structure.lattice, [site.species for site in structure],
                     structure.frac_coords)  # fmt: skip
    return bare, notes


def _cif_structures(path: Path) -> Iterator[tuple[str, Structure | Exception]]:
    """Every data block of a CIF on its own, so that one bad block does not hide the others."""
    from pymatgen.io.cif import CifFile, CifParser

    blocks = CifFile.from_file(str(path)).data
    if not blocks:
        raise ValueError("no data block in the CIF")
    for name, block in blocks.items():
        try:
            found = CifParser.from_str(str(block)).parse_structures(primitive=False,
                                                                   on_error="raise")  # fmt: skip
            if not found:
                raise ValueError("the data block holds no structure")
            yield name, found[0]
        except Exception as err:
            yield name, err


def _ase_structures(path: Path, fmt: str | None) -> Iterator[tuple[str, Structure | Exception]]:
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = read(str(path), index=":", format=fmt)
    for k, atoms in enumerate(frames if isinstance(frames, list) else [frames]):
        if not atoms.pbc.any() or atoms.cell.rank < 3:
            yield (
                str(k),
                ValueError(
                    "no periodic cell (a molecule or cluster?): the model predicts "
                    "crystals; put it in a cell with pbc set if that is meant"
                ),
            )
            continue
        yield str(k), AseAtomsAdaptor.get_structure(atoms)


def _json_structures(path: Path) -> Iterator[tuple[str, Structure | Exception]]:
    from monty.io import zopen
    from monty.json import MontyDecoder

    with zopen(str(path), "rt") as fh:
        payload = json.load(fh)
    items = payload if isinstance(payload, list) else [payload]
    for k, item in enumerate(items):
        try:
            obj = MontyDecoder().process_decoded(item)
            obj = getattr(obj, "structure", obj) if not isinstance(obj, Structure) else obj
            if isinstance(obj, dict) and "lattice" in obj and "sites" in obj:
                obj = Structure.from_dict(obj)
            if not isinstance(obj, Structure):
                raise ValueError(f"not a pymatgen Structure ({type(obj).__name__})")
            yield str(k), obj
        except Exception as err:
            yield str(k), err


def _structures(path: Path, fmt: str) -> Iterator[tuple[str, Structure | Exception]]:
    if fmt == "cif":
        yield from _cif_structures(path)
    elif fmt == "poscar":
        from pymatgen.io.vasp import Poscar

        yield "0", Poscar.from_file(str(path), check_for_potcar=False).structure
    elif fmt == "vasprun":
        from pymatgen.io.vasp import Vasprun

        run = Vasprun(str(path), parse_dos=False, parse_eigen=False,
                      parse_projected_eigen=False, parse_potcar_file=False)  # fmt: skip
        yield "0", run.final_structure
    elif fmt == "json":
        yield from _json_structures(path)
    elif fmt == "extxyz":
        yield from _ase_structures(path, "extxyz")
    elif fmt.startswith("ase:"):
        name = fmt.removeprefix("ase:")
        yield from _ase_structures(path, None if name == "guess" else name)
    else:
        raise ValueError(f"unknown reader {fmt!r}")


def read_file(path: Path, fmt: str) -> list[tuple[str, Structure | Exception, list[str]]]:
    """``(id, structure or the error that stopped it, notes)`` for every structure of one file.
    Ids: the file name without its structure suffix, ``name-<block or frame>`` when the file holds
    several. Raises when the file as a whole cannot be read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = list(_structures(path, fmt))
    if not found:
        raise ValueError("no structure in the file")
    stem = _stem(path)
    out: list[tuple[str, Structure | Exception, list[str]]] = []
    for key, item in found:
        sid = stem if len(found) == 1 else f"{stem}-{key}"
        if isinstance(item, Exception):
            out.append((sid, item, []))
        else:
            bare, notes = strip_to_model_input(item)
            out.append((sid, bare, notes))
    return out


def _stem(path: Path) -> str:
    name = path.name
    for ext in COMPRESSED:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    low = name.lower()
    known = (*SUFFIXES, ".xml")
    return name[: -len(Path(low).suffix)] if Path(low).suffix in known else name


def describe_error(err: BaseException) -> str:
    """A one-line reason for a file or structure that could not be read."""
    text = " ".join(str(err).split()) or "(no message)"
    return f"unreadable: {type(err).__name__}: {text[:300]}"


def disorder_hint() -> str:
    """What to do with a structure whose sites are partially occupied."""
    return ("order it first (e.g. pymatgen's OrderDisorderedStructureTransformation, or a special "
            "quasirandom structure) and screen the ordered cells")  # fmt: skip
