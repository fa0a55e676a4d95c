"""The 31k perovskite table: units per database checked from the values, the exact-duplicate and
implausible-target rules (each with a case it must catch and one it must leave), and
matbench's folds checked against scikit-learn's KFold directly."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from sklearn.model_selection import KFold

from tracer.data.perovskites import (
    exact_duplicates,
    matbench_folds,
    read_perovskites_31k,
    structure_fingerprint,
    target_ev_per_atom,
    validate_perovskites,
)


def _cell(a: float = 3.9, b_site: str = "Ti", order: tuple[int, ...] = (0, 1, 2, 3, 4)) -> str:
    species = ["Sr", b_site, "O", "O", "O"]
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    s = Structure(Lattice.cubic(a), [species[k] for k in order], [coords[k] for k in order])
    return s.to(fmt="cif")


def _write(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["source", "id", "target", "target_name", "cif"])
    path = tmp_path / "perovskites.csv.gz"
    frame.to_csv(path, index=False)
    return path


def _rows():
    return [
        ("CMR", "perov_0", 2.0, "e_form", _cell(3.9)),
        ("CMR", "perov_1", 1.5, "e_form", _cell(4.0, "Zr")),
        ("OQMD", "1", -2.0, "formation_energy", _cell(3.95)),
        # the same cell with its sites in another order: a duplicate of row 2
        ("OQMD", "2", -2.0, "formation_energy", _cell(3.95, order=(4, 3, 2, 1, 0))),
        # the same prototype 0.5% larger: a near-duplicate, not a duplicate
        ("OQMD", "3", -2.01, "formation_energy", _cell(3.97)),
        ("OQMD", "4831941", 25.44, "formation_energy", _cell(4.1, "Hf")),
        ("MP", "mp-1", 2.9, "formation_energy", _cell(4.2, "Nb")),
        # MP's copy of row 2's structure: another database, so not a duplicate by the rule
        ("MP", "mp-2", -2.1, "formation_energy", _cell(3.95)),
        # ordinary cells, so that one odd value per database is under the unit check's 5%
        *[(db, f"{db}-n{k}", -1.0, "formation_energy", _cell(5.0 + 0.05 * k))
          for db in ("OQMD", "MP") for k in range(20)],
    ]  # fmt: skip


def test_rules_catch_the_duplicate_and_the_implausible_target_and_keep_the_rest(tmp_path):
    frame = read_perovskites_31k(_write(tmp_path, _rows()))
    result, summary = validate_perovskites(frame)
    reasons = dict(zip(result.quarantine["id"], result.quarantine["reason"], strict=True))
    assert set(reasons) == {"oqmd-2", "oqmd-4831941"}
    assert reasons["oqmd-2"] == "exact duplicate: same structure as oqmd-1, same target"
    assert reasons["oqmd-4831941"].startswith("implausible target: 25.44 eV/atom")
    assert dict(zip(result.quarantine["id"], result.quarantine["row"], strict=True)) == {
        "oqmd-2": 3, "oqmd-4831941": 5,
    }  # fmt: skip
    assert len(result.clean) == 46 and "oqmd-3" in set(result.clean["id"])
    assert summary["high_but_kept"]["ids"] == ["mp-mp-1"]
    assert summary["per_database"]["OQMD"] == {"n_records": 24, "n_clean": 22}
    assert summary["unit_checks"]["CMR"]["declared"] == "eV/cell"


def test_per_cell_targets_become_per_atom():
    cell = Structure.from_str(_cell(), fmt="cif")
    frame = pd.DataFrame({"structure": [cell] * 2, "target": [2.0, -1.0],
                          "target_unit": ["eV/cell", "eV/atom"]})  # fmt: skip
    np.testing.assert_allclose(target_ev_per_atom(frame), [0.4, -1.0])


def test_a_database_whose_values_contradict_its_unit_is_an_error(tmp_path):
    # MP declared per atom, written per cell (x5): most values leave the per-atom range
    rows = [("MP", f"mp-{k}", -12.0 - 0.1 * k, "formation_energy", _cell(3.9 + 0.01 * k))
            for k in range(30)]  # fmt: skip
    frame = read_perovskites_31k(_write(tmp_path, rows))
    with pytest.raises(ValueError, match="database MP"):
        validate_perovskites(frame)


@pytest.mark.parametrize(
    ("row", "message"),
    [(("XYZ", "1", 1.0, "e_form", ""), "unknown database 'XYZ'"),
     (("CMR", "p", 1.0, "formation_energy", ""), "CMR gives 'e_form'")],
)  # fmt: skip
def test_unknown_database_or_target_name_names_the_row(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        read_perovskites_31k(_write(tmp_path, [*_rows()[:2], row]))


def test_fingerprint_separates_species_and_tolerates_site_order():
    a = Structure.from_str(_cell(3.9), fmt="cif")
    assert structure_fingerprint(a) == structure_fingerprint(
        Structure.from_str(_cell(3.9, order=(2, 0, 4, 1, 3)), fmt="cif"))  # fmt: skip
    assert structure_fingerprint(a) != structure_fingerprint(
        Structure.from_str(_cell(3.9, "Zr"), fmt="cif"))  # fmt: skip
    frame = pd.DataFrame({"database": ["OQMD"] * 2, "id": ["a", "b"], "target": [1.0, 1.5],
                          "structure": [a, a.copy()]})  # fmt: skip
    assert exact_duplicates(frame) == [
        {"row": 1, "id": "b", "of_row": 0, "of_id": "a", "same_target": False}
    ]


def test_matbench_folds_are_sklearns_kfold_with_an_inner_validation_part():
    ids = [f"perov_{k}" for k in range(103)]
    runs = matbench_folds(ids)
    reference = KFold(n_splits=5, shuffle=True, random_state=18012019).split(ids)
    for run, (_, test_idx) in zip(runs, reference, strict=True):
        assert run["test"] == [ids[i] for i in test_idx]
        assert not set(run["val"]) & set(run["train"])
        assert set(run["val"]) | set(run["train"]) == set(ids) - set(run["test"])
        assert len(run["val"]) == round(0.1 * (len(ids) - len(run["test"])))
    assert matbench_folds(ids) == runs
    with pytest.raises(ValueError, match="unique"):
        matbench_folds([*ids, ids[0]])
