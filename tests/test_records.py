import json

import numpy as np
import pytest
import torch
from test_train import train_small_members

from tracer.ensemble import predict_members
from tracer.records import (
    half_precision_member,
    speed_models_for_profile,
    summaries_from_histories,
)


def test_half_precision_member_loads_and_predicts_close(tmp_path, flla_table):
    data, split, (full,) = train_small_members(tmp_path, flla_table, 24, (0,))
    half = half_precision_member(full, tmp_path / "half" / "member_0.pt")
    record = torch.load(half, weights_only=False)
    floats = [v for v in record["state_dict"].values() if v.is_floating_point() and v.dim()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    idx = np.arange(len(data))
    a = predict_members([full], data, idx, device="cpu")["mean"].to_numpy()
    b = predict_members([half], data, idx, device="cpu")["mean"].to_numpy()
    assert 0 < np.abs(a - b).max() < 0.05  # rounded, not identical, and close


def test_training_summaries_rebuilt_from_histories(tmp_path, flla_table):
    _, _, (member,) = train_small_members(tmp_path, flla_table, 24, (0,), epochs=2)
    history = torch.load(member, weights_only=False)["history"]
    (tmp_path / "history_0.json").write_text(json.dumps(history))
    shifted = [{**h, "val_mae": h["val_mae"] + (1.0 if h["epoch"] == 0 else 0.0)} for h in history]
    (tmp_path / "history_7.json").write_text(json.dumps(shifted))
    out = summaries_from_histories(tmp_path, wall_time_s=12.5, parallel=2)
    assert out["wall_time_s"] == 12.5 and out["parallel"] == 2
    summary = torch.load(member, weights_only=False)["summary"]
    rebuilt = out["members"]["0"]
    for key in ("best_epoch", "best_val_mae", "epochs_run", "device", "num_params"):
        assert rebuilt[key] == summary[key], key
    assert out["members"]["7"]["best_epoch"] == 1  # epoch 0 made worse: epoch 1 is the best
    with pytest.raises(FileNotFoundError, match="history"):
        summaries_from_histories(tmp_path / "nothing", wall_time_s=1.0, parallel=1)


def test_speed_record_keys_the_profile_timing_as_gemnet_t():
    def timing(nb, bs, prec, graphed, n_shapes):
        shapes = [{"atoms": i} for i in range(n_shapes)] if graphed else None
        settings = {"max_neighbors": nb, "batch_size": bs, "precision": prec}
        return {**settings, "cuda_graphs": graphed, "static_shapes": shapes, "s_per_epoch": nb / 10}

    raw = {
        "gemnet_t": timing(30, 32, "fp32", True, 4),
        "gemnet_t_eager": timing(30, 32, "fp32", False, 0),
        "gemnet_t_nb12_tf32": timing(12, 32, "tf32", True, 4),
        "alignn": {"batch_size": 64, "s_per_epoch": 1.5},
    }
    params = {
        "graph": {"max_neighbors": 12},
        "train": {"batch_size": 32, "precision": "tf32", "cuda_graphs": True, "shape_buckets": 4},
    }
    out = speed_models_for_profile(raw, params)
    assert out["gemnet_t"]["timed_as"] == "gemnet_t_nb12_tf32"
    assert out["gemnet_t"]["s_per_epoch"] == 1.2
    assert out["gemnet_t_nb30_b32_fp32_graphs4"]["timed_as"] == "gemnet_t"
    assert out["gemnet_t_nb30_b32_fp32_eager"]["timed_as"] == "gemnet_t_eager"
    assert out["alignn"] == raw["alignn"]
    params["train"]["shape_buckets"] = 8
    with pytest.raises(ValueError, match="profile's settings"):
        speed_models_for_profile(raw, params)
