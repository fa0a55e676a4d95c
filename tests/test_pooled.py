"""The four-database pooled study: per-atom targets, cross-database matches, a split that keeps
matched crystals together, and a tiny end-to-end run scored per database."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from pymatgen.core import Lattice, Structure
from test_train import CFG

from tracer.analysis.pooled import matched_differences, pooled_report, record_tables
from tracer.data.pooled import (
    DATABASES,
    cross_database_matches,
    match_groups,
    pooled_split,
    pooled_table,
)
from tracer.data.validation import validate
from tracer.graphs.dataset import save_structure_tensors
from tracer.pipeline.paths import POOLED_RECORD
from tracer.pipeline.pooled import limited, pooled_runs, run_pooled


def _perov(n: int, a: float, db: str, start: int) -> pd.DataFrame:
    """Cubic ABO3 cells (SrTiO3 at lattice constant ``a`` Å) of one database."""
    rows = []
    for k in range(n):
        s = Structure(Lattice.cubic(a + 0.01 * k), ["Sr", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
        unit = "eV/cell" if db == "CMR" else "eV/atom"
        per_atom = -3.0 - 0.01 * k
        rows.append({"id": f"{db.lower()}-{start + k}", "structure": s, "target": per_atom * (
            5 if unit == "eV/cell" else 1), "target_unit": unit, "database": db})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def pooled(flla_table):
    flla = validate(flla_table.iloc[:12]).clean
    perov = pd.concat([_perov(4, 3.90, "MP", 0), _perov(4, 3.95, "OQMD", 0),
                       _perov(4, 3.90, "CMR", 0)], ignore_index=True)  # fmt: skip
    return pooled_table(flla, perov)


def test_table_puts_every_database_per_atom_with_its_domain(pooled):
    assert list(pooled["database"].unique()) == list(DATABASES)
    cmr = pooled[pooled["database"] == "CMR"]
    assert np.allclose(cmr["target"], [-3.0, -3.01, -3.02, -3.03])  # eV per 5-atom cell / 5
    assert pooled.groupby("database")["domain"].first().to_dict() == {
        d: k for k, d in enumerate(DATABASES)}  # fmt: skip
    with pytest.raises(ValueError, match="unknown perovskite databases"):
        pooled_table(pooled[pooled["database"] == "FLLA"].assign(target_unit="eV/atom"),
                     _perov(1, 4.0, "JARVIS", 0))  # fmt: skip


def test_matches_pair_the_same_crystal_across_databases_only(pooled):
    matches = cross_database_matches(pooled)
    # every MP, OQMD and CMR cell is SrTiO3 in one cubic prototype (volumes scaled): all match
    # across databases, never within one, and no FLLA crystal is SrTiO3
    assert set(zip(matches["database_a"], matches["database_b"], strict=True)) == {
        ("MP", "OQMD"), ("MP", "CMR"), ("OQMD", "CMR")}  # fmt: skip
    assert len(matches) == 3 * 16
    assert not (matches["database_a"] == matches["database_b"]).any()
    diffs = matched_differences(matches)
    assert diffs["CMR_minus_MP"]["median"] == pytest.approx(0.0)
    assert diffs["CMR_minus_MP"]["n"] == 16


def test_split_keeps_matched_groups_on_one_side(pooled):
    matches = cross_database_matches(pooled)
    groups = match_groups(list(pooled["id"]), matches)
    assert len(set(groups.values())) == len(pooled) - 11  # the 12 SrTiO3 cells: one group
    for seed in range(6):
        split = pooled_split(pooled, matches, seed=seed, val_fraction=0.3, test_fraction=0.3)
        side = {i: p for p in ("train", "val", "test") for i in split[p]}
        assert sorted(side) == sorted(pooled["id"])
        for a, b in zip(matches["id_a"], matches["id_b"], strict=True):
            assert side[a] == side[b]
        assert split["matched_groups"] == 1 and split["databases"] == list(DATABASES)
    assert pooled_split(pooled, matches, seed=1) == pooled_split(pooled, matches, seed=1)


def test_a_tiny_pooled_run_is_scored_per_database(tmp_path, pooled):
    ids = {d: list(pooled.loc[pooled["database"] == d, "id"]) for d in DATABASES}
    for d in DATABASES:
        part = pooled[pooled["database"] == d]
        save_structure_tensors(tmp_path / f"structures_{d}.pt", list(part["id"]),
                               list(part["structure"]), list(part["target"]),
                               "eV/atom")  # fmt: skip
    # per database: two to train, one to validate, one to test
    split = {"train": [], "val": [], "test": [], "databases": list(DATABASES)}
    for d in DATABASES:
        split["train"] += ids[d][:2]
        split["val"].append(ids[d][2])
        split["test"].append(ids[d][3])
    (tmp_path / "split.json").write_text(json.dumps(split))
    params = {"seed": 0, "gemnet": {k: v for k, v in CFG.to_dict().items()
                                    if k not in ("cutoff", "max_neighbors")},
              "graph": {"cutoff_angstrom": 6.0, "max_neighbors": 8},
              "train": {"max_epochs": 1, "batch_size": 4, "scale_fit_batches": 1,
                        "warmup_epochs": 0},
              "pooled": {"variants": ["baseline", "offset"], "seeds": [0], "emb_size": 4,
                         "separate": True, "train_limit": None, "train": {}}}  # fmt: skip
    out = tmp_path / "runs"
    summaries = run_pooled(params, tmp_path, out, device="cpu")
    assert sorted(summaries) == sorted(["pooled_baseline_seed0", "pooled_offset_seed0"]
                                       + [f"separate_{d}_seed0" for d in DATABASES])  # fmt: skip
    assert summaries["separate_CMR_seed0"]["n_train"] == 2
    offsets = json.loads((out / "pooled_offset_seed0.offsets.json").read_text())
    assert list(offsets) == list(DATABASES)
    record = torch.load(out / "pooled_offset_seed0.pt", weights_only=False)
    want = float(record["state_dict"]["offset.weight"][3, 0]) * record["scaler"]["std"]
    assert offsets["CMR"] == pytest.approx(want)
    database_of = {i: d for d in DATABASES for i in ids[d]}
    report = pooled_report(out, database_of, databases=DATABASES, variants=["baseline", "offset"],
                           seeds=[0], matches=cross_database_matches(pooled))  # fmt: skip
    frame = pd.read_parquet(out / "pooled_offset_seed0.parquet").set_index("id")
    row = frame.loc[ids["OQMD"][3]]
    assert report["variants"]["offset"]["per_database"]["OQMD"]["mae"] == pytest.approx(
        abs(row["y_pred"] - row["y_true"]))  # fmt: skip
    assert set(report["separate"]) == set(DATABASES)
    assert set(report["best"]) == set(DATABASES)
    assert report["offsets"]["learned_ev_per_atom"]["FLLA"] == 0.0
    assert "offset beats the pooled model" in report["finding"]
    # the record: this study beside the run of record's one-database study
    import yaml

    from tracer.cli import main

    (tmp_path / "ids.json").write_text(json.dumps(ids))
    cross_database_matches(pooled).to_csv(tmp_path / "matches.csv", index=False)
    (tmp_path / "data.json").write_text(json.dumps({"provenance": {"dataset_sha256": "ab"}}))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    assert main(["record-pooled", "--run-dir", str(out), "--pooled", str(tmp_path), "--params",
                 str(tmp_path / "p.yaml"), "--device", "cpu", "--out",
                 str(tmp_path / "rec")]) == 0  # fmt: skip
    rec = json.loads((tmp_path / "rec" / "domains.json").read_text())
    assert rec["multi_database"]["variants"]["offset"]["per_database"]["OQMD"]["n"] == 1
    assert set(rec["single_database"]["variants"]) >= {"baseline", "film"}
    assert (tmp_path / "rec" / "data" / "split.json").exists()


def test_limits_cut_each_database_and_runs_are_named(pooled):
    ids = list(pooled["id"])
    database_of = dict(zip(pooled["id"], pooled["database"], strict=True))
    split = {"train": ids, "val": [], "test": [], "databases": list(DATABASES)}
    cut = limited(split, database_of, 2, seed=0)
    assert {d: sum(database_of[i] == d for i in cut["train"]) for d in DATABASES} == dict.fromkeys(
        DATABASES, 2)  # fmt: skip
    assert limited(split, database_of, None, seed=0)["train"] == ids
    from tracer.training.settings import TrainConfig

    runs = pooled_runs(CFG, TrainConfig(), cut, database_of, databases=DATABASES,
                       variants=["baseline", "film"], seeds=[0, 1], emb_size=4,
                       separate=True)  # fmt: skip
    names = [r.name for r in runs]
    assert names[:4] == ["pooled_baseline_seed0", "pooled_baseline_seed1", "pooled_film_seed0",
                         "pooled_film_seed1"]  # fmt: skip
    sep = next(r for r in runs if r.name == "separate_OQMD_seed1")
    assert all(database_of[i] == "OQMD" for p in ("train", "val", "test") for i in sep.split[p])


def test_record_tables_show_the_committed_record_as_recorded():
    record = json.loads((REPO / POOLED_RECORD).read_text())
    multi = record["multi_database"]
    t = record_tables(record)
    assert list(t["mae"].columns[:4]) == multi["databases"]
    assert t["mae"].loc["film", "CMR"] == multi["variants"]["film"]["per_database"]["CMR"]["mae"]
    assert t["mae"].loc["separate", "MP"] == multi["separate"]["MP"]["mae"]
    assert "baseline" not in t["gains"].index  # no gain over itself
    assert t["gains"].loc["offset", "FLLA"].startswith("+0.0040 (inside")
    assert t["learned_offsets"].to_dict() == multi["offsets"]["learned_ev_per_atom"]
