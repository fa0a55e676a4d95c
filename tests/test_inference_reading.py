"""Reading a chemist's files: oxidation states stripped, every name pymatgen and ASE read, every
file accounted for, one reason per distinct problem."""

import json

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from tracer.inference.reading import (
    classify,
    discover,
    read_file,
    strip_to_model_input,
)
from tracer.inference.screening import _problem


@pytest.fixture(scope="module")
def nacl():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip


def _read_one(path):
    fmt, reason = classify(path)
    assert fmt is not None, reason
    return read_file(path, fmt)


def test_oxidation_decorated_cif_is_read_as_elements(tmp_path, nacl):
    decorated = nacl.copy()
    decorated.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    decorated.to(filename=str(tmp_path / "NaCl.cif"))
    assert "Na+" in (tmp_path / "NaCl.cif").read_text()
    [(sid, s, notes)] = _read_one(tmp_path / "NaCl.cif")
    assert sid == "NaCl" and s.composition.reduced_formula == "NaCl"
    assert all(type(site.specie).__name__ == "Element" for site in s)
    assert "oxidation states removed (Cl-, Na+)" in notes[0]
    assert _problem(s, 6.0) == ""


def test_oxidation_decorated_json_and_zero_charges(tmp_path):
    s = Structure(Lattice.cubic(3.0), ["Li0+", "C0+"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (tmp_path / "lic.json").write_text(json.dumps(s.as_dict()))
    [(_, got, notes)] = _read_one(tmp_path / "lic.json")
    assert [str(site.specie) for site in got] == ["Li", "C"] and notes
    # before stripping, the same structure is refused, once per distinct element with its sites
    reason = _problem(s, 6.0)
    assert reason.count("unknown or unsupported element") == 2 and "(site 0)" in reason


def test_unknown_element_named_once_with_its_sites(nacl):
    s = nacl.copy()
    s.replace_species({"Na": "Na+"})
    reason = _problem(s, 6.0)
    assert reason == "unknown or unsupported element Na+ (sites 0, 1, 2, 3)"


def test_multi_block_cif_gives_every_block_and_names_a_bad_one(tmp_path, nacl):
    other = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    text = nacl.to(fmt="cif") + "\n" + other.to(fmt="cif").replace("data_Fe", "data_iron")
    text += "\ndata_broken\n_cell_length_a 3.0\n"
    (tmp_path / "many.cif").write_text(text)
    got = _read_one(tmp_path / "many.cif")
    assert [sid for sid, _, _ in got] == ["many-NaCl", "many-iron", "many-broken"]
    assert got[1][1].composition.reduced_formula == "Fe"
    assert isinstance(got[2][1], Exception)


def test_multi_frame_extxyz_and_molecule_frames(tmp_path, nacl):
    from ase import Atoms
    from ase.io import write

    frames = [AseAtomsAdaptor.get_atoms(nacl), AseAtomsAdaptor.get_atoms(nacl * (2, 1, 1)),
              Atoms("Re2", positions=[[0, 0, 0], [0, 0, 2.2]])]  # fmt: skip
    write(tmp_path / "traj.extxyz", frames)
    got = _read_one(tmp_path / "traj.extxyz")
    assert [sid for sid, _, _ in got] == ["traj-0", "traj-1", "traj-2"]
    assert len(got[1][1]) == 16
    assert "no periodic cell" in str(got[2][1])


def test_poscar_without_extension_and_other_vasp_names(tmp_path, nacl):
    from pymatgen.io.vasp import Poscar

    for name in ("POSCAR_NaCl", "NaCl.POSCAR", "CONTCAR", "nacl.vasp"):
        Poscar(nacl).write_file(tmp_path / name)
        [(sid, s, _)] = _read_one(tmp_path / name)
        assert s.composition.reduced_formula == "NaCl", name
    assert classify(tmp_path / "POSCAR_NaCl")[0] == "poscar"


def test_disordered_structure_gets_a_hint(tmp_path):
    s = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    s.to(filename=str(tmp_path / "cuau.cif"))
    [(_, got, _)] = _read_one(tmp_path / "cuau.cif")
    reason = _problem(got, 6.0)
    assert reason.startswith("disordered structure") and "OrderDisorderedStructure" in reason


def test_every_file_is_read_or_skipped_with_a_reason(tmp_path, nacl):
    nacl.to(filename=str(tmp_path / "a.cif"))
    (tmp_path / "sub").mkdir()
    nacl.to(filename=str(tmp_path / "sub" / "POSCAR_x"), fmt="poscar")
    (tmp_path / "README.md").write_text("# my structures")
    (tmp_path / "energies.csv").write_text("id,e\n1,2\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    found = discover([tmp_path, tmp_path / "nothing*.vasp"])
    assert sorted(p.name for p, _ in found.files) == ["POSCAR_x", "a.cif"]
    skipped = {p.split("/")[-1]: why for p, why in found.skipped}
    assert set(skipped) == {"README.md", "energies.csv", ".DS_Store"}
    assert skipped[".DS_Store"] == "hidden file"
    assert all(w.startswith("not a structure format") for k, w in skipped.items() if k[0] != ".")
    assert found.missing == [(str(tmp_path / "nothing*.vasp"), "no such file, or nothing matches")]


def test_ase_reads_a_crystal_format_it_recognises(tmp_path, nacl):
    from ase.io import write

    write(tmp_path / "nacl.xsf", AseAtomsAdaptor.get_atoms(nacl), format="xsf")
    fmt, _ = classify(tmp_path / "nacl.xsf")
    assert fmt == "ase:xsf"
    [(_, s, _)] = read_file(tmp_path / "nacl.xsf", fmt)
    assert s.composition.reduced_formula == "NaCl"


def test_site_properties_are_dropped_with_a_note(nacl):
    s = nacl.copy()
    s.add_site_property("magmom", [0.0] * len(s))
    bare, notes = strip_to_model_input(s)
    assert not bare.site_properties and notes == ["site properties ignored (magmom)"]
