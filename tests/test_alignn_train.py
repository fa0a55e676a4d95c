"""ALIGNN baseline training (a small ALIGNN on CPU): recipes, file outputs, time to reach."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tracer.graphs.dataset import save_structure_tensors
from tracer.training.alignn import RECIPES, AlignnRecipe, run_alignn, time_to_reach

pytest.importorskip("alignn")
SMALL = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16}


def test_recipes_are_alignn_defaults_and_the_papers():
    from alignn.config import TrainingConfig

    d, p = RECIPES["defaults"], RECIPES["paper"]
    cfg = TrainingConfig()
    assert (d.cutoff, d.max_neighbors, d.lr, d.weight_decay, d.batch_size, d.epochs) == (
        cfg.cutoff, cfg.max_neighbors, cfg.learning_rate, cfg.weight_decay, cfg.batch_size,
        cfg.epochs,
    )  # fmt: skip
    assert (p.cutoff, p.lr, p.weight_decay, p.epochs) == (8.0, 1e-3, 1e-5, 300)
    # as the paper's authors retrained ALIGNN: 50 epochs, batch 16, lr 5e-4
    a = RECIPES["authors"]
    assert (a.epochs, a.batch_size, a.lr, a.cutoff, a.weight_decay) == (50, 16, 5e-4, 8.0, 1e-5)


def test_run_alignn_trains_chooses_on_validation_and_writes_predictions(tmp_path, flla_table):
    rows = flla_table.iloc[:20]
    ids, targets = list(rows.id), list(rows.target)
    path = save_structure_tensors(tmp_path / "s.pt", ids, list(rows.structure), targets, "eV/atom")
    split = {"train": ids[:12], "val": ids[12:16], "test": ids[16:]}
    recipe = AlignnRecipe("smoke", batch_size=4, lr=1e-3)
    seen = []
    summary = run_alignn(path, split, recipe, tmp_path / "out", device="cpu", epochs=3,
                         on_epoch_end=lambda e, row: seen.append(e), **SMALL)  # fmt: skip
    assert seen == [0, 1, 2]
    hist = summary["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert summary["best_val_mae"] == min(h["val_mae"] for h in hist)
    assert all(b["wall_time_s"] > a["wall_time_s"] for a, b in itertools.pairwise(hist))
    frame = pd.read_parquet(tmp_path / "out" / "alignn_smoke.parquet")
    assert list(frame.id) == split["val"] + split["test"]
    assert np.allclose(frame.y_true, targets[12:])
    val = frame[frame.set == "val"]
    assert np.abs(val.y_pred - val.y_true).mean() == pytest.approx(summary["best_val_mae"])
    saved = torch.load(tmp_path / "out" / "alignn_smoke.pt", weights_only=False)
    assert saved["kind"] == "alignn" and saved["state_dict"]
    assert json.loads((tmp_path / "out" / "alignn_smoke.json").read_text())["recipe"]["lr"] == 1e-3
    with pytest.raises(KeyError, match="split ids"):
        run_alignn(path, {**split, "test": ["nope"]}, recipe, tmp_path / "x", epochs=1, **SMALL)


def test_time_to_reach():
    hist = [{"val_mae": 0.3, "wall_time_s": 1.0}, {"val_mae": 0.1, "wall_time_s": 2.5}]
    assert time_to_reach(hist, 0.2) == 2.5
    assert time_to_reach(hist, 0.3) == 1.0
    assert time_to_reach(hist, 0.05) is None


def test_killed_run_resumes_to_the_same_result(tmp_path, flla_table):
    from tracer.graphs.dataset import structure_tensors
    from tracer.training.alignn import alignn_graphs, train_alignn

    rows = flla_table.iloc[:12]
    recipe = AlignnRecipe("smoke", batch_size=4, lr=1e-3)
    arrays = [structure_tensors(s) for s in rows.structure]
    graphs = alignn_graphs(arrays, recipe)
    cells = torch.stack([a[2] for a in arrays])
    split_idx = {"train": np.arange(8), "val": np.arange(8, 10), "test": np.arange(10, 12)}
    args = (graphs, cells, np.asarray(rows.target), split_idx, recipe)
    whole = train_alignn(*args, epochs=3, **SMALL)

    class KilledError(Exception):
        pass

    def kill_after_first(epoch, _row):
        if epoch == 0:
            raise KilledError

    ckpt = tmp_path / "last.pt"
    with pytest.raises(KilledError):
        train_alignn(*args, epochs=3, resume_path=ckpt, on_epoch_end=kill_after_first, **SMALL)
    resumed = train_alignn(*args, epochs=3, resume_path=ckpt, **SMALL)
    assert [h["val_mae"] for h in resumed["history"]] == [h["val_mae"] for h in whole["history"]]
    for k, v in whole["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    np.testing.assert_array_equal(resumed["predictions"]["test"], whole["predictions"]["test"])


def test_graphs_cache_is_built_once_read_after_and_refuses_other_cutoffs(tmp_path, flla_table,
                                                                          monkeypatch):  # fmt: skip
    import tracer.training.alignn as at
    from tracer.graphs.dataset import load_structure_tensors
    from tracer.training.alignn import cached_alignn_graphs

    rows = flla_table.iloc[:6]
    path = save_structure_tensors(tmp_path / "s.pt", list(rows.id), list(rows.structure),
                                  list(rows.target), "eV/atom")  # fmt: skip
    payload = load_structure_tensors(path)
    recipe = RECIPES["authors"]
    built = cached_alignn_graphs(payload, recipe, tmp_path / "g.pkl")
    assert len(built) == 6 and (tmp_path / "g.pkl").exists()
    monkeypatch.setattr(at, "alignn_graphs", lambda *a, **k: pytest.fail("rebuilt"))
    again = cached_alignn_graphs(payload, recipe, tmp_path / "g.pkl")
    assert all(torch.equal(a.edata["r"], b.edata["r"]) for (a, _), (b, _) in zip(again, built))
    with pytest.raises(ValueError, match="other cutoffs"):
        cached_alignn_graphs(payload, RECIPES["defaults"], tmp_path / "g.pkl")
