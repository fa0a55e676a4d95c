"""The file → stage index of the audit is read from dvc.lock (the verdicts themselves are tested
on a real tiny run in test_pipeline.py)."""

import yaml

from tracer.audit.default_run import figure_index, write_index


def test_index_names_the_stage_and_notebook_of_every_figure(tmp_path):
    lock = {"schema": "2.0", "stages": {
        "accuracy": {"cmd": "tracer run-notebook notebooks/20_accuracy.ipynb",
                     "outs": [{"path": "paper_figures/table1_accuracy.md"},
                              {"path": "metrics/accuracy.json"}]},
        "train@0": {"cmd": "tracer stage member 0",
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
