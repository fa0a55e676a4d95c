"""Deep-ensemble prediction: every member's prediction, their mean and spread (eV/atom).

The ensemble's uncertainty is the standard deviation of the members' predictions
(``std``, population form, ddof = 0), as in the paper's deep ensemble of seeds. No pymatgen or
DVC here: members are read from their files, structures come as a :class:`GraphDataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tracer.graphs.dataset import GraphDataset
from tracer.models.gemnet import check_atomic_numbers, mean_and_variance
from tracer.training.checkpoints import load_member
from tracer.training.trainer import pick_device, predict_normalised


def member_seed(path: str | Path) -> int:
    """Seed of a member file named ``member_<seed>.pt``."""
    return int(Path(path).stem.split("_")[-1])


def predict_members(
    member_paths: Sequence[str | Path],
    data: GraphDataset,
    indices: np.ndarray,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> pd.DataFrame:
    """Predictions (eV/atom) of each member for the given structures.

    Returns a frame with one column ``member_<seed>`` per member (its training seed) plus
    ``mean`` and ``std``
    (ensemble spread, ddof = 0), rows in the order of ``indices``. Members with a variance head
    also give ``member_<seed>_var`` (their predicted variance, (eV/atom)²), and the frame then
    has ``aleatoric_var`` (the members' mean variance) and ``sigma_total`` (eV/atom), the deep
    ensemble's predictive standard deviation √(aleatoric_var + std²).
    """
    if not member_paths:
        raise ValueError("no ensemble members given")
    dev = pick_device(device)
    cols: dict[str, np.ndarray] = {}
    variances: dict[str, np.ndarray] = {}
    for path in member_paths:
        model, scaler, record = load_member(path, dev)
        check_atomic_numbers(data.z, model.config.num_elements)
        graph = record["graph"]
        if (graph["cutoff"], graph["max_neighbors"]) != (data.cutoff, data.max_neighbors):
            raise ValueError(
                f"{path}: trained on graphs {graph}, data has cutoff {data.cutoff} "
                f"/ max_neighbors {data.max_neighbors}"
            )
        out = torch.from_numpy(predict_normalised(model, data, indices, batch_size=batch_size,
                                                  device=dev))  # fmt: skip
        mean, var = mean_and_variance(out)
        name = f"member_{record['summary']['seed']}"
        cols[name] = scaler.inverse(mean.numpy())
        if var is not None:
            variances[f"{name}_var"] = var.numpy() * scaler.std**2
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if variances and len(variances) != len(cols):
        raise ValueError("an ensemble mixes members with and without a variance head")
    frame = pd.DataFrame(cols)
    values = frame.to_numpy()
    frame["mean"] = values.mean(axis=1)
    frame["std"] = values.std(axis=1, ddof=0)
    if variances:
        for name, var in variances.items():
            frame[name] = var
        frame["aleatoric_var"] = np.mean(list(variances.values()), axis=0)
        frame["sigma_total"] = np.sqrt(frame["aleatoric_var"] + frame["std"] ** 2)
    return frame


def ensemble_predictions(
    member_paths: Sequence[str | Path],
    data: GraphDataset,
    split: dict[str, Sequence[str]],
    *,
    sets: Sequence[str] = ("val", "test"),
    batch_size: int = 64,
    device: str = "auto",
) -> pd.DataFrame:
    """Ensemble predictions for the ids of the given split sets, with targets.

    Columns: ``id``, ``set``, ``y_true`` (eV/atom), ``member_<seed>``…, ``mean``, ``std``.
    """
    ids = [i for name in sets for i in split[name]]
    indices = data.index_of(ids)
    frame = predict_members(member_paths, data, indices, batch_size=batch_size, device=device)
    frame.insert(0, "y_true", data.target[torch.as_tensor(indices)].numpy())
    frame.insert(0, "set", [name for name in sets for _ in split[name]])
    frame.insert(0, "id", ids)
    return frame
