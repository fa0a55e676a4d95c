"""Four databases pooled, each a domain: where the domain module is meant to help.

The paper tested its domain module on one database, where it has nothing to separate. Here the
sources disagree: FLLA (Materials Project, 2015) and the Materials Project, OQMD and CMR
perovskites of the 31k table (:mod:`tracer.data.perovskites`) use different codes, settings and
reference energies. :func:`pooled_table` puts their validated records into one table with
targets in eV/atom (CMR's per-cell heats of formation divided by the cell's atoms) and the
database as ``domain`` (:data:`DATABASES`, in that order).

The same crystal can sit in several databases. :func:`cross_database_matches` finds such pairs
with pymatgen's :class:`~pymatgen.analysis.structure_matcher.StructureMatcher` (its default
tolerances, volumes scaled, since codes relax to different lattice constants) among structures of
one reduced formula from different databases; their target differences are what a per-database
offset should learn. :func:`pooled_split` cuts train/validation/test within each database and
keeps every group of matched structures on one side, so no test crystal is trained on under
another database's name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher

from tracer.data.perovskites import target_ev_per_atom

DATABASES = ("FLLA", "MP", "OQMD", "CMR")
"""The pooled sources in domain order: FLLA (Materials Project, 2015), then the perovskite
table's databases."""


def pooled_table(flla: pd.DataFrame, perovskites: pd.DataFrame) -> pd.DataFrame:
    """One table of validated records: ``id``, ``structure``, ``target`` (eV/atom),
    ``database`` (one of :data:`DATABASES`), ``domain`` (its index), ``reduced_formula`` and
    ``n_atoms``. ``flla``: the FLLA table (eV/atom); ``perovskites``: the clean records of
    :func:`tracer.data.perovskites.validate_perovskites` (with ``database``)."""
    if (flla["target_unit"] != "eV/atom").any():
        raise ValueError("FLLA targets must be in eV/atom")
    unknown = sorted(set(perovskites["database"]) - set(DATABASES[1:]))
    if unknown:
        raise ValueError(f"unknown perovskite databases {unknown} (known: {DATABASES[1:]})")
    parts = [flla.assign(database="FLLA", target=flla["target"].to_numpy(float)),
             perovskites.assign(target=target_ev_per_atom(perovskites))]  # fmt: skip
    frame = pd.concat([p[["id", "structure", "target", "database"]] for p in parts],
                      ignore_index=True)  # fmt: skip
    if frame["id"].duplicated().any():
        raise ValueError(f"ids repeat across sources: {frame['id'][frame['id'].duplicated()][:3]}")
    frame["domain"] = frame["database"].map({d: k for k, d in enumerate(DATABASES)})
    frame["reduced_formula"] = [s.composition.reduced_formula for s in frame["structure"]]
    frame["n_atoms"] = [len(s) for s in frame["structure"]]
    return frame


def cross_database_matches(
    frame: pd.DataFrame, *, matcher: StructureMatcher | None = None
) -> pd.DataFrame:
    """Pairs of structures from different databases that ``matcher`` (default:
    ``StructureMatcher()``, pymatgen's default tolerances, volumes scaled) calls the same
    crystal, compared within each reduced formula: ``id_a``, ``database_a``, ``target_a``,
    ``id_b``, ``database_b``, ``target_b`` (eV/atom), with ``a`` the earlier database of
    :data:`DATABASES`."""
    matcher = matcher or StructureMatcher()
    order = {d: k for k, d in enumerate(DATABASES)}
    rows = []
    for _, group in frame.groupby("reduced_formula", sort=True):
        if group["database"].nunique() < 2:
            continue
        recs = sorted(group.itertuples(index=False), key=lambda r: (order[r.database], r.id))
        for i, a in enumerate(recs):
            for b in recs[i + 1 :]:
                if a.database != b.database and matcher.fit(a.structure, b.structure):
                    rows.append({"id_a": a.id, "database_a": a.database, "target_a": a.target,
                                 "id_b": b.id, "database_b": b.database,
                                 "target_b": b.target})  # fmt: skip
    columns = ["id_a", "database_a", "target_a", "id_b", "database_b", "target_b"]
    return pd.DataFrame(rows, columns=columns)


def match_groups(ids: Sequence[str], matches: pd.DataFrame) -> dict[str, str]:
    """Each id's group: the first id (in ``ids`` order) of the set of structures joined by
    ``matches`` (connected components; an unmatched id is its own group)."""
    parent = {i: i for i in ids}

    def root(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rank = {i: k for k, i in enumerate(ids)}
    for a, b in zip(matches["id_a"], matches["id_b"], strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            keep, drop = (ra, rb) if rank[ra] < rank[rb] else (rb, ra)
            parent[drop] = keep
    return {i: root(i) for i in ids}


def pooled_split(
    frame: pd.DataFrame,
    matches: pd.DataFrame,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, Any]:
    """Train/validation/test ids with every group of matched structures (:func:`match_groups`)
    on one side: each group draws one uniform number (seeded, groups in table order) and goes
    to test below ``test_fraction``, to validation below ``test_fraction + val_fraction``, else
    to training. Each database's fractions hold in expectation. Returns the split with
    ``sizes`` per database and part and the number of matched groups."""
    ids = list(frame["id"])
    group = match_groups(ids, matches)
    heads = list(dict.fromkeys(group[i] for i in ids))
    draw = dict(zip(heads, np.random.default_rng(seed).random(len(heads)), strict=True))

    def part(i: str) -> str:
        u = draw[group[i]]
        return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction \
            else "train"  # fmt: skip

    split: dict[str, Any] = {"train": [], "val": [], "test": []}
    for i in ids:
        split[part(i)].append(i)
    db = dict(zip(frame["id"], frame["database"], strict=True))
    split["databases"] = list(DATABASES)
    split["sizes"] = {d: {p: sum(db[i] == d for i in split[p]) for p in ("train", "val", "test")}
                      for d in DATABASES}  # fmt: skip
    split["matched_groups"] = sum(1 for n in Counter(group.values()).values() if n > 1)
    return split
