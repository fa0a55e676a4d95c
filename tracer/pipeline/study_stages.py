"""The perovskites, transfer and domain stages (the paper's transfer and its negative result 2), at
the scale the active profile sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from tracer.analysis.figures import domain_variants, parity, save_figure, transfer_learning_curve
from tracer.analysis.transfer import zero_shot_summary
from tracer.data.download import DataUnavailableError
from tracer.data.sources import EV_PER_ATOM, load_source, raw_sha256
from tracer.data.splits import (
    load_split,
    random_group_split,
)
from tracer.data.units import to_ev_per_atom, unit_check
from tracer.data.validation import (
    ValidationConfig,
    validate,
)
from tracer.graphs.dataset import (
    GraphDataset,
    graphs_from_arrays,
    load_structure_tensors,
    save_structure_tensors,
)
from tracer.inference.ensemble import predict_members
from tracer.pipeline.paths import Paths
from tracer.pipeline.provenance import Timer, provenance, write_metrics
from tracer.pipeline.studies import domain_study, transfer_study

PEROVSKITES = "perovskites"  # the perovskite set's name in the file layout (Paths)


def run_perovskites_stage(
    *,
    params: dict[str, Any],
    transfer: dict[str, Any],
    validation: ValidationConfig,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Read the perovskite source (``transfer.source``; ``castelli_local`` by ``transfer.path``),
    validate and quarantine its records like the main data, check the declared unit against
    the values, split it (seeded, ``transfer.fractions``) and write, for machines without
    pymatgen, ``data/processed/perovskites/``: ``structures.pt`` (targets in eV/atom),
    ``split.json``, ``targets.parquet`` (id, target as given, its unit, atoms, eV/atom) and
    ``status.json`` (``RUN`` or ``NOT RUN: reason`` when the source cannot be read)."""

    out_dir = Path(root) / "data" / "processed" / PEROVSKITES
    out_dir.mkdir(parents=True, exist_ok=True)
    source = transfer["source"]
    status: dict[str, Any] = {"dataset": source}
    try:
        src_path = transfer.get("path")
        table = load_source(
            source,
            raw_dir=Path(root) / params["dataset"]["raw_dir"],
            path=None if src_path is None else Path(root) / src_path,
            registry_path=Path(root) / "data" / "checksums.json",
        )
    except (FileNotFoundError, DataUnavailableError) as err:  # no folder, no network
        status["status"] = f"NOT RUN: {err}"
        (out_dir / "status.json").write_text(json.dumps(status, indent=1) + "\n")
        return status
    result = validate(table, validation)
    clean = result.clean
    if len(result.quarantine):
        result.quarantine.to_csv(out_dir / "quarantine.csv", index=False)
    units = sorted(set(clean["target_unit"]))
    if len(units) != 1:
        raise ValueError(f"{source}: mixed target units {units}")
    n_atoms = clean["n_atoms"].to_numpy()
    y = to_ev_per_atom(clean["target"].to_numpy(), units[0], n_atoms)
    split = random_group_split(
        list(clean["id"]), np.arange(len(clean)), fractions=transfer["fractions"],
        seed=int(transfer["seed"]),
    )  # fmt: skip
    save_structure_tensors(out_dir / "structures.pt", list(clean["id"]),
                           list(clean["structure"]), list(y), EV_PER_ATOM)  # fmt: skip
    (out_dir / "split.json").write_text(json.dumps(split) + "\n")
    pd.DataFrame({"id": clean["id"], "target": clean["target"], "unit": units[0],
                  "n_atoms": n_atoms, "target_ev_per_atom": y}).to_parquet(
        out_dir / "targets.parquet", index=False)  # fmt: skip
    status.update(
        status="RUN",
        source_sha256=raw_sha256(
            source,
            Path(root) / params["dataset"]["raw_dir"],
            None if src_path is None else Path(root) / src_path,
        ),
        n_records=len(table),
        n_quarantined=len(table) - len(clean),
        unit=units[0],
        unit_check=unit_check(units[0], clean["target"].to_numpy(), n_atoms),
        split_sizes={k: len(v) for k, v in split.items()},
        split_seed=int(transfer["seed"]),
    )
    (out_dir / "status.json").write_text(json.dumps(status, indent=1) + "\n")
    return status


def perovskite_graphs(
    root: str | Path, cutoff: float, max_neighbors: int | None, *, workers: int = 1
) -> tuple[Any, dict[str, Any], pd.DataFrame] | str:
    """The perovskites stage's structures as a graph dataset (eV/atom), its split and targets
    table; or the stage's ``NOT RUN`` reason."""

    where = Path(root) / "data" / "processed" / PEROVSKITES
    status = json.loads((where / "status.json").read_text())
    if status["status"] != "RUN":
        return str(status["status"])
    payload = load_structure_tensors(where / "structures.pt")
    arrays = list(zip(payload["z"], payload["pos"], payload["cell"], strict=True))
    data = graphs_from_arrays(payload["ids"], arrays, payload["targets"], cutoff=cutoff,
                              max_neighbors=max_neighbors, unit=payload["unit"],
                              workers=workers)  # fmt: skip
    split = json.loads((where / "split.json").read_text())
    return data, split, pd.read_parquet(where / "targets.parquet").set_index("id")


def run_transfer_stage(
    *,
    params: dict[str, Any],
    dataset_name: str,
    transfer: dict[str, Any],
    device: str = "auto",
    root: str | Path = ".",
) -> dict[str, Any]:
    """Transfer of this run's ensemble to the perovskites (from the perovskites stage): the unit
    checked against the data and the model, zero-shot test errors in eV/atom and eV/cell with
    the σ shift against the in-domain test σ, then fine-tuning (``transfer.fine_tune``: every
    member, one model from scratch, and the learning curve; models in ``models/transfer``).
    Writes ``metrics/transfer.json`` and ``paper_figures/transfer_{zero_shot,fine_tuned,
    learning_curve}``; NOT RUN (with the reason) in both when the source could not be read."""


    paths = Paths(dataset_name, Path(root))
    out: dict[str, Any] = {"dataset": transfer["source"]}
    with Timer() as timer:
        members = sorted(paths.models.glob("member_*.pt"))
        graph = torch.load(members[0], map_location="cpu", weights_only=False)["graph"]
        got = perovskite_graphs(root, graph["cutoff"], graph["max_neighbors"])
        if isinstance(got, str):
            out.update(status=got, unit_check=None, zero_shot=None, fine_tuned=got,
                       learning_curve=got)  # fmt: skip
            models = Path(root) / "models" / "transfer"  # the stage's output says why it is empty
            models.mkdir(parents=True, exist_ok=True)
            (models / "NOT_RUN.txt").write_text(got + "\n")
            for name in ("transfer_zero_shot", "transfer_fine_tuned", "transfer_learning_curve"):
                fig, ax = plt.subplots(figsize=(4.2, 1.2))
                ax.axis("off")
                ax.text(0, 0.5, f"transfer {got}"[:300], va="center", wrap=True)
                save_figure(fig, name, paths.figures_of("transfer"))
        else:
            data, split, targets = got
            status = json.loads(
                (Path(root) / "data" / "processed" / PEROVSKITES / "status.json").read_text()
            )
            test_ids = list(split["test"])
            pred = predict_members(members, data, data.index_of(test_ids), device=device)
            t = targets.loc[test_ids]
            n_atoms = t["n_atoms"].to_numpy()
            y = t["target_ev_per_atom"].to_numpy()
            in_domain = pd.read_parquet(paths.predictions("gemnet_t"))
            study = transfer_study(params, data, split, members,
                                   Path(root) / "models" / "transfer", device=device)  # fmt: skip
            out.update(
                status="RUN",
                **{k: status[k] for k in ("n_records", "n_quarantined", "split_sizes",
                                          "split_seed")},
                unit_check=unit_check(status["unit"], t["target"].to_numpy(), n_atoms,
                                      prediction_ev_per_atom=pred["mean"].to_numpy()),
                zero_shot=zero_shot_summary(
                    y, pred["mean"], pred["std"], n_atoms,
                    in_domain.loc[in_domain["set"] == "test", "std"],
                ),
                **study,
            )  # fmt: skip
            where = f"{transfer['source']} test split (eV/atom)"
            fig = parity(y, pred["mean"], sigma=pred["std"], title=f"zero-shot on {where}")
            save_figure(fig, "transfer_zero_shot", paths.figures_of("transfer"))
            fine = _fine_tuned_test(Path(root) / "models" / "transfer", test_ids)
            fig = parity(fine["y_true"], fine["mean"], sigma=fine["std"],
                         title=f"fine-tuned ensemble on {where}")  # fmt: skip
            save_figure(fig, "transfer_fine_tuned", paths.figures_of("transfer"))
            save_figure(transfer_learning_curve(study["learning_curve"]),
                        "transfer_learning_curve", paths.figures_of("transfer"))  # fmt: skip
    write_metrics(
        paths.metrics / "transfer.json",
        out,
        provenance(params=params, dataset_sha256=_perovskite_source_sha(root), split_sha256=None,
                   wall_time_s=timer.elapsed_s),
    )  # fmt: skip
    return out


def _perovskite_source_sha(root: str | Path) -> str | None:
    """sha256 of the perovskite source the perovskites stage read (None when it did not)."""
    status = Path(root) / "data" / "processed" / PEROVSKITES / "status.json"
    return json.loads(status.read_text()).get("source_sha256") if status.exists() else None


def _fine_tuned_test(folder: Path, test_ids: list[str]) -> pd.DataFrame:
    """Test predictions of the fine-tuned members (``finetune_all_member*``): y_true, the
    ensemble mean and σ (ddof 0), eV/atom."""
    files = sorted(folder.glob("finetune_all_member*.parquet"))
    frames = [pd.read_parquet(p).set_index("id") for p in files]
    preds = pd.concat([f.loc[test_ids, "y_pred"] for f in frames], axis=1)
    return pd.DataFrame({"y_true": frames[0].loc[test_ids, "y_true"],
                         "mean": preds.mean(axis=1), "std": preds.std(axis=1, ddof=0)})  # fmt: skip


def run_domain_stage(
    *, params: dict[str, Any], dataset_name: str, device: str = "auto", root: str | Path = "."
) -> dict[str, Any]:
    """Negative result 2 (``params["domain"]``, :func:`tracer.pipeline.studies.domain_study`):
    GemNet-T
    with each domain variant on this dataset's split, then on it and the perovskites together
    (source = domain; NOT RUN with the reason when the perovskites could not be read). Writes
    ``metrics/domain.json`` and ``paper_figures/domain_variants``; models in ``models/domain``."""

    paths = Paths(dataset_name, Path(root))
    with Timer() as timer:
        split = load_split(paths.split)
        flla = GraphDataset.load(paths.graphs)
        perov = perovskite_graphs(root, flla.cutoff, flla.max_neighbors)
        perovskites = perov if isinstance(perov, str) else perov[:2]
        report = domain_study(params, flla, split, Path(root) / "models" / "domain",
                              perovskites=perovskites, device=device)  # fmt: skip
        save_figure(domain_variants(report), "domain_variants", paths.figures_of("domain"))
    out = {"dataset": dataset_name, "unit": "eV/atom", **report}
    write_metrics(
        paths.metrics / "domain.json",
        out,
        provenance(params=params, dataset_sha256=split["dataset_sha256"],
                   split_sha256=split["split_sha256"], wall_time_s=timer.elapsed_s),
    )  # fmt: skip
    return out
