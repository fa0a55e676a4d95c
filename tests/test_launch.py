"""Training without DVC from a structure-tensor file (the GPU machine's path): a baseline."""

import json

import pandas as pd
import pytest

from tracer.cli import main
from tracer.config import load_params
from tracer.dataset import save_structure_tensors
from tracer.splits import split_sha256


def test_train_baseline_command_writes_model_and_predictions(tmp_path, flla_table, capsys):
    rows = flla_table.iloc[:20]
    ids = list(rows.id)
    structures = save_structure_tensors(
        tmp_path / "s.pt", ids, list(rows.structure), list(rows.target), "eV/atom"
    )
    split = {"train": ids[:12], "val": ids[12:16], "test": ids[16:]}
    split_path = tmp_path / "split.json"
    split_path.write_text(json.dumps({**split, "split_sha256": split_sha256(split)}))
    rc = main(["train-baseline", "--model", "cgcnn", "--structures", str(structures),
               "--split", str(split_path), "--params", "profiles/tiny.yaml",
               "--out", str(tmp_path / "run")])  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["best_epoch"] >= 0
    frame = pd.read_parquet(tmp_path / "run" / "cgcnn.parquet")
    assert list(frame.id) == split["val"] + split["test"]
    val = frame[frame.set == "val"]
    assert (val.y_pred - val.y_true).abs().mean() == pytest.approx(summary["best_val_mae"])
    tiny = load_params("profiles/tiny.yaml")["baselines"]
    assert (tmp_path / "run" / "cgcnn.pt").exists() and tiny["train"]["max_epochs"] == 2
