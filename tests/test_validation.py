import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure

from tracer.data.validation import (
    QuarantineError,
    ValidationConfig,
    enforce_quarantine_limit,
    structure_problems,
    validate,
)

CFG = ValidationConfig(min_distance_angstrom=0.5, graph_cutoff_angstrom=6.0)


def _row(rid, s, target=-1.0, err=None):
    return {
        "id": rid,
        "formula": "",
        "structure": s,
        "target": target,
        "target_unit": "eV/atom",
        "source": "test",
        "parse_error": err,
    }


def _nacl():
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_good_structure_has_no_problems(flla_structures):
    for s in flla_structures:
        assert structure_problems(s, CFG) == []


def test_overlapping_atoms_named():
    s = Structure(
        Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.52]]
    )
    (reason,) = structure_problems(s, CFG)
    assert reason.startswith("overlapping atoms") and "sites 1 and 2" in reason


def test_exactly_coincident_atoms_are_caught():
    s = Structure(Lattice.cubic(5.0), ["Na", "Na"], [[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    assert any(r.startswith("overlapping atoms") for r in structure_problems(s, CFG))


def test_too_small_cell_overlaps_with_own_image():
    s = Structure(Lattice.cubic(0.3), ["H"], [[0, 0, 0]])
    assert any("periodic image" in r for r in structure_problems(s, CFG))


def test_isolated_atom_has_no_neighbour():
    s = Structure(Lattice.cubic(20.0), ["Ar", "Ar"], [[0, 0, 0], [0.1, 0, 0]])
    s_iso = Structure(Lattice.cubic(20.0), ["Ar"], [[0, 0, 0]])
    assert structure_problems(s, CFG) == []  # the two atoms see each other (2 Å)
    assert any("no neighbour within 6.0" in r for r in structure_problems(s_iso, CFG))


def test_unknown_element_and_disorder():
    s = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert any("unknown or unsupported element" in r for r in structure_problems(s, CFG))
    d = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    assert structure_problems(d, CFG) == ["disordered structure (partial occupancies)"]


def test_empty_structure():
    s = Structure(Lattice.cubic(4.0), [], [])
    assert structure_problems(s, CFG) == ["empty structure (no sites)"]


def test_validate_quarantines_each_bad_record_and_keeps_the_rest():
    good = _nacl()
    overlapping = Structure(Lattice.cubic(5.0), ["Na", "Na"], [[0, 0, 0], [0.01, 0, 0]])
    table = pd.DataFrame(
        [
            _row("ok-1", good),
            _row("nan-target", good, target=math.nan),
            _row("dup", good, target=-1.0),
            _row("unparsable", None, err="SyntaxError: bad"),
            _row("dup", good, target=-2.0),
            _row("overlap", overlapping),
            _row("ok-2", good, target=-3.0),
        ]
    )
    res = validate(table, CFG)
    assert list(res.clean.id) == ["ok-1", "ok-2"]
    assert list(res.clean.n_atoms) == [2, 2] and list(res.clean.reduced_formula) == ["NaCl"] * 2
    q = res.quarantine.groupby("id")["reason"].apply(list).to_dict()
    assert set(q) == {"nan-target", "dup", "unparsable", "overlap"}
    assert "target is not a finite number" in q["nan-target"][0]
    assert all("duplicate id" in r for r in q["dup"]) and len(q["dup"]) == 2
    assert q["unparsable"] == ["unparsable structure: SyntaxError: bad"]
    assert q["overlap"][0].startswith("overlapping atoms")
    assert res.summary()["n_quarantined"] == 5 and res.summary()["n_clean"] == 2
    # no quarantined id reaches the clean table
    assert not set(res.clean.id) & set(res.quarantine.id)


def test_quarantine_limit():
    table = pd.DataFrame([_row("a", _nacl()), _row("b", _nacl(), target=np.nan)])
    res = validate(table, CFG)
    enforce_quarantine_limit(res, 0.5)
    with pytest.raises(QuarantineError, match="1 of 2 records"):
        enforce_quarantine_limit(res, 0.1)
