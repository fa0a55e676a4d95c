import numpy as np
import pytest

from tracer.models.dummy import MeanPredictor


def test_mean_predictor():
    m = MeanPredictor().fit([1.0, 2.0, 6.0])
    assert np.array_equal(m.predict(2), [3.0, 3.0])
    with pytest.raises(RuntimeError):
        MeanPredictor().predict(1)
    with pytest.raises(ValueError):
        MeanPredictor().fit([1.0, np.nan])
