"""Recording a GPU run (made with ``tracer train-ensemble`` on a machine without DVC) under
``results/flla_full/``: metrics with the keys of ``METRICS.md``, predictions, speed, and the
ensemble
in half precision where that moves predictions by less than a tolerance (eV/atom).

Every number is computed here from the run's own files with the same functions the pipeline
uses (:func:`tracer.pipeline.accuracy_stages.ensemble_accuracy`,
:func:`tracer.analysis.accuracy.evaluate`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tracer.analysis.accuracy import accuracy_table, evaluate
from tracer.data.splits import load_split
from tracer.data.table import read_table
from tracer.graphs.dataset import GraphDataset, structures_to_graphs
from tracer.inference.ensemble import member_seed, predict_members
from tracer.inference.predict import CALIBRATION, write_manifest
from tracer.models.dummy import MeanPredictor
from tracer.pipeline.accuracy_stages import ensemble_accuracy
from tracer.pipeline.config import load_params
from tracer.pipeline.data_stages import targets_by_set
from tracer.pipeline.paths import RUN_OF_RECORD, Paths
from tracer.pipeline.provenance import git_state, provenance, write_metrics
from tracer.pipeline.release import half_precision_member
from tracer.pipeline.speed_records import _compiled_note, speed_models_for_profile
from tracer.training.alignn import time_to_reach

log = logging.getLogger(__name__)


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
    alignn, best = alignn_by_validation(
        summaries, {r: scored(run_dir / f"alignn_{r}.parquet") for r in summaries}
    )
    results["alignn"] = alignn
    return results, summaries[best]


def alignn_by_validation(
    summaries: dict[str, dict[str, Any]], test_metrics: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], str]:
    """The ALIGNN entry of a run: the recipe with the lowest best validation MAE (eV/atom; chosen
    on validation only) with its test metrics, ``recipe``, and every recipe's validation and
    test MAE under ``recipes``. Returns ``(entry, chosen recipe)``."""
    best = min(summaries, key=lambda r: summaries[r]["best_val_mae"])
    recipes = {
        r: {"best_val_mae": float(summaries[r]["best_val_mae"]), "test_mae": test_metrics[r]["mae"]}
        for r in summaries
    }
    return {**test_metrics[best], "recipe": best, "recipes": recipes}, best


def rescore_alignn(
    results_dir: str | Path = RUN_OF_RECORD, *, n_bootstrap: int = 2000
) -> str:
    """Choose ALIGNN's recipe again from a results folder's kept run records
    (``runs/alignn_<recipe>.parquet`` and ``runs/histories/alignn_<recipe>.json``, e.g. after a
    recipe was trained later) and rewrite ``accuracy.json``'s ``alignn`` entry and
    ``table1_accuracy.md``; every other entry stays as it was. Returns the chosen recipe."""
    results_dir = Path(results_dir)
    acc = json.loads((results_dir / "accuracy.json").read_text())
    runs = results_dir / "runs"
    test_ids = None
    summaries, metrics = {}, {}
    for path in sorted(runs.glob("alignn_*.parquet")):
        recipe = path.stem.removeprefix("alignn_")
        history = json.loads((runs / "histories" / f"{path.stem}.json").read_text())
        summaries[recipe] = {"best_val_mae": min(float(h["val_mae"]) for h in history)}
        frame = pd.read_parquet(path)
        test = frame[frame["set"] == "test"].set_index("id")
        test_ids = list(test.index) if test_ids is None else test_ids
        if sorted(test.index) != sorted(test_ids) or len(test_ids) != acc["n_test"]:
            raise ValueError(f"{path}: its test set is not the record's ({acc['n_test']} ids)")
        test = test.loc[test_ids]
        metrics[recipe] = evaluate(test["y_true"], test["y_pred"], n_resamples=n_bootstrap)
    if not summaries:
        raise FileNotFoundError(f"{runs}: no alignn_<recipe>.parquet")
    acc["models"]["alignn"], best = alignn_by_validation(summaries, metrics)
    prov = acc.pop("provenance")
    prov["alignn_rescored"] = {"by": "tracer.pipeline.records.rescore_alignn", **git_state()}
    write_metrics(results_dir / "accuracy.json", acc, prov)
    accuracy_table(acc["models"]).to_markdown(
        results_dir / "table1_accuracy.md", index=False, floatfmt=".4f"
    )
    return best


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


def record_run(
    run_dir: str | Path,
    *,
    params_path: str | Path = "profiles/full.yaml",
    out_dir: str | Path = RUN_OF_RECORD,
    root: str | Path = ".",
    n_bootstrap: int = 2000,
    half_tolerance_ev: float = 1e-3,
    ship_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``accuracy.json``, ``speed.json``, ``training.json``, predictions, and the members
    in half precision into ``ship_dir`` (only when given: ``tracer record-run --ship-to``, e.g.
    the package's :data:`PRETRAINED_DIR`) when their test predictions stay within
    ``half_tolerance_ev`` of the float32 members' (else nothing is shipped), under a manifest;
    without ``ship_dir`` the check runs in a temporary folder. ``tracer release`` then gives the
    shipped folder its calibration and model card (:func:`tracer.pipeline.release.release`)."""

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
            # the profile may have changed since: say how these members' forward pass ran
            "compiled": _compiled_note(members_info),
        },
        prov,
    )

    speed_src = run_dir / "speed.json"
    if speed_src.exists():
        raw = json.loads(speed_src.read_text())
        named = speed_models_for_profile(raw["models"], params)
        reach = times_to_alignn_best(run_dir, alignn) if alignn else None
        if reach is not None:  # the members' card; the epoch times may come from another run
            reach["gemnet_t_members_device"] = device
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
    scratch = tempfile.TemporaryDirectory()  # the half-precision check when nothing is shipped
    half_dir = Path(ship_dir) if ship_dir is not None else Path(scratch.name)
    half_paths = [half_precision_member(m, half_dir / m.name) for m in members]
    check: dict[str, Any] = {"tolerance_ev_per_atom": half_tolerance_ev}
    if data is None:

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
    check["stored_dtype"] = "float16 matrices, float32 vectors"
    check["shipped_to"] = (str(half_dir.resolve().relative_to(Path.cwd().resolve()))
                           if ship_dir is not None and check["passed"] else None)  # fmt: skip
    if ship_dir is not None and not check["passed"]:
        shutil.rmtree(half_dir)
    write_metrics(out_dir / "half_precision_check.json", check,
                  {**prov, "device": "cpu", "note": "members re-run on a CPU"})  # fmt: skip
    if check["shipped_to"]:  # calibration and model card: `tracer release`;
        # the applicability domain: `tracer fit-domain` (both belong to the members they fit)
        for name in ("recalibration.json", CALIBRATION, "MODEL_CARD.md", "applicability.pt",
                     "ood.json"):  # fmt: skip
            (half_dir / name).unlink(missing_ok=True)
        write_manifest(half_dir)
        log.warning("%s holds the new members; `dvc repro run_of_record`, then `tracer "
                    "release`, write their calibration and model card", half_dir)  # fmt: skip
    scratch.cleanup()
    return {"accuracy": results, "half_precision": check}


