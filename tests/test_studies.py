"""The domain and transfer studies: runs resumed and skipped by identity, reports that are
computed from the runs' own files, fine-tuning that really starts from the given weights."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import CFG, train_small_members

from tracer.analysis.studies import _across_seeds, domain_report, transfer_report
from tracer.graphs.dataset import GraphDataset
from tracer.pipeline.studies import (
    Run,
    domain_runs,
    multi_domain_split,
    repeats_for,
    train_runs,
    transfer_runs,
)
from tracer.pipeline.study_records import domain_record, study_run_states
from tracer.training.checkpoints import load_member
from tracer.training.settings import TrainConfig

TC = TrainConfig(max_epochs=1, batch_size=8, scale_fit_batches=1, warmup_epochs=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, flla_table):
    return train_small_members(tmp_path_factory.mktemp("members"), flla_table, 30, (0, 1))


def test_small_sets_get_their_minimum_steps_in_repeated_passes():
    assert repeats_for(3000, batch_size=32, max_epochs=40, min_steps=100) == 1
    # 2 steps per pass, 40 epochs: 4 passes per epoch give 320 >= 300 steps (3 would give 240)
    assert repeats_for(50, batch_size=32, max_epochs=40, min_steps=300) == 4
    assert repeats_for(1, batch_size=32, max_epochs=1, min_steps=7) == 7


def test_interval_across_seeds_matches_student_t():
    out = _across_seeds([0.10, 0.12, 0.14])
    # mean 0.12, sample std 0.02, t(0.975, 2) = 4.302653
    half = 4.302653 * 0.02 / np.sqrt(3)
    assert out["mean"] == pytest.approx(0.12)
    assert out["ci95"] == pytest.approx([0.12 - half, 0.12 + half], rel=1e-5)
    assert _across_seeds([0.1])["ci95"] is None


def test_multi_domain_split_keeps_each_part_and_cuts_training_reproducibly():
    a = {"train": [f"a{i}" for i in range(10)], "val": ["av"], "test": ["at"]}
    b = {"train": [f"b{i}" for i in range(10)], "val": ["bv"], "test": ["bt"]}
    one = multi_domain_split({"a": a, "b": b}, train_limit={"a": 4, "b": None}, seed=3)
    two = multi_domain_split({"a": a, "b": b}, train_limit={"a": 4, "b": None}, seed=3)
    assert one == two
    assert sum(i.startswith("a") for i in one["train"]) == 4
    assert [i for i in one["train"] if i.startswith("b")] == b["train"]
    assert one["val"] == ["av", "bv"] and one["test"] == ["at", "bt"]


def test_concatenated_datasets_carry_their_source_as_domain(trained):
    data, _, _ = trained
    other = GraphDataset(**{**data.__dict__, "ids": [f"x{i}" for i in data.ids]})
    both = GraphDataset.concat([data, other])
    n = len(data)
    assert both.domain.tolist() == [0] * n + [1] * n
    a, b = both.collate([0]), both.collate([n])
    torch.testing.assert_close(a.pos, b.pos)
    assert a.domain.tolist() == [0] and b.domain.tolist() == [1]
    with pytest.raises(ValueError, match="more than one part"):
        GraphDataset.concat([data, data])


def test_domain_runs_are_trained_once_and_reported_from_their_files(tmp_path, trained):
    data, split, _ = trained
    runs = domain_runs(CFG, TC, split, variants=["baseline", "film"], seeds=[0, 1], emb_size=4)
    assert [r.name for r in runs] == ["domain_baseline_seed0", "domain_baseline_seed1",
                                      "domain_film_seed0", "domain_film_seed1"]  # fmt: skip
    first = train_runs(runs, data, tmp_path, device="cpu", only=["domain_baseline_*"])
    assert sorted(first) == ["domain_baseline_seed0", "domain_baseline_seed1"]
    stamp = (tmp_path / "domain_baseline_seed0.json").stat().st_mtime_ns
    train_runs(runs, data, tmp_path, device="cpu")  # the finished ones are skipped
    assert (tmp_path / "domain_baseline_seed0.json").stat().st_mtime_ns == stamp
    report = domain_report(tmp_path, variants=["baseline", "film"], seeds=[0, 1])
    for mode in ("baseline", "film"):
        maes = []
        for seed in (0, 1):
            frame = pd.read_parquet(tmp_path / f"domain_{mode}_seed{seed}.parquet")
            test = frame[frame["set"] == "test"]
            maes.append(float(np.mean(np.abs(test["y_pred"] - test["y_true"]))))
        assert report[mode]["mae_seeds"] == pytest.approx(dict(zip(["0", "1"], maes)))
        assert report[mode]["mae"] == pytest.approx(np.mean(maes))
    assert report["film"]["params"] > report["baseline"]["params"]
    # the GPU record of the same folder, with one run cut short
    states = study_run_states(tmp_path)
    assert all(s["finished"] for s in states.values()) and len(states) == 4
    (tmp_path / "domain_film_seed1.json").unlink()
    params = {"domain": {"variants": ["baseline", "film"], "seeds": [0, 1], "emb_size": 4,
                         "multi_domain": {"variants": ["baseline"], "seeds": [0]}},
              "gemnet": {k: v for k, v in CFG.to_dict().items()
                         if k not in ("cutoff", "max_neighbors")},
              "graph": {"cutoff_angstrom": 6.0, "max_neighbors": 8},
              "dataset": {"name": "flla"}}  # fmt: skip
    (tmp_path / "single").symlink_to(tmp_path, target_is_directory=True)
    record = domain_record(tmp_path, params)
    assert record["status"].startswith("PARTIAL") and "domain_film_seed1" in record["status"]
    assert record["variants"]["film"]["finished_seeds"] == [0]
    assert record["variants"]["film"]["mae"] == pytest.approx(report["film"]["mae_seeds"]["0"])
    assert record["variants"]["baseline"]["params"] == report["baseline"]["params"]
    assert record["multi_domain"]["status"].startswith("NOT RUN")  # nothing of it came back
    assert "cpu" in record["note"]  # the devices the runs name, not a fixed text


def test_fine_tuning_starts_from_the_member_and_the_report_adds_up(tmp_path, trained):
    data, split, members = trained
    runs = transfer_runs(members, CFG, TC, split, sizes=[6, 100], seed=0, min_steps=2)
    names = [r.name for r in runs]
    assert names == ["finetune_all_member0", "finetune_all_member1", "scratch_all",
                     "finetune_n6", "scratch_n6"]  # fmt: skip
    more = transfer_runs(members, CFG, TC, split, sizes=[], seed=7, min_steps=2, scratch_members=3)
    assert [(r.name, r.seed, r.init_from) for r in more if r.name.startswith("scratch")] == [
        ("scratch_all", 7, None),
        ("scratch_all_member1", 8, None),
        ("scratch_all_member2", 9, None),
    ]
    assert [r.seed for r in more if r.name.startswith("finetune")] == [7, 8]
    small = next(r for r in runs if r.name == "finetune_n6")
    assert len(set(small.split["train"])) == 6 and set(small.split["train"]) <= set(split["train"])
    assert len(small.split["train"]) == 6 * repeats_for(6, batch_size=8, max_epochs=1, min_steps=2)
    # a learning rate of zero: the run's model is the member it started from
    still = TrainConfig(max_epochs=1, lr=0.0, batch_size=8, warmup_epochs=0, scale_fit_batches=1)
    frozen = Run("frozen", CFG, still, 0, split, str(members[0]))
    train_runs([frozen], data, tmp_path / "frozen", device="cpu")
    tuned, _, _ = load_member(tmp_path / "frozen" / "frozen.pt")
    start, _, _ = load_member(members[0])
    for a, b in zip(tuned.state_dict().values(), start.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    train_runs(runs, data, tmp_path, device="cpu")
    atoms = dict(zip(data.ids, data.num_atoms().tolist(), strict=True))
    report = transfer_report(tmp_path, runs, atoms)
    tests = [pd.read_parquet(tmp_path / f"finetune_all_member{k}.parquet") for k in (0, 1)]
    tests = [t[t["set"] == "test"].set_index("id") for t in tests]
    mean = (tests[0]["y_pred"] + tests[1]["y_pred"]) / 2
    y = tests[0]["y_true"]
    n = y.index.map(atoms).to_numpy()
    assert report["fine_tuned"]["mae_ev_per_atom"] == pytest.approx(np.mean(np.abs(mean - y)))
    assert report["fine_tuned"]["mae_ev_per_cell"] == pytest.approx(np.mean(np.abs(mean - y) * n))
    assert [row["n_train"] for row in report["learning_curve"]] == [6, len(split["train"])]
    summary = json.loads((tmp_path / "finetune_n6.json").read_text())
    assert summary["n_train"] == 6 and summary["epochs_run"] == TC.max_epochs


def test_fine_tuning_refuses_weights_of_another_model(tmp_path, trained):
    data, split, members = trained
    import dataclasses

    wider = dataclasses.replace(CFG, emb_size_atom=32)
    with pytest.raises(ValueError, match="another configuration"):
        train_runs([Run("wide", wider, TC, 0, split, str(members[0]))], data, tmp_path)
