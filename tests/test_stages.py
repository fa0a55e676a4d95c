"""Stage functions on real data: a corrupted copy of FLLA is quarantined record by record and the
rest of the run goes on."""

import csv
import json

import pandas as pd
import pytest

from tracer.data.splits import load_split
from tracer.data.validation import QuarantineError, ValidationConfig
from tracer.pipeline.accuracy_stages import run_accuracy_stage
from tracer.pipeline.data_stages import run_data_stage, run_dummy_stage, run_split_stage
from tracer.pipeline.paths import Paths


def _write_local_csv(path, table):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "structure", "target_ev_per_atom"])
        for rid, text, target in table:
            w.writerow([rid, text, target])


@pytest.fixture
def corrupted_csv(tmp_path, flla_table):
    rows = [
        (r.id, r.structure.to_json(), repr(r.target)) for r in flla_table.iloc[:80].itertuples()
    ]
    s = flla_table.structure.iloc[3].copy()
    s.append(s[0].specie, s[0].frac_coords + 0.001)  # an atom on top of another
    rows[10] = (rows[10][0], "this is not a CIF", rows[10][2])  # unparsable structure
    rows[20] = (rows[20][0], rows[20][1], "nan")  # NaN target
    rows[30] = (rows[5][0], rows[30][1], rows[30][2])  # duplicated id
    rows[40] = (rows[40][0], s.to_json(), rows[40][2])  # overlapping atoms
    path = tmp_path / "corrupted.csv"
    _write_local_csv(path, rows)
    bad = {
        rows[10][0]: "unparsable",
        rows[20][0]: "not a finite",
        rows[5][0]: "duplicate id",
        rows[40][0]: "overlapping atoms",
    }
    return path, bad


def test_corrupted_copy_is_quarantined_and_the_run_goes_on(tmp_path, corrupted_csv):
    path, bad = corrupted_csv
    params = {"seed": 42}
    common = dict(
        dataset_name="local_csv", dataset_raw_dir="data/raw", dataset_path=str(path), root=tmp_path
    )
    res = run_data_stage(
        params=params,
        dataset_limit=None,
        validation=ValidationConfig(max_quarantine_fraction=0.1),
        **common,
    )
    q = pd.read_csv(Paths("local_csv", tmp_path).quarantine)
    for rid, reason in bad.items():
        assert q[q.id == rid].reason.str.contains(reason).any(), (rid, reason)
    assert set(q.id) == set(bad)
    assert len(res.clean) == 80 - 5  # the duplicated id is quarantined in both rows
    data_metrics = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert data_metrics["n_quarantined"] == 5 and data_metrics["quarantine_within_limit"]
    out = run_split_stage(
        params=params, fractions=[0.8, 0.1, 0.1], seed=42, group_duplicates=True, **common
    )
    split = load_split(Paths("local_csv", tmp_path).split)
    assert not set(bad) & set(split["train"] + split["val"] + split["test"])
    assert out["metrics"]["leak_free"]
    run_dummy_stage(dataset_name="local_csv", root=tmp_path)
    acc = run_accuracy_stage(
        params=params, dataset_name="local_csv", models=["dummy"], n_bootstrap=100, root=tmp_path
    )
    assert acc["metrics"]["n_test"] == len(split["test"])
    assert acc["metrics"]["models"]["dummy"]["mae"] > 0


def test_too_many_bad_records_stop_the_stage_after_reporting(tmp_path, corrupted_csv):
    path, bad = corrupted_csv
    with pytest.raises(QuarantineError):
        run_data_stage(
            params={},
            dataset_name="local_csv",
            dataset_raw_dir="data/raw",
            dataset_path=str(path),
            dataset_limit=None,
            validation=ValidationConfig(max_quarantine_fraction=0.01),
            root=tmp_path,
        )
    assert set(pd.read_csv(Paths("local_csv", tmp_path).quarantine).id) == set(bad)
    assert not Paths("local_csv", tmp_path).table.exists()
