"""Records of the study runs (domain module, transfer) made on a GPU machine: states, per-run
metrics, the study records and their figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.analysis.accuracy import point_metrics
from tracer.analysis.figures import domain_variants, parity, save_figure, transfer_learning_curve
from tracer.analysis.studies import (
    domain_report,
    learning_curve,
    per_atom_and_cell,
    test_predictions,
)
from tracer.analysis.transfer import zero_shot_summary
from tracer.data.units import unit_check
from tracer.models.domain import DomainGemNetTConfig
from tracer.models.gemnet import GemNetTConfig
from tracer.models.registry import build_model
from tracer.pipeline.config import load_params
from tracer.pipeline.packed import pack, unpacked
from tracer.pipeline.paths import RUN_OF_RECORD, RUN_OF_RECORD_FIGURES
from tracer.pipeline.provenance import provenance, write_metrics
from tracer.pipeline.study_stages import PEROVSKITES, _fine_tuned_test


# --------------------------------------------------------------------------------------------
# the domain and transfer studies of a GPU run (tracer study; possibly unfinished)
# --------------------------------------------------------------------------------------------
def study_run_states(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every run of a study folder (:func:`tracer.pipeline.studies.train_runs`): finished (its
    summary
    and predictions exist) or not (only its per-epoch history came back), with epochs run,
    best validation MAE, median s/epoch and the validation MAE of every epoch."""
    folder = Path(folder)
    states: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("work/*/history.json")):
        history = json.loads(path.read_text())
        name = path.parent.name
        states[name] = {
            "finished": (folder / f"{name}.json").exists()
            and (folder / f"{name}.parquet").exists(),
            "epochs_run": len(history),
            "best_val_mae": min(float(h["val_mae"]) for h in history),
            "s_per_epoch": float(np.median([h["epoch_time_s"] for h in history])),
            "val_mae": [float(h["val_mae"]) for h in history],
        }
    return states


def _devices(folder: Path) -> list[str]:
    """The devices the finished runs of a study folder name in their summaries."""
    return sorted({json.loads(p.read_text()).get("device", "?")
                   for p in folder.glob("*/*.json")})  # fmt: skip


def _study_test_metrics(folder: Path, name: str) -> dict[str, float]:
    test = test_predictions(folder, name)
    return point_metrics(test["y_true"].to_numpy(), test["y_pred"].to_numpy())


def domain_record(
    folder: str | Path, params: dict[str, Any], *, second_domain_ids: Any = ()
) -> dict[str, Any]:
    """``domain.json`` of a GPU run's domain study, finished or not: per variant the test
    metrics of its finished seeds (means), parameters (of the model the profile builds),
    median s/epoch and, for every run, epochs run, best validation MAE and the validation MAE
    at the last epoch every run of the study reached (so that unfinished runs still compare).
    ``status`` says ``RUN`` only when every run finished; then each variant also carries what
    the pipeline's own report (:func:`tracer.analysis.studies.domain_report`) gives — MAE per seed
    with
    its interval, device, peak memory and, for the two-database check, the MAE per domain (test
    ids in ``second_domain_ids`` are domain 1, the others domain 0)."""

    folder = Path(folder)
    d = params["domain"]
    gemnet = GemNetTConfig.from_params(params["gemnet"], params["graph"]).to_dict()

    def part(sub: str, prefix: str, variants: list[str], seeds: list[int], domains: int) -> dict:
        states = study_run_states(folder / sub)
        names = {(v, s): f"{prefix}_{v}_seed{s}" for v in variants for s in seeds}
        missing = [n for n in names.values() if n not in states]
        common = min((states[n]["epochs_run"] for n in names.values() if n in states), default=0)
        out: dict[str, Any] = {}
        for v in variants:
            cfg = DomainGemNetTConfig(**gemnet, domain_mode=v, num_domains=domains,
                                      domain_emb_size=d["emb_size"])  # fmt: skip
            runs = {s: states.get(names[v, s]) for s in seeds}
            done = [s for s, r in runs.items() if r is not None and r["finished"]]
            tests = [_study_test_metrics(folder / sub, names[v, s]) for s in done]
            entry: dict[str, Any] = {
                "params": sum(p.numel() for p in build_model(cfg).parameters()),
                "s_per_epoch": float(np.median([r["s_per_epoch"] for r in runs.values() if r]))
                if any(runs.values())
                else None,
                "finished_seeds": done,
                "mae": float(np.mean([t["mae"] for t in tests])) if tests else None,
                "rmse": float(np.mean([t["rmse"] for t in tests])) if tests else None,
                "r2": float(np.mean([t["r2"] for t in tests])) if tests else None,
                "runs": {
                    str(s): None
                    if r is None
                    else {k: r[k] for k in ("finished", "epochs_run", "best_val_mae")}
                    | {"val_mae_at_common_epoch": r["val_mae"][common - 1] if common else None}
                    for s, r in runs.items()
                },
            }
            out[v] = entry
        unfinished = [n for n in names.values() if n in states and not states[n]["finished"]]
        if len(missing) == len(names):
            status = f"NOT RUN: no run of {sub}/ in the run folder"
        elif missing or unfinished:
            status = f"PARTIAL: device time ran out; unfinished {unfinished}, not started {missing}"
        else:
            status = "RUN"
        if status == "RUN" and names:
            second = set(second_domain_ids)
            test = test_predictions(folder / sub, names[variants[0], seeds[0]])
            full = domain_report(folder / sub, variants=variants, seeds=seeds, prefix=prefix,
                                 domain_of={i: int(i in second) for i in test.index}
                                 if domains > 1 else None)  # fmt: skip
            for v in variants:
                out[v].update(
                    {
                        k: full[v][k]
                        for k in (
                            "mae_seeds",
                            "mae_across_seeds",
                            "device",
                            "peak_mem_gib",
                            "n_train",
                            "mae_by_domain",
                        )
                        if k in full[v]
                    }
                )
        return {"status": status, "common_epoch": common, "variants": out}

    single = part("single", "domain", d["variants"], d["seeds"], 1)
    m = d["multi_domain"]
    multi = part("multi", "multi", m["variants"], m["seeds"], 2)
    multi["domains"] = {"0": params["dataset"]["name"], "1": "perovskites"}
    return {
        "status": single["status"],
        "common_epoch": single["common_epoch"],
        "variants": single["variants"],
        "multi_domain": multi,
        "note": "s/epoch and peak memory were measured while the study's runs shared the GPUs "
        f"({', '.join(_devices(folder)) or 'none recorded'}) under CUDA MPS: a rough comparison "
        "of the variants only",
    }


def transfer_record(
    folder: str | Path, *, targets: pd.DataFrame, in_domain_sigma: Any, status: dict[str, Any]
) -> dict[str, Any]:
    """``transfer.json`` of a GPU run's transfer study (``tracer study transfer``): zero-shot
    of the pre-trained members (``zero_shot.parquet``) with the unit check, the fine-tuned
    ensemble of the members that finished (``fine_tuned.n_members``), and every run's state
    (the learning curve is reported only when all its runs finished). ``targets``: the
    perovskites stage's targets table indexed by id."""

    folder = Path(folder)
    zero = pd.read_parquet(folder / "zero_shot.parquet").set_index("id")
    t = targets.loc[zero.index]
    n_atoms = t["n_atoms"].to_numpy()
    y = t["target_ev_per_atom"].to_numpy()
    states = study_run_states(folder / "transfer")
    finished = sorted(n for n, r in states.items() if r["finished"])
    members = [n for n in finished if n.startswith("finetune_all_member")]
    out: dict[str, Any] = {
        "status": "RUN"
        if all(r["finished"] for r in states.values())
        else f"PARTIAL: device time ran out; finished {finished}",
        "dataset": status["dataset"],
        "split_sizes": status["split_sizes"],
        "unit_check": unit_check(
            status["unit"],
            t["target"].to_numpy(),
            n_atoms,
            prediction_ev_per_atom=zero["mean"].to_numpy(),
        ),
        "zero_shot": zero_shot_summary(y, zero["mean"], zero["std"], n_atoms, in_domain_sigma),
        "runs": {
            n: {k: r[k] for k in ("finished", "epochs_run", "best_val_mae", "s_per_epoch")}
            for n, r in states.items()
        },
    }
    if members:
        preds = pd.concat(
            [test_predictions(folder / "transfer", m).loc[zero.index, "y_pred"].rename(m)
             for m in members], axis=1
        )  # fmt: skip
        out["fine_tuned"] = {
            "n_members": len(members),
            "members": members,
            **per_atom_and_cell(y, preds.mean(axis=1), n_atoms),
            "single_mae_ev_per_atom": {
                m: float(np.mean(np.abs(preds[m].to_numpy() - y))) for m in members
            },
        }
    else:
        out["fine_tuned"] = "NOT RUN: no fine-tuned member finished"
    curve = [n for n in states if n.startswith(("finetune_n", "scratch_n"))]
    needed = [*curve, "scratch_all"]
    if not curve or not members or not all(n in states and states[n]["finished"] for n in needed):
        out["learning_curve"] = "NOT RUN: device time ran out before its runs finished"
        return out
    tests = {n: test_predictions(folder / "transfer", n).loc[zero.index] for n in finished}

    def scores(truth: pd.Series, pred: pd.Series) -> dict[str, float]:
        return per_atom_and_cell(truth.to_numpy(), pred, truth.index.map(t["n_atoms"]).to_numpy())

    out["scratch"] = scores(tests["scratch_all"]["y_true"], tests["scratch_all"]["y_pred"])
    out["learning_curve"] = learning_curve(
        tests, "finetune_all_member0", status["split_sizes"]["train"], scores
    )
    return out


def record_studies(
    run_dir: str | Path,
    *,
    params_path: str | Path = "profiles/full.yaml",
    out_dir: str | Path = RUN_OF_RECORD,
    root: str | Path = ".",
) -> dict[str, Any]:
    """Write ``domain.json`` and ``transfer.json`` of a GPU run of ``tracer study`` (folders
    ``domain/`` and ``transfer/`` with ``zero_shot.parquet``, as ``tracer study`` writes them,
    models left out) and keep its small records under ``out_dir/studies``. The perovskites'
    targets come from this checkout's perovskites stage, the in-domain σ from the committed
    ensemble's predictions."""

    run_dir, out_dir, root = Path(run_dir), Path(out_dir), Path(root)
    params = load_params(params_path)
    keep = out_dir / "studies"
    if keep.exists():
        shutil.rmtree(keep)
    shutil.copytree(run_dir, keep, ignore=shutil.ignore_patterns("*.pt", "*.tmp", "*.log"))
    pack(keep, remove=True)  # committed as studies.zip
    train_s = sum(
        json.loads(p.read_text())[-1]["wall_time_s"]
        for p in run_dir.glob("*/**/work/*/history.json")
    )
    prov = provenance(params=params, dataset_sha256=None, split_sha256=None, wall_time_s=train_s,
                      extra={"profile": str(params_path), "run_dir": "studies"})  # fmt: skip
    perov = root / "data" / "processed" / PEROVSKITES
    targets = pd.read_parquet(perov / "targets.parquet").set_index("id")
    domain = domain_record(run_dir / "domain", params, second_domain_ids=targets.index)
    write_metrics(out_dir / "domain.json", {"dataset": params["dataset"]["name"],
                                            "unit": "eV/atom", **domain}, prov)  # fmt: skip
    status = json.loads((perov / "status.json").read_text())
    frame = pd.read_parquet(out_dir / "gemnet_t.parquet")
    transfer = transfer_record(
        run_dir,
        targets=targets,
        in_domain_sigma=frame.loc[frame["set"] == "test", "std"],
        status=status,
    )
    write_metrics(out_dir / "transfer.json", transfer, prov)
    return {"domain": domain, "transfer": transfer}


def study_figures(
    results_dir: str | Path = RUN_OF_RECORD,
    figures_dir: str | Path = RUN_OF_RECORD_FIGURES,
) -> dict[str, Any]:
    """Negative result 2 and the transfer of the committed run of record (``domain.json``,
    ``transfer.json`` and ``studies/`` of
    :func:`tracer.pipeline.study_records.record_studies`), drawn by
    the same figure code as the default profile's stages: ``domain_variants``,
    ``transfer_fine_tuned`` (parity of the fine-tuned ensemble on the perovskite test split) and
    ``transfer_learning_curve``, written to ``figures_dir``. A study that did not finish on
    the GPU is skipped and named under ``skipped``."""

    results_dir, figures_dir = Path(results_dir), Path(figures_dir)
    domain = json.loads((results_dir / "domain.json").read_text())
    transfer = json.loads((results_dir / "transfer.json").read_text())
    figures: list[Path] = []
    skipped: dict[str, str] = {}
    if domain["status"] == "RUN":  # the figure draws the two-database panel only when it ran
        figures += save_figure(domain_variants(domain), "domain_variants", figures_dir)
    else:
        skipped["domain_variants"] = domain["status"]
    if isinstance(transfer.get("fine_tuned"), dict):
        with unpacked(results_dir / "studies") as studies:  # committed as one archive
            folder = studies / "transfer"
            rows = pd.read_parquet(folder / "finetune_all_member0.parquet")
            fine = _fine_tuned_test(folder, rows.loc[rows["set"] == "test", "id"].tolist())
        title = f"fine-tuned ensemble on {transfer['dataset']} test split (eV/atom), run of record"
        fig = parity(fine["y_true"], fine["mean"], sigma=fine["std"], title=title)
        figures += save_figure(fig, "transfer_fine_tuned", figures_dir)
    else:
        skipped["transfer_fine_tuned"] = str(transfer.get("fine_tuned"))
    if isinstance(transfer.get("learning_curve"), list):
        fig = transfer_learning_curve(transfer["learning_curve"])
        figures += save_figure(fig, "transfer_learning_curve", figures_dir)
    else:
        skipped["transfer_learning_curve"] = str(transfer.get("learning_curve"))
    return {"figures": figures, "skipped": skipped, "domain": domain, "transfer": transfer}
