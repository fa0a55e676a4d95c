"""Cross-validation training on the CPU at toy size: out-of-fold predictions for every test id
of the folds run, and a second call skips the finished folds."""

import pandas as pd

from tracer.data.folds import group_kfold
from tracer.graphs.dataset import save_structure_tensors
from tracer.models.gemnet import GemNetTConfig
from tracer.pipeline.config import load_params
from tracer.pipeline.cv_launch import train_cv_members
from tracer.training.settings import TrainConfig


def test_folds_are_trained_predicted_and_not_redone(tmp_path, flla_table):
    table = flla_table.iloc[:60]
    structures = save_structure_tensors(tmp_path / "s.pt", list(table.id), list(table.structure),
                                        list(table.target), "eV/atom")  # fmt: skip
    runs = group_kfold(list(table.id), list(range(len(table))), k=3, seed=0)
    folds = {"k": 3, "folds": [{**r, "split_sha256": f"h{f}"} for f, r in enumerate(runs)]}
    params = load_params("profiles/tiny.yaml")
    settings = {
        "structures_path": structures, "folds": folds, "seeds": [0, 1],
        "model_config": GemNetTConfig.from_params(params["gemnet"], params["graph"]),
        "train_config": TrainConfig(**{**params["train"], "max_epochs": 1}),
        "out_dir": tmp_path / "cv", "parallel": 1,
    }  # fmt: skip
    report = train_cv_members(which=[0, 2], **settings)
    assert sorted(report["folds"]) == ["0", "2"]
    pred = pd.read_parquet(tmp_path / "cv" / "fold_2" / "predictions.parquet")
    assert set(pred.loc[pred["set"] == "test", "id"]) == set(runs[2]["test"])
    assert (pred["fold"] == 2).all() and {"member_0", "member_1", "mean", "std"} <= set(pred)
    again = train_cv_members(which=[0, 1, 2], **settings)  # only fold 1 is left
    assert sorted(again["folds"]) == ["1"]


def _threads(_: int) -> int:
    import torch

    return torch.get_num_threads()


def test_spawned_runs_share_the_cores_and_serial_runs_keep_them():
    import os

    import torch

    from tracer.pipeline.cv_launch import map_spawned

    share = max(1, (os.cpu_count() or 1) // 2)
    assert map_spawned(_threads, [0, 1, 2], parallel=2) == [share] * 3
    assert map_spawned(_threads, [0], parallel=2) == [torch.get_num_threads()]
