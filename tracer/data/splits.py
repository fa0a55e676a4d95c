"""Deterministic, leak-free train/validation/test splits.

The split is random by seed (80/10/10 and seed 42, as in the paper) over *groups* of records:
records with the same reduced formula whose structures pymatgen's :class:`StructureMatcher`
finds equivalent form one group and always land in the same set, so no crystal can be seen in
training and scored in test under two ids. :func:`leak_report` checks a finished split
independently (ids disjoint; no StructureMatcher-equivalent pair across sets).

Set sizes follow the paper's arithmetic: ``n_train = floor(0.8 n)``, ``n_val = floor(0.1 n)``,
test gets the rest (36,029 → 28,823 / 3,602 / 3,604).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pymatgen is imported lazily: loading a split must work without it
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

SET_NAMES = ("train", "val", "test")


class SplitLeakError(RuntimeError):
    """A split puts the same id or an equivalent structure into two sets."""


def _matcher() -> StructureMatcher:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()  # pymatgen defaults: ltol 0.2, stol 0.3, angle_tol 5°


def duplicate_groups(
    reduced_formulas: Sequence[str], structures: Sequence[Structure]
) -> np.ndarray:
    """Label records so that equivalent crystals share a label.

    Two records are equivalent when their reduced formulas are equal and pymatgen's
    :class:`StructureMatcher` (default tolerances) matches their structures.

    Returns:
        ``int64`` array of group labels, one per record, numbered in order of first appearance.
    """
    by_formula: dict[str, list[int]] = defaultdict(list)
    for i, formula in enumerate(reduced_formulas):
        by_formula[formula].append(i)
    labels = np.full(len(structures), -1, dtype=np.int64)
    matcher = _matcher()
    next_label = 0
    for members in by_formula.values():
        if len(members) == 1:
            clusters = [members]
        else:
            index_of = {id(structures[i]): i for i in members}
            grouped = matcher.group_structures([structures[i] for i in members])
            clusters = [[index_of[id(s)] for s in g] for g in grouped]
        for cluster in clusters:
            labels[cluster] = next_label
            next_label += 1
    # Renumber by first appearance so labels do not depend on dict iteration details.
    _, first = np.unique(labels, return_index=True)
    order = {old: new for new, old in enumerate(labels[np.sort(first)])}
    return np.array([order[x] for x in labels], dtype=np.int64)


def set_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Target sizes (train, val, test): floors of the first two fractions, test takes the rest."""
    if len(fractions) != 3 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be three numbers summing to 1, got {fractions}")
    n_train = math.floor(fractions[0] * n)
    n_val = math.floor(fractions[1] * n)
    return n_train, n_val, n - n_train - n_val


def random_group_split(
    ids: Sequence[str],
    groups: Sequence[int] | np.ndarray,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 42,
) -> dict[str, list[str]]:
    """Randomly assign whole groups to train/val/test by seed.

    Groups are visited in a seeded random order and fill train, then val, then test; with
    one-record groups the sizes are exactly :func:`set_sizes`. Ids within a set keep the input
    order.
    """
    ids = list(ids)
    groups = np.asarray(groups)
    if len(ids) != len(groups):
        raise ValueError("ids and groups differ in length")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique before splitting")
    n_train, n_val, _ = set_sizes(len(ids), fractions)
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    sizes = pd.Series(groups).value_counts()
    assignment: dict[int, str] = {}
    filled = 0
    for g in order:
        if filled < n_train:
            assignment[int(g)] = "train"
        elif filled < n_train + n_val:
            assignment[int(g)] = "val"
        else:
            assignment[int(g)] = "test"
        filled += int(sizes[g])
    out: dict[str, list[str]] = {name: [] for name in SET_NAMES}
    for rid, g in zip(ids, groups, strict=True):
        out[assignment[int(g)]].append(rid)
    return out


def leak_report(split: dict[str, list[str]], table: pd.DataFrame) -> dict[str, Any]:
    """Check a split independently of how it was made.

    Args:
        split: set name → ids.
        table: canonical table with ``id``, ``reduced_formula`` and ``structure``.

    Returns:
        ``{"id_overlaps": {...}, "structure_overlaps": [...], "n_pairs_compared": int,
        "leak_free": bool}``; ``structure_overlaps`` lists ``(set_a, id_a, set_b, id_b)`` for
        StructureMatcher-equivalent pairs with equal reduced formula across two sets.
    """
    id_overlaps = {
        f"{a}&{b}": sorted(set(split[a]) & set(split[b])) for a, b in combinations(SET_NAMES, 2)
    }
    by_id = table.set_index("id")
    matcher = _matcher()
    overlaps: list[tuple[str, str, str, str]] = []
    n_compared = 0
    per_set: dict[str, dict[str, list[str]]] = {}
    for name in SET_NAMES:
        formulas = by_id.loc[split[name], "reduced_formula"]
        d: dict[str, list[str]] = defaultdict(list)
        for rid, f in formulas.items():
            d[f].append(rid)
        per_set[name] = d
    for a, b in combinations(SET_NAMES, 2):
        for formula in per_set[a].keys() & per_set[b].keys():
            for ia in per_set[a][formula]:
                sa = by_id.at[ia, "structure"]
                for ib in per_set[b][formula]:
                    n_compared += 1
                    if matcher.fit(sa, by_id.at[ib, "structure"]):
                        overlaps.append((a, ia, b, ib))
    return {
        "id_overlaps": {k: v for k, v in id_overlaps.items() if v},
        "structure_overlaps": overlaps,
        "n_pairs_compared": n_compared,
        "leak_free": not any(id_overlaps.values()) and not overlaps,
    }


def assert_leak_free(report: dict[str, Any]) -> None:
    """Raise :class:`SplitLeakError` naming the offending ids when a split leaks."""
    if report["leak_free"]:
        return
    parts = [f"ids in {k}: {v[:10]}" for k, v in report["id_overlaps"].items()]
    parts += [f"{a}:{ia} ≡ {b}:{ib}" for a, ia, b, ib in report["structure_overlaps"][:10]]
    raise SplitLeakError("split leaks between sets: " + "; ".join(parts))


def split_sha256(split: dict[str, list[str]]) -> str:
    """Hash of the id lists (order-sensitive), identifying a split in provenance records."""
    payload = json.dumps({k: split[k] for k in SET_NAMES}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def save_split(
    path: str | Path,
    split: dict[str, list[str]],
    *,
    dataset: str,
    dataset_sha256: str,
    table_sha256: str,
    seed: int,
    fractions: Sequence[float],
    method: str,
    leak: dict[str, Any],
) -> Path:
    """Write the split JSON: every id per set, seed, fractions and the data's checksums."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "dataset": dataset,
        "dataset_sha256": dataset_sha256,
        "table_sha256": table_sha256,
        "seed": seed,
        "fractions": list(fractions),
        "method": method,
        "sizes": {k: len(split[k]) for k in SET_NAMES},
        "split_sha256": split_sha256(split),
        "leak_check": {
            "leak_free": leak["leak_free"],
            "n_pairs_compared": leak["n_pairs_compared"],
            "id_overlaps": leak["id_overlaps"],
            "structure_overlaps": [list(x) for x in leak["structure_overlaps"]],
        },
        **{k: list(split[k]) for k in SET_NAMES},
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def load_split(path: str | Path) -> dict[str, Any]:
    """Read a split JSON written by :func:`save_split` and verify its id hash."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"split file not found: {path} (run the split stage first)")
    doc = json.loads(path.read_text())
    if split_sha256(doc) != doc["split_sha256"]:
        raise ValueError(f"{path}: id lists do not match the recorded split_sha256")
    return doc
