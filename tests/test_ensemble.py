import numpy as np
import pytest
from test_train import train_small_members

from tracer.inference.ensemble import ensemble_predictions, member_seed


def test_ensemble_frame(tmp_path, flla_table):
    data, split, paths = train_small_members(tmp_path, flla_table, 30, (0, 7))
    frame = ensemble_predictions(paths, data, split)
    assert list(frame.columns) == ["id", "set", "y_true", "member_0", "member_7", "mean", "std"]
    assert list(frame.id) == split["val"] + split["test"]
    assert list(frame.set) == ["val"] * len(split["val"]) + ["test"] * len(split["test"])
    m = frame[["member_0", "member_7"]].to_numpy()
    assert np.allclose(frame["mean"], m.mean(1)) and np.allclose(frame["std"], m.std(1))
    assert (frame["std"] > 0).all()
    assert member_seed(paths[1]) == 7
    with pytest.raises(ValueError):
        ensemble_predictions([], data, split)
