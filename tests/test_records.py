import json

import numpy as np
import pytest
import torch
from test_train import train_small_members

from tracer.ensemble import predict_members
from tracer.records import half_precision_member, summaries_from_histories


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
