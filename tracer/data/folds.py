"""Group-aware k-fold cross-validation: every structure predicted once, by models that never saw
it or its StructureMatcher duplicates.

:func:`group_kfold` deals whole duplicate groups (:func:`tracer.data.splits.duplicate_groups`, the
split's groups) into ``k`` folds of near-equal size in a seeded order; fold ``f`` is the test
part of run ``f``, and from the other folds' groups a seeded inner validation part (about
``val_fraction`` of all structures) is drawn for early stopping and recalibration, the rest
being training. Each run is a split in the format of :func:`tracer.data.splits.save_split` (train,
val, test), so every trainer takes it as it takes the seed-42 split. The fold file keeps every
id, the seed, and a sha256 per run and for the whole (:func:`save_folds`, :func:`load_folds`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.data.splits import SET_NAMES, split_sha256


def group_kfold(
    ids: Sequence[str],
    groups: Sequence[int] | np.ndarray,
    *,
    k: int = 5,
    seed: int = 42,
    val_fraction: float = 0.1,
) -> list[dict[str, list[str]]]:
    """``k`` runs ``{"train", "val", "test"}`` (see the module docstring); ids keep the input
    order within each part, the test parts partition ``ids``, and no group spans two parts of a
    run."""
    ids = list(ids)
    groups = np.asarray(groups)
    if len(ids) != len(groups):
        raise ValueError("ids and groups differ in length")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    if k < 2:
        raise ValueError("k must be at least 2")
    rng = np.random.default_rng(seed)
    sizes = pd.Series(groups).value_counts()
    order = rng.permutation(np.unique(groups))
    fold_of: dict[int, int] = {}
    filled = np.zeros(k, dtype=np.int64)
    for g in order:  # each group to the emptiest fold (ties: the lowest number)
        f = int(np.argmin(filled))
        fold_of[int(g)] = f
        filled[f] += int(sizes[g])
    n_val = round(val_fraction * len(ids))
    runs = []
    for f in range(k):
        rest = [int(g) for g in rng.permutation(order) if fold_of[int(g)] != f]
        val_groups: set[int] = set()
        taken = 0
        for g in rest:
            if taken >= n_val:
                break
            val_groups.add(g)
            taken += int(sizes[g])
        run: dict[str, list[str]] = {name: [] for name in SET_NAMES}
        for rid, g in zip(ids, groups, strict=True):
            part = "test" if fold_of[int(g)] == f else ("val" if int(g) in val_groups else "train")
            run[part].append(rid)
        runs.append(run)
    return runs


def save_folds(
    path: str | Path,
    runs: Sequence[dict[str, list[str]]],
    *,
    dataset: str,
    dataset_sha256: str,
    table_sha256: str,
    seed: int,
    val_fraction: float,
    method: str = "group k-fold: StructureMatcher duplicate groups dealt to the emptiest fold in "
    "a seeded order; inner validation of whole groups drawn from the other folds",
) -> Path:
    """Write the fold file: every run's ids, their sha256s, the seed and the data's checksums."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folds = [{"fold": f, "sizes": {k: len(r[k]) for k in SET_NAMES},
              "split_sha256": split_sha256(r), **{k: list(r[k]) for k in SET_NAMES}}
             for f, r in enumerate(runs)]  # fmt: skip
    doc = {
        "dataset": dataset,
        "dataset_sha256": dataset_sha256,
        "table_sha256": table_sha256,
        "seed": seed,
        "k": len(runs),
        "val_fraction": val_fraction,
        "method": method,
        "cv_sha256": _folds_sha256(folds),
        "folds": folds,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def _folds_sha256(folds: Sequence[dict[str, Any]]) -> str:
    return hashlib.sha256("".join(f["split_sha256"] for f in folds).encode()).hexdigest()


def load_folds(path: str | Path) -> dict[str, Any]:
    """Read a fold file of :func:`save_folds`, verifying every run's id hash."""
    doc = json.loads(Path(path).read_text())
    for fold in doc["folds"]:
        if split_sha256(fold) != fold["split_sha256"]:
            raise ValueError(f"{path}: fold {fold['fold']}'s ids do not match its split_sha256")
    if _folds_sha256(doc["folds"]) != doc["cv_sha256"]:
        raise ValueError(f"{path}: folds do not match cv_sha256")
    return doc
