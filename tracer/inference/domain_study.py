"""Fitting and measuring the shipped ensemble's applicability domain, and the σ study.

:func:`run_domain_study` takes the members, the table of their dataset and its split, and:

1. predicts every structure with every member, keeping the final atom embeddings
   (:meth:`tracer.inference.predict.Ensemble.predict_arrays`) and the geometric descriptors;
2. fits the domain on the training structures, its representation threshold on validation
   (:func:`tracer.inference.applicability.fit_domain`);
3. measures on the test split: the fraction flagged, the MAE of flagged vs unflagged structures
   (eV/atom), and which checks fired; and on made-up shifted copies of the test structures
   (:data:`SHIFTS`, magnitudes fixed here before any measurement) the fraction flagged per kind;
4. the σ study: the paper's ensemble σ beside σ combined with the representation distance
   (``σ_z + w · d_z``, both standardised on validation, ``w`` from :data:`SIGMA_WEIGHTS` chosen by
   validation AUROC for the worst 10%), each scored on test by Spearman, AUROC and the triage
   yield at the paper's budget fractions.

The record says whether the fit is accepted (:func:`accepts`: every kind of shifted validation
copy flagged at least :func:`min_detection_to_accept`; ``tracer fit-domain`` refuses it
otherwise). It goes to ``ood.json`` and the fitted domain to ``applicability.pt``, both beside
the members (keys of the record: docs/METRICS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from tracer.graphs.dataset import structure_tensors
from tracer.inference.applicability import (
    GEOMETRY,
    fit_domain,
    flagged_fraction,
    geometry_of,
    knn_distance,
)
from tracer.inference.thresholds import DESIGNS, MAX_VAL_FLAGGED

#: made-up shifted inputs, magnitudes fixed before measuring (what a chemist would call clearly
#: outside relaxed Materials Project crystals)
SHIFTS = {
    "strained": "lattice scaled isotropically by 1.10 (bonds 10% longer)",
    "compressed": "lattice scaled isotropically by 0.90 (bonds 10% shorter)",
    "rattled": "every atom displaced by Gaussian noise of 0.2 Å per coordinate",
    "vacuum": "15 Å of vacuum inserted along the third lattice vector (a slab)",
    "cluster": "one atom and its neighbours within 1.3 × covalent radii, alone in a 20 Å box",
    "absent_element": "one element replaced by an element no training structure holds",
}
SIGMA_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
MIN_DETECTION = 0.90
"""The share of each kind of shifted input a domain should flag (the goal it is judged by)."""


def min_detection_to_accept(n_val: int, goal: float = MIN_DETECTION) -> float:
    """The share of each kind of shifted validation copy an accepted fit must flag: ``goal``
    plus two binomial standard errors at ``goal`` over ``n_val`` validation structures (0.930
    for 394), so that an accepted fit is expected to clear ``goal`` on new structures despite
    the noise of its validation estimate (docs/screening.md § Refusing a weak fit)."""
    if n_val <= 0:
        raise ValueError(f"a domain is accepted on validation copies; got n_val={n_val}")
    return goal + 2.0 * math.sqrt(goal * (1.0 - goal) / n_val)


def weak_kinds(record: dict[str, Any], minimum: float | None = None) -> dict[str, float]:
    """The kinds of shifted *validation* copies that a domain's record (``ood.json``) flags
    less often than ``minimum`` (default :func:`min_detection_to_accept` of its ``n_val``), with
    their share: visible before any test figure, so a fit can be refused without looking at
    test."""
    if minimum is None:
        minimum = min_detection_to_accept(record["n_val"])
    return {kind: s["flagged_fraction_val"] for kind, s in record["shift_detection"].items()
            if s["flagged_fraction_val"] < minimum}  # fmt: skip


def accepts(record: dict[str, Any]) -> bool:
    """Whether a fit is accepted: no :func:`weak_kinds` (validation only)."""
    return not weak_kinds(record)


def shifted(structure: Any, kind: str, rng: np.random.Generator, absent: int) -> Any:
    """A shifted copy of a pymatgen structure (``kind`` in :data:`SHIFTS`; ``absent``: atomic
    number of an element absent from training)."""
    from ase.data import covalent_radii
    from pymatgen.core import Element, Lattice, Structure

    s = structure.copy()
    if kind in ("strained", "compressed"):
        s.scale_lattice(s.volume * (1.10 if kind == "strained" else 0.90) ** 3)
        return s
    if kind == "rattled":
        return Structure(s.lattice, s.species, s.cart_coords + rng.normal(0, 0.2, (len(s), 3)),
                         coords_are_cartesian=True)  # fmt: skip
    if kind == "vacuum":
        m = s.lattice.matrix.copy()
        c = m[2] / np.linalg.norm(m[2])
        m[2] = m[2] + 15.0 * c
        return Structure(Lattice(m), s.species, s.cart_coords, coords_are_cartesian=True)
    if kind == "cluster":
        centre = int(rng.integers(len(s)))
        z0 = s[centre].specie.Z
        near = [
            n
            for n in s.get_neighbors(s[centre], 4.0)
            if n.nn_distance <= 1.3 * (covalent_radii[z0] + covalent_radii[n.specie.Z])
        ]
        if not near:  # nothing bonded within the radii: the nearest atom
            near = [min(s.get_neighbors(s[centre], 6.0), key=lambda n: n.nn_distance)]
        coords = np.array([s[centre].coords] + [n.coords for n in near])
        species = [s[centre].specie] + [n.specie for n in near]
        box = Lattice.cubic(20.0)
        return Structure(box, species, coords - coords.mean(0) + 10.0, coords_are_cartesian=True)
    if kind == "absent_element":
        target = s.composition.elements[int(rng.integers(len(s.composition.elements)))]
        s.replace_species({target: Element.from_Z(absent)})
        return s
    raise ValueError(f"unknown shift {kind!r}")


def check_name(reason: str) -> str:
    """The check a reason of :meth:`~tracer.inference.applicability.Domain.check` comes from."""

    for key, text in GEOMETRY.items():
        if reason.startswith(text):
            return key
    for prefix, key in (
        ("elements never", "elements_never_seen"),
        ("elements rare", "elements_rare"),
        ("far from", "representation"),
        ("no symmetry", "symmetry"),
    ):
        if reason.startswith(prefix):
            return key
    raise ValueError(f"unknown reason {reason!r}")


def triage_yield(
    abs_err: np.ndarray, score: np.ndarray, fraction: float, threshold: float
) -> float:
    """Of the ``fraction`` of structures with the highest ``score``, the share of all structures
    with ``|error| > threshold`` (eV/atom) that they catch (the paper's triage yield)."""
    n = max(1, round(fraction * len(score)))
    picked = np.argsort(-score, kind="stable")[:n]
    bad = abs_err > threshold
    return float(bad[picked].sum() / bad.sum()) if bad.any() else float("nan")


def score_sigma(abs_err: np.ndarray, score: np.ndarray, *, top: float = 0.1,
                fractions: Sequence[float] = (0.05, 0.1, 0.2),
                threshold: float = 0.1) -> dict[str, Any]:  # fmt: skip
    """Spearman with |error|, AUROC for the worst ``top`` errors, triage yields."""

    worst = abs_err >= np.quantile(abs_err, 1 - top)
    return {
        "spearman": float(spearmanr(score, abs_err).statistic),
        "auroc_top10": float(roc_auc_score(worst, score)),
        "triage_yield": {f"{f:g}": triage_yield(abs_err, score, f, threshold) for f in fractions},
    }


def sigma_study(val: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, Any]:
    """σ alone vs σ with the representation distance (see the module docstring); ``val`` and
    ``test`` hold ``abs_err``, ``sigma`` and ``knn`` arrays. The weight is chosen on validation
    AUROC; test is only scored."""
    mu_s, sd_s = val["sigma"].mean(), val["sigma"].std()
    mu_d, sd_d = val["knn"].mean(), val["knn"].std()

    def combined(part: dict[str, np.ndarray], w: float) -> np.ndarray:
        return (part["sigma"] - mu_s) / sd_s + w * (part["knn"] - mu_d) / sd_d

    on_val = {f"{w:g}": score_sigma(val["abs_err"], combined(val, w)) for w in SIGMA_WEIGHTS}
    best = max(SIGMA_WEIGHTS, key=lambda w: (on_val[f"{w:g}"]["auroc_top10"], -w))
    return {
        "rule": "weight with the highest validation AUROC (ties: the smaller weight); "
        "adopted for screening only if it beats σ alone (weight 0) on validation",
        "weights": list(SIGMA_WEIGHTS),
        "validation": on_val,
        "chosen_weight": best,
        "adopted": best > 0 and on_val[f"{best:g}"]["auroc_top10"] > on_val["0"]["auroc_top10"],
        "test_sigma": score_sigma(test["abs_err"], test["sigma"]),
        "test_chosen": score_sigma(test["abs_err"], combined(test, best)),
        "n_val": len(val["sigma"]),
        "n_test": len(test["sigma"]),
    }


def shifted_copies(
    ens: Any,
    structures: list[Any],
    kind: str,
    rng: np.random.Generator,
    absent: int,
    progress: Callable[[str], None],
) -> tuple[Any, Any, Any, int]:
    """Geometry, embedding and predictions of shifted copies of ``structures`` (those whose
    graph cannot be built, an atom without neighbours, are left out) and how many were made."""
    progress(f"shifted inputs: {kind}")
    made = [shifted(s, kind, rng, absent) for s in structures]
    ids = [f"{kind}-{k}" for k in range(len(made))]
    arrays = [structure_tensors(s) for s in made]
    try:
        data = ens.graphs(ids, arrays, device="cpu")
    except ValueError:  # an atom without neighbours: build one by one, keep the good ones
        keep = []
        for k in range(len(made)):
            try:
                ens.graphs([ids[k]], [arrays[k]], device="cpu")
                keep.append(k)
            except ValueError:
                pass
        ids, arrays = [ids[k] for k in keep], [arrays[k] for k in keep]
        data = ens.graphs(ids, arrays, device="cpu")
    out = ens.predict_arrays(ids, arrays, device="cpu", data=data, embedding=True)
    return geometry_of(data), out["embedding"], out, len(made)


def predicted_part(ens: Any, by_id: Any, ids: list[str], name: str,
                   progress: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """One part of a split (``by_id``: the dataset's table indexed by id, targets in eV/atom)
    predicted by ``ens`` on the CPU: ids, structures, atomic numbers, geometry, final atom
    embeddings, absolute errors and σ (eV/atom)."""
    structures = list(by_id.loc[ids, "structure"])
    arrays = [structure_tensors(s) for s in structures]
    progress(f"{name}: {len(ids)} structures")
    data = ens.graphs(ids, arrays, device="cpu")
    out = ens.predict_arrays(ids, arrays, device="cpu", data=data, embedding=True)
    y = by_id.loc[ids, "target"].to_numpy(float)
    return {"ids": ids, "structures": structures, "z": [a[0].numpy() for a in arrays],
            "geometry": geometry_of(data), "embedding": out["embedding"],
            "abs_err": np.abs(out["mean"] - y), "sigma": out["sigma"]}  # fmt: skip


def absent_element(train_z: Sequence[np.ndarray]) -> int:
    """The lightest element (atomic number) no training structure holds: the ``absent_element``
    kind of shifted copy."""
    seen = {int(e) for z in train_z for e in z}
    absent = [z for z in range(1, 95) if z not in seen]
    if not absent:
        raise ValueError("every element H to Pu is in the training structures: no element is "
                         "left for the absent_element shifted copies")  # fmt: skip
    return absent[0]


def shifted_validation(ens: Any, structures: list[Any], absent: int, seed: int = 0,
                       progress: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Every kind (:data:`SHIFTS`) of shifted copy of the validation ``structures``, from one
    random stream (``seed``) for all kinds: what the thresholds are chosen on."""
    rng = np.random.default_rng([seed, 1])
    return {kind: shifted_copies(ens, structures, kind, rng, absent, progress)
            for kind in SHIFTS}  # fmt: skip


def run_domain_study(
    ens: Any,
    table: Any,
    split: dict[str, list[str]],
    *,
    seed: int = 0,
    max_val_flagged: float = MAX_VAL_FLAGGED,
    design: str = "tied",
    progress: Callable[[str], None] = print,
) -> tuple[Any, dict[str, Any]]:
    """Fit the domain of ``ens`` (a :class:`tracer.inference.predict.Ensemble`) on ``split``'s
    training
    structures of ``table`` (ids, structures, targets in eV/atom) and measure it; returns the
    :class:`~tracer.inference.applicability.Domain` and the record. The thresholds flag at most
    ``max_val_flagged`` of the validation structures (a fraction). ``seed`` seeds the shifted
    copies: one stream for all kinds of validation copies, another for the test copies.
    ``design``: how the thresholds are searched (a key of
    :data:`~tracer.inference.thresholds.DESIGNS`)."""
    if design not in DESIGNS:
        raise ValueError(f"unknown domain design {design!r}; one of {sorted(DESIGNS)}")

    by_id = table.set_index("id")
    tr, va, te = (predicted_part(ens, by_id, list(split[name]), name, progress)
                  for name in ("train", "val", "test"))  # fmt: skip
    absent = absent_element(tr["z"])
    # shifted copies of validation (for choosing thresholds) and of test (for measuring), each
    # set from its own random stream, one stream for all kinds of a set
    shifted_val = shifted_validation(ens, va["structures"], absent, seed, progress)
    domain = fit_domain(tr["geometry"], va["geometry"], tr["embedding"], va["embedding"],
                        shifted_val={k: (v[0], v[1]) for k, v in shifted_val.items()},
                        max_val_flagged=max_val_flagged, **DESIGNS[design])  # fmt: skip
    val_reasons = domain.check(va["geometry"], va["embedding"])
    test_reasons = domain.check(te["geometry"], te["embedding"])
    flagged = np.array([bool(r) for r in test_reasons])
    fired: dict[str, int] = {}
    for r in test_reasons:
        for reason in r:
            key = check_name(reason)
            fired[key] = fired.get(key, 0) + 1
    mae_in = float(te["abs_err"][~flagged].mean())
    mae_out = float(te["abs_err"][flagged].mean()) if flagged.any() else float("nan")

    rng = np.random.default_rng(seed)
    shift_rates: dict[str, Any] = {}
    for kind in SHIFTS:
        geo, emb, out, n_made = shifted_copies(ens, te["structures"], kind, rng, absent, progress)
        reasons = domain.check(geo, emb)
        geo_v, emb_v, _, _ = shifted_val[kind]
        shift_rates[kind] = {
            "what": SHIFTS[kind],
            "n": len(reasons),
            "n_refused_no_neighbour": n_made - len(reasons),
            "flagged_fraction": flagged_fraction(reasons),
            "flagged_fraction_val": flagged_fraction(domain.check(geo_v, emb_v)),
            "flagged_by_representation": float(
                np.mean([any("representation" in x for x in r) for r in reasons])
            ),
            "mean_sigma_ev_per_atom": float(out["sigma"].mean()),
        }
    va["knn"] = knn_distance(va["embedding"], tr["embedding"], domain.k)
    te["knn"] = knn_distance(te["embedding"], tr["embedding"], domain.k)
    record = {
        "unit": "eV/atom",
        "n_train": len(tr["ids"]),
        "n_val": len(va["ids"]),
        "n_test": len(te["ids"]),
        "representation_k": domain.k,
        "representation_quantile": domain.representation_quantile,
        "representation_threshold": domain.representation_threshold,
        "design": design,
        "geometry_ranges": {k: [None if np.isinf(b) else b for b in v]
                            for k, v in domain.ranges.items()},
        "range_quantile": domain.range_quantile,
        "strain_quantile": domain.strain_quantile,
        "strain_low_quantile": domain.strain_low_quantile,
        "max_val_flagged": max_val_flagged,
        "thresholds_rule": f"chosen on validation: flag at most {max_val_flagged * 100:g}% of the "
        "validation structures, then detect the most of the worst-detected kind of shifted "
        "validation copies",
        "min_element_count": domain.min_element_count,
        "flagged_fraction_val": flagged_fraction(val_reasons),
        "flagged_fraction_test": float(flagged.mean()),
        "n_flagged_test": int(flagged.sum()),
        "mae_flagged": mae_out,
        "mae_unflagged": mae_in,
        "mae_ratio": mae_out / mae_in if flagged.any() else None,
        "checks_fired_test": dict(sorted(fired.items())),
        "flagged_test": [
            {"id": te["ids"][k], "abs_error": float(te["abs_err"][k]), "reasons": test_reasons[k]}
            for k in np.flatnonzero(flagged)
        ],
        "shift_detection": shift_rates,
        "sigma_study": sigma_study(va, te),
    }
    record["min_detection_val_to_accept"] = min_detection_to_accept(len(va["ids"]))
    record["accepted"] = accepts(record)
    return domain, record
