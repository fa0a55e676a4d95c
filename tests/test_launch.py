"""Training without DVC from a structure-tensor file (the GPU machine's path): a baseline."""

import json

import pandas as pd
import pytest

from tracer.cli import main
from tracer.data.splits import split_sha256
from tracer.graphs.dataset import save_structure_tensors
from tracer.pipeline.config import load_params


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


def test_study_command_trains_the_runs_it_is_given_and_caches_graphs(tmp_path, flla_table):
    """`tracer study` from tensor files: graphs built once and reused, `--only` restricts the
    runs, and the full command afterwards trains the rest and writes the report."""
    rows = flla_table.iloc[:40]
    ids = list(rows.id)
    main_file = save_structure_tensors(tmp_path / "s.pt", ids[:24], list(rows.structure[:24]),
                                       list(rows.target[:24]), "eV/atom")  # fmt: skip
    perov = tmp_path / "perov"
    p = [f"p{i}" for i in ids[24:]]
    save_structure_tensors(perov / "structures.pt", p, list(rows.structure[24:]),
                           list(rows.target[24:]), "eV/atom")  # fmt: skip
    (perov / "split.json").write_text(
        json.dumps({"train": p[:10], "val": p[10:13], "test": p[13:]})
    )
    split_path = tmp_path / "split.json"
    split_path.write_text(json.dumps({"train": ids[:16], "val": ids[16:20], "test": ids[20:24]}))
    args = ["study", "domain", "--structures", str(main_file), "--split", str(split_path),
            "--perovskites", str(perov), "--params", "profiles/tiny.yaml",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*args, "--only", "domain_film_*"]) == 0
    single = tmp_path / "out" / "domain" / "single"
    assert [p.name for p in single.glob("*.json")] == ["domain_film_seed0.json"]
    cached = sorted((tmp_path / "out" / "graphs").glob("*.pt"))
    assert len(cached) == 2
    stamps = [c.stat().st_mtime_ns for c in cached]
    assert main(args) == 0
    assert [c.stat().st_mtime_ns for c in cached] == stamps  # reused, not rebuilt
    report = json.loads((tmp_path / "out" / "domain.json").read_text())
    assert set(report["variants"]) == {"baseline", "domain_embedding", "film"}
    assert report["multi_domain"]["status"] == "RUN"
    assert set(report["multi_domain"]["variants"]["film"]["mae_by_domain"]) == {"0", "1"}
