"""The training stages' dvclive logs: the epoch is the step, a fresh run starts a fresh log and
a resumed run continues its own (the training itself is tested in test_train.py and end to end
through ``dvc repro`` on the tiny profile)."""

import json

import pandas as pd


def _logged_run(tmp_path, monkeypatch, epochs):
    """``train_logged`` with a stand-in trainer that reports ``epochs`` (as a fresh run from 0,
    or a resumed one from a later epoch) and leaves a checkpoint behind, as the trainer does."""
    import tracer.pipeline.train_stages as ts

    work = tmp_path / "work"

    def fake_train_member(*, work_dir, on_epoch_end, **_):
        work_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for epoch in epochs:
            row = {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_mae": 0.5,
                   "lr": 1e-3, "epoch_time_s": 0.1}  # fmt: skip
            rows.append(row)
            (work_dir / "last.pt").write_bytes(b"checkpoint")
            on_epoch_end(epoch, row)
        (work_dir / "history.json").write_text(json.dumps(rows))
        return {"epochs": len(rows)}

    monkeypatch.setattr(ts, "train_member", fake_train_member)
    live = tmp_path / "live"
    ts.train_logged(data=None, split={}, seed=0, model_config=None, train_config=None, work=work,
                  model_path=tmp_path / "m.pt", live_dir=live, device="cpu")  # fmt: skip
    table = pd.read_csv(live / "plots/metrics/val_mae.tsv", sep="\t")
    return table["step"].tolist()


def test_dvclive_steps_are_epochs_for_fresh_reruns_and_resumed_runs(tmp_path, monkeypatch):
    assert _logged_run(tmp_path, monkeypatch, [0, 1, 2]) == [0, 1, 2]
    # run again from scratch (a finished checkpoint is not resumed): a new log, not steps 3-5
    assert _logged_run(tmp_path, monkeypatch, [0, 1, 2]) == [0, 1, 2]
    # an interrupted run resumed at epoch 2 continues its log
    _logged_run(tmp_path, monkeypatch, [0, 1])
    assert _logged_run(tmp_path, monkeypatch, [2, 3]) == [0, 1, 2, 3]


def test_training_stage_dispatches_by_kind_and_refuses_others(monkeypatch):
    import pytest

    import tracer.pipeline.train_stages as ts

    calls = []
    monkeypatch.setattr(ts, "run_train_stage", lambda **kw: (calls.append(kw) or {"m": 1}, None))
    monkeypatch.setattr(ts, "run_baseline_stage", lambda **kw: (calls.append(kw) or {"b": 1}, None))
    params = {"dataset": {"name": "flla"}, "ensemble": {"device": "cpu"}, "gemnet": {"g": 1},
              "graph": {"c": 6}, "train": {"lr": 1}, "baselines": {"models": ["s"]}}  # fmt: skip
    assert ts.run_training_stage("member", "3", params) == {"m": 1}
    assert calls[-1]["seed"] == 3 and calls[-1]["gemnet"] == {"g": 1}
    assert ts.run_training_stage("baseline", "schnet", params) == {"b": 1}
    assert calls[-1]["kind"] == "schnet" and calls[-1]["params"] is params
    with pytest.raises(ValueError, match="one of graphs, dummy, member, baseline"):
        ts.run_training_stage("alignn", "x", params)
    with pytest.raises(ValueError, match="needs a name"):
        ts.run_training_stage("member", None, params)
    monkeypatch.setattr(ts, "run_graphs_stage", lambda **kw: {"graphs": kw})
    params["graph"] = {"cutoff_angstrom": 6.0, "max_neighbors": 12}
    got = ts.run_training_stage("graphs", None, params)["graphs"]
    assert (got["cutoff"], got["max_neighbors"], got["dataset_name"]) == (6.0, 12, "flla")
    frame = pd.DataFrame({"id": ["a", "b"], "y_pred": [-1.25, -1.25]})
    monkeypatch.setattr(ts, "run_dummy_stage", lambda **kw: frame)
    assert ts.run_training_stage("dummy", None, params) == {"n": 2, "y_pred_ev_per_atom": -1.25}
