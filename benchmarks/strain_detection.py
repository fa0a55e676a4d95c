"""Can uniform strain and rattling be told from relaxed crystals? Three more candidate checks for
the applicability domain, measured beside the shipped ones (docs/screening.md).

Each candidate is measured alone against strained (×1.10), compressed (×0.90) and rattled
(0.2 Å) copies of the validation and test structures, beside the shipped strain descriptors
(``bond_dev_median`` and ``bond_dev_min``, against the domain's bond-length model). Candidates,
each a number per structure that a chemist can read:

* ``volume_ratio``: log(volume per atom / the volume its composition predicts), the prediction a
  least-squares fit of per-element volumes on the training structures (Å³ per atom);
* ``bond_scatter``: the spread (std over atoms) of log(nearest-neighbour distance / expected bond
  length);
* ``ev_slope``: the ensemble's energy slope under isotropic scaling, (E(1.03 a) − E(0.97 a)) / 0.06
  (eV/atom per unit linear strain): a relaxed crystal sits near a minimum of the true energy.

Rule, fixed before measuring: each candidate's two-sided range is the central part of the
*validation* structures' values that leaves out 5%, 2.5% or 1% in total; a candidate would be
worth adding only if at that range it flags ≥ 90% of a shifted kind's validation copies. Test
copies are measured after, with the same ranges. The shipped descriptors are measured the same
way for comparison.

Usage::

    python benchmarks/strain_detection.py --out results/cpu/strain_detection.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tracer.data.splits import load_split
from tracer.data.table import read_table
from tracer.graphs.dataset import graphs_from_arrays, structure_tensors
from tracer.inference.applicability import bond_deviations, descriptors, geometry_of
from tracer.inference.domain_study import SHIFTS, shifted
from tracer.inference.predict import PRETRAINED_DIR, Ensemble
from tracer.pipeline.provenance import provenance

KINDS = ("strained", "compressed", "rattled")
LEFT_OUT = (0.05, 0.025, 0.01)
SCALES = (0.97, 1.03)


def _arrays(structures: list[Any], scale: float = 1.0) -> list[tuple]:
    out = []
    for s in structures:
        c = s.copy()
        if scale != 1.0:
            c.scale_lattice(s.volume * scale**3)
        out.append(structure_tensors(c))
    return out


def measures(ens: Ensemble, structures: list[Any], ids: list[str], volume_fit: Any) -> dict:
    """Every candidate and shipped descriptor of ``structures`` (see the module docstring)."""
    dom = ens.domain
    data = graphs_from_arrays(ids, _arrays(structures), None, cutoff=ens.cutoff,
                              max_neighbors=ens.max_neighbors)  # fmt: skip
    geo = geometry_of(data)
    expected = dom.bond_lengths.log_expected(geo)
    desc = descriptors(geo, expected)
    scatter = [float(np.std(lr)) for lr in bond_deviations(geo, expected)]
    energies = [ens.predict_arrays(ids, _arrays(structures, s), device="cpu")["mean"]
                for s in SCALES]  # fmt: skip
    return {
        "volume_ratio": np.log(desc["volume_per_atom"] / volume_fit(structures)),
        "bond_scatter": np.asarray(scatter),
        "ev_slope": (energies[1] - energies[0]) / (SCALES[1] - SCALES[0]),
        "bond_dev_median": desc["bond_dev_median"],
        "bond_dev_min": desc["bond_dev_min"],
    }


def composition_volume(train: list[Any]) -> Any:
    """Per-element volumes (Å³ per atom) fitted by least squares on ``train``; returns the
    function giving each structure's predicted volume per atom."""
    elements = sorted({e.symbol for s in train for e in s.composition.elements})
    col = {e: i for i, e in enumerate(elements)}

    def matrix(structures: list[Any]) -> np.ndarray:
        m = np.zeros((len(structures), len(elements)))
        for r, s in enumerate(structures):
            for e, x in s.composition.fractional_composition.get_el_amt_dict().items():
                if e in col:
                    m[r, col[e]] = x
        return m

    volumes = np.array([s.volume / len(s) for s in train])
    coef, *_ = np.linalg.lstsq(matrix(train), volumes, rcond=None)
    return lambda structures: np.clip(matrix(structures) @ coef, 1e-3, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/cpu/strain_detection.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    ens = Ensemble.load()
    split = load_split("data/splits/flla.json")
    table = read_table("data/processed/flla.parquet").set_index("id")
    parts = {p: list(split[p]) for p in ("train", "val", "test")}
    structs = {p: [table.loc[i, "structure"] for i in ids] for p, ids in parts.items()}
    volume_fit = composition_volume(structs["train"])
    rng = np.random.default_rng(0)
    values: dict[str, dict[str, np.ndarray]] = {}
    for part in ("val", "test"):
        values[part] = measures(ens, structs[part], parts[part], volume_fit)
        for kind in KINDS:
            copies = [shifted(s, kind, rng, 0) for s in structs[part]]
            values[f"{part}_{kind}"] = measures(ens, copies, parts[part], volume_fit)
    record: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "shifts": {k: SHIFTS[k]
                              for k in KINDS}, "n_val": len(parts["val"]),
                              "n_test": len(parts["test"]), "candidates": {}}  # fmt: skip
    for name in values["val"]:
        rows = []
        for left in LEFT_OUT:
            lo, hi = (float(q) for q in np.quantile(values["val"][name], [left / 2, 1 - left / 2]))

            def rate(v: np.ndarray, lo: float = lo, hi: float = hi) -> float:
                return float(np.mean((v < lo) | (v > hi)))

            rows.append({
                "left_out_of_validation": left, "range": [lo, hi],
                "flagged": {p: rate(values[p][name]) for p in ("val", "test")},
                "detected_val": {k: rate(values[f"val_{k}"][name]) for k in KINDS},
                "detected_test": {k: rate(values[f"test_{k}"][name]) for k in KINDS},
            })  # fmt: skip
        medians = {p: float(np.median(v[name])) for p, v in values.items()}
        worth = any(r["detected_val"][k] >= 0.9 for r in rows for k in KINDS)
        record["candidates"][name] = {"medians": medians, "ranges": rows, "worth_adding": worth}
    record["provenance"] = provenance(
        params={}, dataset_sha256=split["dataset_sha256"], split_sha256=split["split_sha256"],
        wall_time_s=time.perf_counter() - t0, device="cpu",
        extra={"ensemble": f"tracer/pretrained/{PRETRAINED_DIR.name}",
               "split": "data/splits/flla.json"},
    )  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    for name, c in record["candidates"].items():
        best = c["ranges"][0]
        print(f"{name}: val flagged {best['flagged']['val']:.3f}, detected (val) "
              + ", ".join(f"{k} {v:.2f}" for k, v in best["detected_val"].items()))  # fmt: skip


if __name__ == "__main__":
    main()
