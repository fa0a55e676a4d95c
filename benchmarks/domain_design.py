"""Which way of searching the applicability domain's thresholds, and under which validation flag
budget, detects the most of the worst-detected kind of shifted validation copy? The design
evidence of docs/screening.md (§ Searching the strain check's two sides apart, § A smaller
validation budget): validation parts only, no test structure is read.

For each fold of a fold file, from that fold's members (``--members/fold_<k>/member_*.pt``, as
``tracer train-cv`` writes them): the training fit and the validation part's embeddings and
shifted copies exactly as ``tracer fit-domain`` makes them
(:func:`tracer.inference.domain_study.run_domain_study`, seed 0), then for every design of
:data:`tracer.inference.thresholds.DESIGNS` and every budget of :data:`BUDGETS` the thresholds
chosen on validation (:func:`tracer.inference.applicability.choose_thresholds`): the share of
validation flagged, the share of each kind of shifted copy flagged, the worst kind and whether
``fit-domain`` would accept the fit. The record is rewritten after each fold; ``--resume`` keeps
the folds already in it, so a run can be continued.

Usage (the members trained first, on a GPU machine; about 9 minutes a fold on 2 CPU cores)::

    tracer train-cv --structures STRUCTURES --folds data/splits/flla_cv5.json --which 0 1 4 \\
        --out MEMBERS --parallel 10
    python benchmarks/domain_design.py --members MEMBERS --folds data/splits/flla_cv5.json \\
        --fold 0 1 4 --out results/cpu/domain_design.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from tracer.data.download import sha256_file
from tracer.data.folds import load_folds
from tracer.data.table import read_table
from tracer.inference.applicability import choose_thresholds, fit_training, flagged_fraction
from tracer.inference.domain_study import (
    absent_element,
    min_detection_to_accept,
    predicted_part,
    shifted_validation,
)
from tracer.inference.predict import Ensemble
from tracer.inference.thresholds import DESIGNS
from tracer.pipeline.provenance import provenance, write_metrics

#: validation flag budgets tried (fractions): the shipped 4% and the two below it
BUDGETS = (0.04, 0.035, 0.03)


def fold_designs(ens: Ensemble, table: Any, split: dict[str, Any]) -> dict[str, Any]:
    """Every design × budget of one fold, chosen and measured on its validation part."""
    by_id = table.set_index("id")
    train = predicted_part(ens, by_id, list(split["train"]), "train")
    val = predicted_part(ens, by_id, list(split["val"]), "val")
    copies = {kind: c[:2] for kind, c in
              shifted_validation(ens, val["structures"], absent_element(train["z"])).items()}
    fitted = fit_training(train["geometry"])
    need = min_detection_to_accept(len(val["ids"]))
    out: dict[str, Any] = {"n_train": len(train["ids"]), "n_val": len(val["ids"]),
                           "min_detection_val_to_accept": need, "designs": {}}  # fmt: skip
    for design, search in DESIGNS.items():
        rows = {}
        for budget in BUDGETS:
            domain = choose_thresholds(fitted, train["embedding"], val["geometry"],
                                       val["embedding"], shifted_val=copies,
                                       max_val_flagged=budget, **search)  # fmt: skip
            detected = {kind: flagged_fraction(domain.check(g, e))
                        for kind, (g, e) in copies.items()}  # fmt: skip
            worst = min(detected, key=lambda kind: detected[kind])
            rows[f"{budget:g}"] = {
                "flagged_fraction_val": flagged_fraction(
                    domain.check(val["geometry"], val["embedding"])),
                "detection_val": detected,
                "worst_kind": worst,
                "worst_detection_val": detected[worst],
                "accepted": detected[worst] >= need,
                "setting": {"representation_quantile": domain.representation_quantile,
                            "strain_quantile": domain.strain_quantile,
                            "strain_low_quantile": domain.strain_low_quantile,
                            "range_quantile": domain.range_quantile},
            }  # fmt: skip
            print(design, budget, {k: rows[f"{budget:g}"][k] for k in
                                   ("flagged_fraction_val", "worst_kind", "worst_detection_val")})
        out["designs"][design] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", required=True, help="folder of fold_<k>/member_*.pt")
    parser.add_argument("--folds", default="data/splits/flla_cv5.json")
    parser.add_argument("--fold", type=int, nargs="+", required=True)
    parser.add_argument("--table", default="data/processed/flla.parquet")
    parser.add_argument("--out", default="results/cpu/domain_design.json")
    parser.add_argument("--resume", action="store_true", help="keep the folds already in --out")
    args = parser.parse_args()
    torch.set_num_threads(2)
    folds = load_folds(args.folds)
    out = Path(args.out)
    done: dict[str, Any] = {}
    wall = 0.0
    if args.resume and out.exists():
        previous = json.loads(out.read_text())
        done, wall = previous["folds"], previous["provenance"]["wall_time_s"]
    table = read_table(args.table)
    for fold in args.fold:
        if str(fold) in done:
            continue
        t0 = time.perf_counter()
        ens = Ensemble.load(Path(args.members) / f"fold_{fold}", domain=False)
        done[str(fold)] = fold_designs(ens, table, folds["folds"][fold])
        done[str(fold)]["members_sha256"] = {p.name: sha256_file(p) for p in ens.members}
        wall += time.perf_counter() - t0
        record = {"what": __doc__.split("\n\n")[0], "budgets": list(BUDGETS),
                  "designs": {k: dict(v) for k, v in DESIGNS.items()},
                  "folds": dict(sorted(done.items()))}  # fmt: skip
        write_metrics(out, record, provenance(
            params={}, dataset_sha256=folds["dataset_sha256"], split_sha256=None,
            wall_time_s=wall, device="cpu",
            extra={"split": args.folds, "cv_sha256": folds["cv_sha256"]},
        ))  # fmt: skip


if __name__ == "__main__":
    main()
