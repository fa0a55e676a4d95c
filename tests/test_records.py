import numpy as np
import torch
from test_train import train_small_members

from tracer.ensemble import predict_members
from tracer.records import half_precision_member


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
