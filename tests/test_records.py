import numpy as np
import torch
from test_train import CFG

from tracer.dataset import structures_to_graphs
from tracer.ensemble import predict_members
from tracer.records import half_precision_member
from tracer.train import TrainConfig, train_member
from tracer.validation import validate


def test_half_precision_member_loads_and_predicts_close(tmp_path, flla_table):
    clean = validate(flla_table.iloc[:24]).clean
    data = structures_to_graphs(
        list(clean.id), list(clean.structure), list(clean.target), cutoff=6.0, max_neighbors=8
    )
    ids = list(clean.id)
    split = {"train": ids[:16], "val": ids[16:20], "test": ids[20:]}
    full = tmp_path / "member_0.pt"
    train_member(
        data=data,
        split=split,
        seed=0,
        model_config=CFG,
        train_config=TrainConfig(max_epochs=1, batch_size=8, scale_fit_batches=1),
        work_dir=tmp_path / "w",
        member_path=full,
        device="cpu",
        progress=False,
    )
    half = half_precision_member(full, tmp_path / "half" / "member_0.pt")
    record = torch.load(half, weights_only=False)
    floats = [v for v in record["state_dict"].values() if v.is_floating_point() and v.dim()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    idx = np.arange(len(ids))
    a = predict_members([full], data, idx, device="cpu")["mean"].to_numpy()
    b = predict_members([half], data, idx, device="cpu")["mean"].to_numpy()
    assert 0 < np.abs(a - b).max() < 0.05  # rounded, not identical, and close
