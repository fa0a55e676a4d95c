"""The file → stage index of the audit is read from dvc.lock (the verdicts themselves are tested
on a real tiny run in test_pipeline.py)."""

import json

import yaml

from tracer.checklist import figure_index, write_index


def test_index_names_the_stage_and_notebook_of_every_figure(tmp_path):
    lock = {"schema": "2.0", "stages": {
        "accuracy": {"cmd": "tracer run-notebook notebooks/20_accuracy.ipynb",
                     "outs": [{"path": "paper_figures/table1_accuracy.md"},
                              {"path": "metrics/accuracy.json"}]},
        "train@0": {"cmd": "tracer run-notebook notebooks/05_train_member.ipynb -p member_seed 0",
                    "outs": [{"path": "models/flla/member_0.pt"}]},
        "gpu_results": {"cmd": "tracer run-notebook notebooks/30_gpu_results.ipynb",
                        "outs": [{"path": "results/gpu/parity_schnet.png"}]},
    }}  # fmt: skip
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    table = figure_index(tmp_path).set_index("file")
    assert table.loc["paper_figures/table1_accuracy.md", "stage"] == "accuracy"
    assert table.loc["results/gpu/parity_schnet.png", "notebook"] == (
        "notebooks/30_gpu_results.ipynb"
    )
    assert "models/flla/member_0.pt" not in table.index  # not a figure or a gpu result
    assert table.loc["paper_figures/INDEX.md", "stage"] == "checklist"
    (tmp_path / "paper_figures").mkdir()
    text = write_index(tmp_path, tmp_path / "paper_figures").read_text()
    assert "| paper_figures/table1_accuracy.md | accuracy" in text


def _speed_rows(tmp_path, members_card):
    from tracer.checklist import Records, claim_trains_faster

    times = {"alignn": 430.0, "gemnet_t": 125.0, "gemnet_t_members_device": members_card}
    speed = {"device": "NVIDIA H100", "epoch_time_ratio_gemnet_over_alignn": 0.25,
             "time_to_alignn_best_val_s": times}  # fmt: skip
    (tmp_path / "results/gpu").mkdir(parents=True, exist_ok=True)
    (tmp_path / "results/gpu/speed.json").write_text(json.dumps(speed))
    return claim_trains_faster(Records(tmp_path, "flla"))


def test_speed_claim_names_the_members_card_when_it_is_not_the_timed_one(tmp_path):
    (row,) = _speed_rows(tmp_path, "NVIDIA H200")
    expected = "after 125 s of training (ALIGNN: 430 s); members trained on NVIDIA H200"
    assert expected in row.our_value
    assert row.verdict == "PASS"
    (row,) = _speed_rows(tmp_path, "NVIDIA H100")
    assert "members trained on" not in row.our_value
