"""Target normalisation with statistics from the training set only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TargetScaler:
    """Standardises targets: ``z = (y - mean) / std`` (mean and std in the target's unit)."""

    mean: float
    std: float
    n_train: int

    @classmethod
    def fit(cls, targets_by_id: Mapping[str, float], train_ids: Sequence[str]) -> TargetScaler:
        """Fit on the training ids only; any other id in ``targets_by_id`` is ignored."""
        if not train_ids:
            raise ValueError("no training ids to fit the target statistics on")
        y = np.array([targets_by_id[i] for i in train_ids], dtype=float)
        std = float(y.std())
        if not np.isfinite(std) or std <= 0.0:
            raise ValueError(f"training targets have non-positive spread (std={std})")
        return cls(mean=float(y.mean()), std=std, n_train=int(y.size))

    def transform(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=float) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=float) * self.std + self.mean

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)
