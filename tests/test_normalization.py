import numpy as np
import pytest

from tracer.training.normalization import TargetScaler


def test_statistics_come_from_training_ids_only():
    targets = {"a": 1.0, "b": 3.0, "c": 100.0}
    s = TargetScaler.fit(targets, ["a", "b"])
    assert (s.mean, s.std, s.n_train) == (2.0, 1.0, 2)
    targets["c"] = -1e6  # changing a non-training target changes nothing
    assert TargetScaler.fit(targets, ["a", "b"]) == s
    z = s.transform(np.array([1.0, 3.0]))
    assert np.allclose(z, [-1, 1]) and np.allclose(s.inverse(z), [1, 3])


def test_degenerate_training_targets():
    with pytest.raises(ValueError):
        TargetScaler.fit({"a": 1.0, "b": 1.0}, ["a", "b"])
    with pytest.raises(ValueError):
        TargetScaler.fit({"a": 1.0}, [])
