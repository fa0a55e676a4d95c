"""The training-mean dummy: predicts the mean training target for every structure.

Matbench's "Dummy" baseline; the floor any learned model must clear.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MeanPredictor:
    """Predicts the training-set mean of the target (unit of the training targets)."""

    def __init__(self) -> None:
        self.mean_: float | None = None

    def fit(self, y_train: Sequence[float] | np.ndarray) -> MeanPredictor:
        y = np.asarray(y_train, dtype=float)
        if y.size == 0 or not np.all(np.isfinite(y)):
            raise ValueError("training targets must be a non-empty array of finite numbers")
        self.mean_ = float(y.mean())
        return self

    def predict(self, n: int) -> np.ndarray:
        """Predictions for ``n`` structures."""
        if self.mean_ is None:
            raise RuntimeError("call fit() first")
        return np.full(int(n), self.mean_, dtype=float)

    def __repr__(self) -> str:
        return f"MeanPredictor(mean={self.mean_})"
