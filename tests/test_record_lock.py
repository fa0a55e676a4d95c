"""records.lock.json: the committed records are current with the code and parameters that made
them, and a changed module, an edited record or a changed parameter is caught."""

import json
import subprocess

import yaml
from conftest import REPO

from tracer.pipeline.record_lock import build_lock, stale


def test_committed_records_are_current():
    problems = stale(REPO)
    assert not problems, "stale records (dvc repro, then tracer lock-records):\n" + "\n".join(
        problems[:20]
    )
    records = json.loads((REPO / "records.lock.json").read_text())["records"]
    assert "metrics/accuracy.json" in records and "paper_figures/CHECKLIST.json" in records
    # the code deps are layers (folders), hashed over their tracked files
    assert "tracer/analysis" in records["metrics/accuracy.json"]["code"]
    # a folder output's JSON files are records too (the run of record's analyses)
    assert records["metrics/run_of_record/uncertainty.json"]["stage"] == "run_of_record"


def _repo(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"epochs": 3}}))
    (tmp_path / "out.json").write_text('{"mae": 0.1}\n')
    (tmp_path / "data.bin").write_text("not in git")
    lock = {"stages": {"s": {"deps": [{"path": "code"}, {"path": "data.bin"}],
                             "params": {"params.yaml": {"train.epochs": 3}},
                             "outs": [{"path": "out.json"}]}}}  # fmt: skip
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "code", "params.yaml", "out.json", "dvc.lock"],
    ):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    return build_lock(tmp_path)


def test_changed_code_edited_record_and_changed_params_are_caught(tmp_path):
    lock = _repo(tmp_path)
    assert set(lock["records"]["out.json"]["code"]) == {"code"}  # untracked data left out
    assert stale(tmp_path, lock) == []
    (tmp_path / "code" / "a.py").write_text("x = 2\n")
    assert stale(tmp_path, lock) == ["out.json: code changed since stage s ran"]
    (tmp_path / "code" / "a.py").write_text("x = 1\n")
    (tmp_path / "out.json").write_text('{"mae": 0.05}\n')
    assert stale(tmp_path, lock) == ["out.json: edited since its stage (s) wrote it"]
    (tmp_path / "out.json").write_text('{"mae": 0.1}\n')
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"epochs": 4}}))
    assert stale(tmp_path, lock) == ["out.json: parameters of stage s changed"]
