"""Recording a GPU run (made with ``tracer train-ensemble`` on a machine without DVC) under
``results/gpu/``: metrics with the keys of ``METRICS.md``, predictions, speed, and the ensemble
in half precision where that moves predictions by less than a tolerance (eV/atom).

Every number is computed here from the run's own files with the same functions the pipeline
uses (:func:`tracer.stages.ensemble_accuracy`, :func:`tracer.accuracy.evaluate`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tracer.accuracy import accuracy_table, evaluate, point_metrics
from tracer.alignn_train import time_to_reach
from tracer.config import load_params
from tracer.ensemble import member_seed
from tracer.models.dummy import MeanPredictor
from tracer.provenance import provenance, write_metrics
from tracer.splits import load_split
from tracer.stages import Paths, ensemble_accuracy, targets_by_set
from tracer.table import read_table


def half_precision_member(src: str | Path, dst: str | Path) -> Path:
    """Copy a member file with its floating-point weights stored as float16."""
    record = torch.load(Path(src), map_location="cpu", weights_only=False)
    record["state_dict"] = {
        k: (v.half() if v.is_floating_point() and v.dim() > 0 else v)
        for k, v in record["state_dict"].items()
    }
    record["stored_dtype"] = "float16"
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, dst)
    return dst


def summaries_from_histories(run_dir: str | Path, *, wall_time_s: float, parallel: int) -> dict:
    """The content of a run's ``training.json``, rebuilt from its per-epoch histories.

    For a run whose member files did not all come back: ``history_<seed>.json`` (the trainer's
    ``work/member_<seed>/history.json``) gives each member's best epoch and validation MAE
    (eV/atom), epochs run and training time; the device and parameter count come from a member
    file of the same run. ``wall_time_s`` and ``parallel`` are the run's, from its log.
    """
    run_dir = Path(run_dir)
    paths = sorted(run_dir.glob("history_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    records = sorted(run_dir.glob("member_*.pt"), key=member_seed)
    if not paths or not records:
        raise FileNotFoundError(f"{run_dir}: needs history_<seed>.json files and a member file")
    ref = torch.load(records[0], map_location="cpu", weights_only=False)["summary"]
    members = {}
    for path in paths:
        seed = int(path.stem.split("_")[1])
        history = json.loads(path.read_text())
        vals = [h["val_mae"] for h in history]
        best = int(np.argmin(vals))
        members[str(seed)] = {
            "seed": seed,
            "best_epoch": history[best]["epoch"],
            "best_val_mae": vals[best],
            "epochs_run": len(history),
            "stopped_early": None,
            "train_time_s": history[-1]["wall_time_s"],
            **{k: ref[k] for k in ("device", "num_params", "ema_decay", "cuda_graphs")},
            "rebuilt_from": path.name,
        }
    return {"members": members, "wall_time_s": wall_time_s, "parallel": parallel}


def _speed_settings(m: dict[str, Any]) -> tuple:
    shapes = m.get("static_shapes")
    buckets = m.get("shape_buckets", len(shapes) if shapes else None)
    return (m.get("max_neighbors"), m["batch_size"], m.get("precision"), m["cuda_graphs"], buckets)


def speed_models_for_profile(raw_models: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The timings of a ``train_speed.py`` run keyed for the record: ``gemnet_t`` is the one
    entry timed with the profile's settings (neighbours, batch size, precision, CUDA graphs
    and their shape buckets), every other GemNet-T entry is named by its settings, and the
    other models keep their names. ValueError when no entry matches the profile."""
    t = params["train"]
    want = (
        params["graph"]["max_neighbors"],
        t["batch_size"],
        t["precision"],
        bool(t["cuda_graphs"]),
        t["shape_buckets"] if t["cuda_graphs"] else None,
    )
    out: dict[str, Any] = {}
    match = None
    for name, m in raw_models.items():
        if not name.startswith("gemnet_t"):
            out[name] = m
            continue
        settings = _speed_settings(m)
        if settings == want and match is None:
            match = name
            out["gemnet_t"] = {**m, "timed_as": name}
            continue
        nb, bs, prec, graphed, buckets = settings
        mode = f"graphs{buckets}" if graphed else "eager"
        out[f"gemnet_t_nb{nb}_b{bs}_{prec}_{mode}"] = {**m, "timed_as": name}
    if match is None:
        raise ValueError(
            f"speed.json has no GemNet-T timing with the profile's settings "
            f"(max_neighbors, batch_size, precision, cuda_graphs, shape_buckets) = {want}"
        )
    return out


def baseline_results(
    run_dir: str | Path, test_ids: Sequence[str], *, n_resamples: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Test accuracy of the baselines a GPU run folder holds, and ALIGNN's training record.

    ``<kind>.parquet`` (``tracer train-baseline``: SchNet, CGCNN) is scored as ``<kind>``.
    ALIGNN was trained with up to two recipes (``tracer train-alignn``: ``alignn_<recipe>``
    ``.parquet`` and ``.json``); the recipe with the lower best validation MAE is ``alignn``
    (chosen on validation only), and every recipe's validation and test MAE is listed under
    ``alignn.recipes``. Returns ``(results, alignn summary or None)``."""
    run_dir = Path(run_dir)

    def scored(path: Path) -> dict[str, Any]:
        frame = pd.read_parquet(path)
        test = frame[frame["set"] == "test"].set_index("id").loc[list(test_ids)]
        return evaluate(test["y_true"], test["y_pred"], n_resamples=n_resamples)

    results: dict[str, Any] = {}
    for kind in ("schnet", "cgcnn"):
        if (run_dir / f"{kind}.parquet").exists():
            results[kind] = scored(run_dir / f"{kind}.parquet")
    summaries = {
        p.stem.removeprefix("alignn_"): json.loads(p.read_text())
        for p in sorted(run_dir.glob("alignn_*.json"))
    }
    if not summaries:
        return results, None
    best = min(summaries, key=lambda r: summaries[r]["best_val_mae"])
    recipes = {}
    for recipe, summary in summaries.items():
        metrics = scored(run_dir / f"alignn_{recipe}.parquet")
        recipes[recipe] = {"best_val_mae": summary["best_val_mae"], "test_mae": metrics["mae"]}
        if recipe == best:
            results["alignn"] = {**metrics, "recipe": recipe}
    results["alignn"]["recipes"] = recipes
    return results, summaries[best]


def times_to_alignn_best(run_dir: str | Path, alignn: dict[str, Any]) -> dict[str, Any]:
    """Training wall time (s) to ALIGNN's best validation MAE: ALIGNN's own (to its best
    epoch) and each GemNet-T member's (None for a member that never reaches it), with their
    median. Members trained alone on a card (``alone/work/member_<seed>/history.json``, see
    ``benchmarks/gpu_table1.sh``) are used when present, else the run's own members
    (``work/member_<seed>/history.json`` or ``history_<seed>.json``)."""
    run_dir = Path(run_dir)
    target = float(alignn["best_val_mae"])
    best_row = alignn["history"][alignn["best_epoch"]]
    paths = (
        sorted(run_dir.glob("alone/work/member_*/history.json"))
        or sorted(run_dir.glob("work/member_*/history.json"))
        or sorted(run_dir.glob("history_*.json"))
    )
    members, best_val = {}, {}
    for path in paths:
        seed = (path.parent.name if path.name == "history.json" else path.stem).split("_")[-1]
        history = json.loads(path.read_text())
        members[seed] = time_to_reach(history, target)
        best_val[seed] = min(float(row["val_mae"]) for row in history)
    reached = [t for t in members.values() if t is not None]
    return {
        "alignn_best_val_mae": target,
        "alignn": float(best_row["wall_time_s"]),
        "gemnet_t_members": members,
        "gemnet_t_members_best_val_mae": best_val,
        "gemnet_t": float(np.median(reached)) if len(reached) == len(members) and reached else None,
    }


def keep_run_records(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Copy a GPU run's small records into ``out_dir/runs``: the baselines' val/test predictions
    (``schnet.parquet``, ``cgcnn.parquet``, ``alignn_<recipe>.parquet``) and per-epoch training
    histories (``histories/<run>.json``: ALIGNN per recipe, SchNet, CGCNN, each GemNet-T member
    of the ensemble, and the member trained alone on a card), so that parity plots and learning
    curves of the run can be drawn without its weights."""
    run_dir, keep = Path(run_dir), Path(out_dir) / "runs"
    (keep / "histories").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for src in [run_dir / f"{k}.parquet" for k in ("schnet", "cgcnn")] + sorted(
        run_dir.glob("alignn_*.parquet")
    ):
        if src.exists():
            written.append(Path(shutil.copy2(src, keep / src.name)))
    histories: dict[str, list[dict[str, Any]]] = {
        p.stem: json.loads(p.read_text())["history"] for p in sorted(run_dir.glob("alignn_*.json"))
    }
    for kind in ("schnet", "cgcnn"):
        if (run_dir / "work" / kind / "history.json").exists():
            histories[kind] = json.loads((run_dir / "work" / kind / "history.json").read_text())
    for prefix, where in (("gemnet_t_seed", "work"), ("gemnet_t_alone_seed", "alone/work")):
        for path in sorted(run_dir.glob(f"{where}/member_*/history.json")):
            seed = path.parent.name.split("_")[-1]
            histories[f"{prefix}{seed}"] = json.loads(path.read_text())
    for name, history in histories.items():
        dst = keep / "histories" / f"{name}.json"
        dst.write_text(json.dumps(history) + "\n")
        written.append(dst)
    return written


def record_gpu_run(
    run_dir: str | Path,
    *,
    params_path: str | Path = "profiles/gpu.yaml",
    out_dir: str | Path = "results/gpu",
    root: str | Path = ".",
    n_bootstrap: int = 2000,
    half_tolerance_ev: float = 1e-3,
) -> dict[str, Any]:
    """Write ``accuracy.json``, ``speed.json``, ``training.json``, predictions and members."""
    from tracer.dataset import GraphDataset
    from tracer.ensemble import predict_members

    run_dir, out_dir, root = Path(run_dir), Path(out_dir), Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = load_params(params_path)
    dataset = params["dataset"]["name"]
    paths = Paths(dataset, root)
    split = load_split(paths.split)
    frame = pd.read_parquet(run_dir / "gemnet_t.parquet")
    frame.to_parquet(out_dir / "gemnet_t.parquet", index=False)
    training = json.loads((run_dir / "training.json").read_text())
    members_info = training["members"]
    device = next(iter(members_info.values()))["device"]

    test_ids = list(split["test"])
    test = frame[frame["set"] == "test"].set_index("id").loc[test_ids]
    table = read_table(paths.table, structures=False)
    y = targets_by_set(table, split)
    dummy = MeanPredictor().fit(y["train"]).predict(len(test_ids))
    results = {"dummy": evaluate(y["test"], dummy, n_resamples=n_bootstrap)}
    results.update(ensemble_accuracy("gemnet_t", test, n_resamples=n_bootstrap))
    baselines, alignn = baseline_results(run_dir, test_ids, n_resamples=n_bootstrap)
    results.update(baselines)
    keep_run_records(run_dir, out_dir)
    prov = provenance(
        params=params,
        dataset_sha256=split["dataset_sha256"],
        split_sha256=split["split_sha256"],
        wall_time_s=training["wall_time_s"],
        device=device,
        extra={"profile": str(params_path)},
    )
    write_metrics(
        out_dir / "accuracy.json",
        {"dataset": dataset, "n_test": len(test_ids), "unit": "eV/atom", "models": results},
        prov,
    )
    accuracy_table(results).to_markdown(out_dir / "table1_accuracy.md", index=False, floatfmt=".4f")
    write_metrics(
        out_dir / "training.json",
        {
            "dataset": dataset,
            **training,
            "best_val_mae_mean": float(np.mean([m["best_val_mae"] for m in members_info.values()])),
        },
        prov,
    )

    speed_src = run_dir / "speed.json"
    if speed_src.exists():
        raw = json.loads(speed_src.read_text())
        named = speed_models_for_profile(raw["models"], params)
        reach = times_to_alignn_best(run_dir, alignn) if alignn else None
        models = {
            name: {
                "params": m["params"],
                "s_per_epoch": m["s_per_epoch"],
                "time_to_alignn_best_val_s": reach.get(name) if reach else None,
                "infer_structures_per_s": m["infer_structures_per_s"],
                "peak_mem_gib": m["peak_mem_gib"],
                "batch_size": m["batch_size"],
                "train_structures_per_s": m["train_structures_per_s"],
                "epoch_times_s": m["epoch_times_s"],
                "graph_build_s": m["graph_build_s"],
                **{k: m[k] for k in ("max_neighbors", "precision", "cuda_graphs") if k in m},
                "timed_as": m.get("timed_as", name),
            }
            for name, m in named.items()
        }
        alignn_s = models.get("alignn", {}).get("s_per_epoch")
        write_metrics(
            out_dir / "speed.json",
            {
                "device": raw["device"],
                "n_train": raw["n_train"],
                "timed_epochs": raw["timed_epochs"],
                "models": models,
                "time_to_alignn_best_val_s": reach,  # from the training run's histories
                "epoch_time_ratio_gemnet_over_alignn": (
                    models["gemnet_t"]["s_per_epoch"] / alignn_s if alignn_s else None
                ),
            },
            {
                **prov,
                "device": raw["device"],
                "wall_time_s": raw.get("wall_time_s"),
                "note": "speed measured by benchmarks/train_speed.py in its own run",
            },
        )

    # the ensemble itself, in half precision if that is harmless on the test set
    members = sorted(run_dir.glob("member_*.pt"), key=member_seed)
    data = GraphDataset.load(run_dir / "graphs.pt") if (run_dir / "graphs.pt").exists() else None
    half_dir = out_dir / "members"
    half_paths = [half_precision_member(m, half_dir / m.name) for m in members]
    check: dict[str, Any] = {"tolerance_ev_per_atom": half_tolerance_ev}
    if data is None:
        from tracer.dataset import structures_to_graphs

        full = read_table(paths.table)
        cfg = json.loads(json.dumps(torch.load(members[0], weights_only=False)["graph"]))
        sub = full.set_index("id").loc[test_ids]
        data = structures_to_graphs(
            test_ids,
            list(sub["structure"]),
            list(sub["target"]),
            cutoff=cfg["cutoff"],
            max_neighbors=cfg["max_neighbors"],
        )
    idx = data.index_of(test_ids)
    full_p = predict_members(members, data, idx, device="cpu")
    half_p = predict_members(half_paths, data, idx, device="cpu")
    cols = [c for c in full_p.columns if c.startswith("member_")]
    diff = float(np.abs(full_p[cols].to_numpy() - half_p[cols].to_numpy()).max())
    check["members_checked"] = cols
    check["max_abs_diff_ev_per_atom"] = diff
    check["passed"] = diff < half_tolerance_ev and len(cols) == len(members_info)
    # the member files here, run on this CPU, give the test predictions recorded on the GPU
    check["max_abs_diff_to_recorded_member_predictions"] = float(
        np.abs(full_p[cols].to_numpy() - test[cols].to_numpy()).max()
    )
    if not check["passed"]:
        shutil.rmtree(half_dir)
    (out_dir / "half_precision_check.json").write_text(json.dumps(check, indent=1) + "\n")
    return {"accuracy": results, "half_precision": check}


# --------------------------------------------------------------------------------------------
# the domain and transfer studies of a GPU run (tracer study; possibly unfinished)
# --------------------------------------------------------------------------------------------
def study_run_states(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every run of a study folder (:func:`tracer.studies.train_runs`): finished (its summary
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


def _study_test_metrics(folder: Path, name: str) -> dict[str, float]:
    from tracer.studies import test_predictions

    test = test_predictions(folder, name)
    return point_metrics(test["y_true"].to_numpy(), test["y_pred"].to_numpy())


def gpu_domain_record(folder: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """``domain.json`` of a GPU run's domain study, finished or not: per variant the test
    metrics of its finished seeds (means), parameters (of the model the profile builds),
    median s/epoch and, for every run, epochs run, best validation MAE and the validation MAE
    at the last epoch every run of the study reached (so that unfinished runs still compare).
    ``status`` says ``RUN`` only when every run finished."""
    from tracer.models.baselines import build_model
    from tracer.models.domain import DomainGemNetTConfig
    from tracer.models.gemnet import GemNetTConfig

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
        status = "RUN" if not missing and not unfinished else (
            f"PARTIAL: device time ran out; unfinished {unfinished}, not started {missing}"
        )  # fmt: skip
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
        "note": "s/epoch measured with two processes sharing each H100 under MPS",
    }


def gpu_transfer_record(
    folder: str | Path, *, targets: pd.DataFrame, in_domain_sigma: Any, status: dict[str, Any]
) -> dict[str, Any]:
    """``transfer.json`` of a GPU run's transfer study (``tracer study transfer``): zero-shot
    of the pre-trained members (``zero_shot.parquet``) with the unit check, the fine-tuned
    ensemble of the members that finished (``fine_tuned.n_members``), and every run's state
    (the learning curve is reported only when all its runs finished). ``targets``: the
    perovskites stage's targets table indexed by id."""
    from tracer.studies import per_atom_and_cell, test_predictions
    from tracer.transfer import unit_check, zero_shot_summary

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
    out["learning_curve"] = (
        "NOT RUN: device time ran out before its runs finished"
        if not curve or not all(states[n]["finished"] for n in curve)
        else "see tracer.studies.transfer_report"
    )
    return out


def record_gpu_studies(
    run_dir: str | Path,
    *,
    params_path: str | Path = "profiles/gpu.yaml",
    out_dir: str | Path = "results/gpu",
    root: str | Path = ".",
) -> dict[str, Any]:
    """Write ``domain.json`` and ``transfer.json`` of a GPU run of ``tracer study`` (folders
    ``domain/`` and ``transfer/`` with ``zero_shot.parquet``, as ``tracer study`` writes them,
    models left out) and keep its small records under ``out_dir/studies``. The perovskites'
    targets come from this checkout's perovskites stage, the in-domain σ from the committed
    ensemble's predictions."""
    from tracer.stages import PEROVSKITES

    run_dir, out_dir, root = Path(run_dir), Path(out_dir), Path(root)
    params = load_params(params_path)
    keep = out_dir / "studies"
    if keep.exists():
        shutil.rmtree(keep)
    shutil.copytree(run_dir, keep, ignore=shutil.ignore_patterns("*.pt", "*.tmp", "*.log"))
    train_s = sum(
        json.loads(p.read_text())[-1]["wall_time_s"]
        for p in run_dir.glob("*/**/work/*/history.json")
    )
    prov = provenance(params=params, dataset_sha256=None, split_sha256=None, wall_time_s=train_s,
                      extra={"profile": str(params_path), "run_dir": "studies"})  # fmt: skip
    domain = gpu_domain_record(run_dir / "domain", params)
    write_metrics(out_dir / "domain.json", {"dataset": params["dataset"]["name"],
                                            "unit": "eV/atom", **domain}, prov)  # fmt: skip
    perov = root / "data" / "processed" / PEROVSKITES
    status = json.loads((perov / "status.json").read_text())
    frame = pd.read_parquet(out_dir / "gemnet_t.parquet")
    transfer = gpu_transfer_record(
        run_dir,
        targets=pd.read_parquet(perov / "targets.parquet").set_index("id"),
        in_domain_sigma=frame.loc[frame["set"] == "test", "std"],
        status=status,
    )
    write_metrics(out_dir / "transfer.json", transfer, prov)
    return {"domain": domain, "transfer": transfer}
