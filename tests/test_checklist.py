"""The file → stage index of the audit is read from dvc.lock (the verdicts themselves are tested
on a real tiny run in test_pipeline.py)."""

import re

import yaml

from tracer.audit.default_run import figure_index, write_index


def test_index_names_the_stage_and_notebook_of_every_figure(tmp_path):
    lock = {"schema": "2.0", "stages": {
        "accuracy": {"cmd": "tracer run-notebook notebooks/20_accuracy.ipynb",
                     "outs": [{"path": "paper_figures/accuracy"},
                              {"path": "metrics/accuracy.json"}]},
        "train@0": {"cmd": "tracer stage member 0",
                    "outs": [{"path": "models/flla/member_0.pt"}]},
        "run_of_record": {"cmd": "tracer run-notebook notebooks/30_run_of_record.ipynb",
                          "outs": [{"path": "paper_figures/run_of_record"},
                                   {"path": "metrics/run_of_record"}]},
    }}  # fmt: skip
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    table = figure_index(tmp_path).set_index("file")
    assert table.loc["paper_figures/accuracy", "stage"] == "accuracy"
    assert table.loc["metrics/run_of_record", "notebook"] == (
        "notebooks/30_run_of_record.ipynb"
    )
    assert "models/flla/member_0.pt" not in table.index  # not a figure or a record
    assert table.loc["paper_figures/INDEX.md", "stage"] == "checklist"
    (tmp_path / "paper_figures").mkdir()
    text = write_index(tmp_path, tmp_path / "paper_figures").read_text()
    assert re.search(r"\| paper_figures/accuracy +\| accuracy ", text)
