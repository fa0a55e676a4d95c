"""Which features does the domain's bond-length model need? Four nested feature sets compared on
validation only (docs/screening.md § Out of domain).

Each set is a slice of :meth:`tracer.inference.applicability.BondLengths.features`: (1) the two
elements' covalent radii and their sum; (2) + the neighbour counts within 1.05-1.5 × the nearest
distance; (3) + both elements' CGCNN bits; (4) + the first shell's mean atomic number (the
shipped set). A model of each is fitted on the training atoms and scored on the validation
structures and on strained (×1.10), compressed (×0.90) and rattled (0.2 Å) copies of them:

* the spread of the per-atom log residual (log Å) and of the per-structure median residual;
* the share of shifted copies whose median (strain) or smallest (rattling) residual falls
  outside the central 98% of the relaxed validation structures' values.

Rule, fixed before measuring: the set with the highest detection of its worst kind among the
strained and compressed copies (the strain check's job; rattling has the symmetry check) is
shipped. No test structure is read.

Usage::

    python benchmarks/bond_length_features.py --out results/cpu/bond_length_features.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from tracer.data.splits import load_split
from tracer.data.table import read_table
from tracer.graphs.dataset import graphs_from_arrays, structure_tensors
from tracer.inference.applicability import BondLengths, Geometry, geometry_of
from tracer.inference.domain_study import shifted
from tracer.inference.predict import Ensemble
from tracer.pipeline.provenance import provenance, write_metrics

SETS = {
    "radii": slice(0, 3),
    "radii+shells": slice(0, 8),
    "radii+shells+element_bits": slice(0, 192),
    "radii+shells+element_bits+shell_z (shipped)": slice(0, 193),
}
KINDS = ("strained", "compressed", "rattled")
LEFT_OUT = 0.02


def _geometry(ens: Ensemble, structures: list[Any]) -> Geometry:
    ids = [str(k) for k in range(len(structures))]
    data = graphs_from_arrays(ids, [structure_tensors(s) for s in structures], None,
                              cutoff=ens.cutoff, max_neighbors=ens.max_neighbors)  # fmt: skip
    return geometry_of(data)


def _per_structure(geo: Geometry, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    parts = np.split(residual, np.cumsum([len(z) for z in geo.z])[:-1])
    return np.array([np.median(p) for p in parts]), np.array([p.min() for p in parts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/cpu/bond_length_features.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    ens = Ensemble.load(domain=False)  # only its graph settings
    split = load_split("data/splits/flla.json")
    table = read_table("data/processed/flla.parquet").set_index("id")
    train = _geometry(ens, [table.loc[i, "structure"] for i in split["train"]])
    val_structures = [table.loc[i, "structure"] for i in split["val"]]
    rng = np.random.default_rng(0)
    geos = {"val": _geometry(ens, val_structures)}
    for kind in KINDS:
        geos[kind] = _geometry(ens, [shifted(s, kind, rng, 0) for s in val_structures])
    x_train = BondLengths.features(train)
    y_train = np.log(np.concatenate(train.nn_distance))
    record: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "n_train": len(train.z),
                              "n_val": len(geos["val"].z), "left_out_of_validation": LEFT_OUT,
                              "params": BondLengths.PARAMS, "sets": {}}  # fmt: skip
    for name, cols in SETS.items():
        model = HistGradientBoostingRegressor(**BondLengths.PARAMS)
        model.fit(x_train[:, cols], y_train)
        stats = {}
        for part, geo in geos.items():
            residual = np.log(np.concatenate(geo.nn_distance)) - model.predict(
                BondLengths.features(geo)[:, cols])  # fmt: skip
            stats[part] = (residual, *_per_structure(geo, residual))
        _, med, low = stats["val"]
        m_lo, m_hi = np.quantile(med, [LEFT_OUT / 2, 1 - LEFT_OUT / 2])
        l_lo, l_hi = np.quantile(low, [LEFT_OUT / 2, 1 - LEFT_OUT / 2])
        record["sets"][name] = {
            "atom_residual_std_val": float(stats["val"][0].std()),
            "median_residual_std_val": float(med.std()),
            "detected_by_median": {
                k: float(np.mean((stats[k][1] < m_lo) | (stats[k][1] > m_hi))) for k in KINDS
            },
            "detected_by_smallest": {
                k: float(np.mean((stats[k][2] < l_lo) | (stats[k][2] > l_hi))) for k in KINDS
            },
        }
    worst = {n: min(s["detected_by_median"][k] for k in ("strained", "compressed"))
             for n, s in record["sets"].items()}  # fmt: skip
    record["chosen"] = max(worst, key=worst.__getitem__)
    write_metrics(args.out, record, provenance(
        params={}, dataset_sha256=split["dataset_sha256"], split_sha256=split["split_sha256"],
        wall_time_s=time.perf_counter() - t0, device="cpu",
        extra={"split": "data/splits/flla.json"},
    ))  # fmt: skip
    for name, s in record["sets"].items():
        print(f"{name}: atom std {s['atom_residual_std_val']:.3f}, median std "
              f"{s['median_residual_std_val']:.4f}, by median "
              f"{s['detected_by_median']}")  # fmt: skip
    print("chosen:", record["chosen"])


if __name__ == "__main__":
    main()
