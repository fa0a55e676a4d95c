import math

import numpy as np
import pytest
from conftest import SHARED, jarvis_atoms, write_flla_csv, write_jarvis_zip, write_matbench_json_gz

from tracer.data.download import sha256_file
from tracer.data.sources import (
    CANONICAL_COLUMNS,
    EV_PER_ATOM,
    EV_PER_CELL,
    FLLA,
    JARVIS_RELEASES,
    MATBENCH,
    load_source,
    read_castelli_dir,
    read_flla_csv,
    read_jarvis_zip,
    read_matbench_json_gz,
)


def test_real_flla_file_is_the_published_one(flla_csv):
    assert sha256_file(flla_csv) == FLLA.sha256


def test_real_flla_table(flla_table):
    assert len(flla_table) == 3938
    assert tuple(flla_table.columns) == CANONICAL_COLUMNS
    assert flla_table["id"].is_unique
    assert flla_table["parse_error"].isna().all()
    assert set(flla_table["target_unit"]) == {EV_PER_ATOM}
    row = flla_table.set_index("id").loc["mp-10"]
    assert row.formula == "As2" and math.isclose(row.target, 0.1074050600000005)


def test_flla_fixture_keeps_bad_rows_with_reasons(tmp_path, flla_structures):
    s = flla_structures[2]
    path = write_flla_csv(
        tmp_path / "f.csv",
        [("mp-1", s, "-1.5"), ("mp-2", "{'not': a struct", "0.1"), ("mp-3", s, "")],
    )
    t = read_flla_csv(path)
    assert list(t.id) == ["mp-1", "mp-2", "mp-3"]
    assert t.parse_error.iloc[0] is None and t.structure.iloc[0] == s
    assert "SyntaxError" in t.parse_error.iloc[1] and t.structure.iloc[1] is None
    assert np.isnan(t.target.iloc[2])


def test_flla_limit_reads_the_first_records_and_a_bad_row_keeps_its_formula(
    tmp_path, flla_structures, flla_csv, flla_table
):
    path = write_flla_csv(tmp_path / "f.csv", [(f"mp-{k}", s, "-1.0")
                                               for k, s in enumerate(flla_structures)])  # fmt: skip
    whole, first = read_flla_csv(path), read_flla_csv(path, limit=3)
    assert list(first.id) == list(whole.id[:3]) and list(first.formula) == list(whole.formula[:3])
    assert all(a == b for a, b in zip(first.structure, whole.structure[:3], strict=True))
    limited = load_source("flla", raw_dir=flla_csv.parent, registry_path=None, limit=3)  # real
    assert list(limited.id) == list(flla_table.id[:3])
    # a structure that does not parse keeps the formula of the file's formula column
    text = path.read_text().replace(repr(flla_structures[0].as_dict()), "{'broken': 1")
    (tmp_path / "g.csv").write_text(text)
    bad = read_flla_csv(tmp_path / "g.csv", limit=1).iloc[0]
    assert bad.structure is None and bad.formula == flla_structures[0].composition.formula.replace(
        " ", "")


def test_jarvis_zip_fixture(tmp_path, flla_structures):
    member = "jdft_3d-4-26-2020.json"
    recs = [
        {
            "jid": f"JVASP-{i}",
            "atoms": jarvis_atoms(s),
            "formation_energy_peratom": -0.5 * i,
            "formula": s.composition.reduced_formula,
        }
        for i, s in enumerate(flla_structures[:3])
    ]
    recs[2]["formation_energy_peratom"] = "na"
    recs.append(
        {"jid": "JVASP-99", "atoms": {"lattice_mat": [[1, 0]]}, "formation_energy_peratom": 1}
    )
    path = write_jarvis_zip(tmp_path / "j.zip", recs, member)
    t = read_jarvis_zip(path, member=member)
    assert list(t.id) == ["JVASP-0", "JVASP-1", "JVASP-2", "JVASP-99"]
    assert np.allclose(t.structure.iloc[1].frac_coords, flla_structures[1].frac_coords)
    assert np.isnan(t.target.iloc[2])
    assert t.parse_error.iloc[3] is not None
    assert set(t.target_unit) == {EV_PER_ATOM}


def test_matbench_json_gz_fixture(tmp_path, flla_structures):
    path = write_matbench_json_gz(
        tmp_path / "matbench_perovskites.json.gz",
        ["mb-1", "mb-2"],
        flla_structures[:2],
        [1.25, 0.5],
    )
    t = read_matbench_json_gz(path, "e_form", EV_PER_CELL)
    assert list(t.id) == ["mb-1", "mb-2"] and list(t.target) == [1.25, 0.5]
    assert t.structure.iloc[0] == flla_structures[0]
    assert set(t.target_unit) == {EV_PER_CELL}


def test_castelli_fixture(tmp_path, flla_structures):
    import csv

    s = flla_structures[3]
    with open(tmp_path / "test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "material_id", "cif", "formula", "heat_all", "heat_ref"])
        w.writerow([0, 7, s.to(fmt="cif"), "X", 1.2, 1.234])
        w.writerow([1, 8, "data_broken\n_cell_length_a 4", "Y", 0.1, 0.1])
    t = read_castelli_dir(tmp_path)
    assert list(t.id) == ["castelli-7", "castelli-8"]
    assert t.structure.iloc[0].composition == s.composition
    assert t.parse_error.iloc[1] is not None
    assert set(t.target_unit) == {EV_PER_CELL}


def test_castelli_missing_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset\.path"):
        read_castelli_dir(tmp_path / "nope")


@pytest.mark.skipif(
    not (SHARED / "data" / "castelli-perovskites-subset").is_dir(),
    reason="shared Castelli subset not beside the checkout",
)
def test_real_castelli_subset_first_file():
    t = read_castelli_dir(SHARED / "data" / "castelli-perovskites-subset")
    assert len(t) == 8596 and t.id.is_unique
    assert t.parse_error.isna().all()
    assert all(len(s) == 5 for s in t.structure.iloc[:50])
    # README of the subset: heat_ref mean 1.39, max 4.38 eV/cell (per cell, not per atom)
    assert abs(t.target.mean() - 1.39) < 0.01 and abs(t.target.max() - 4.38) < 0.01


def test_published_checksums_and_urls():
    assert MATBENCH["matbench_mp_e_form"].sha256.startswith("dedcb1d4")
    assert MATBENCH["matbench_perovskites"].sha256.startswith("4641e241")
    assert JARVIS_RELEASES["jarvis_dft_3d_2020"].locations[0].url.endswith("/22471022")
    assert all(r.sha256 is None for r in JARVIS_RELEASES.values())


def test_load_source_unknown_name():
    with pytest.raises(ValueError, match="unknown data source"):
        load_source("nope")
