"""Recording a GPU run (made with ``tracer train-ensemble`` on a machine without DVC) under
``results/gpu/``: metrics with the keys of ``METRICS.md``, predictions, speed, and the ensemble
in half precision where that moves predictions by less than a tolerance (eV/atom).

Every number is computed here from the run's own files with the same functions the pipeline
uses (:func:`tracer.stages.ensemble_accuracy`, :func:`tracer.accuracy.evaluate`).
"""

from __future__ import annotations

import json
import logging
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
from tracer.predict import CALIBRATION, PRETRAINED_DIR, write_manifest
from tracer.provenance import git_state, provenance, write_metrics
from tracer.splits import load_split
from tracer.stages import Paths, _fine_tuned_test, ensemble_accuracy, targets_by_set
from tracer.table import read_table

log = logging.getLogger(__name__)


def half_precision_member(src: str | Path, dst: str | Path) -> Path:
    """Copy a member file with its weight matrices (floating tensors of two or more dimensions)
    stored as float16; vectors (biases, norms, fitted scale factors) stay float32. Loading
    casts them back to the model's float32 parameters."""
    record = torch.load(Path(src), map_location="cpu", weights_only=False)
    record["state_dict"] = {
        k: (v.half() if v.is_floating_point() and v.dim() >= 2 else v)
        for k, v in record["state_dict"].items()
    }
    record["stored_dtype"] = "float16 matrices, float32 vectors"
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
    return (m.get("max_neighbors"), m["batch_size"], m.get("precision"), m["cuda_graphs"], buckets,
            bool(m.get("compiled", False)))  # fmt: skip


def _compiled_note(members: dict[str, Any]) -> str:
    """Whether the run's members trained through ``torch.compile`` (``train.compile``)."""
    flags = {m.get("compiled") for m in members.values()}
    if flags == {None}:
        return "no: trained before train.compile existed (eager forward inside CUDA graphs)"
    if flags == {True}:
        return "yes"
    if flags == {False}:
        return "no"
    return f"mixed: {sorted(str(f) for f in flags)}"


def speed_models_for_profile(raw_models: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The timings of a ``train_speed.py`` run keyed for the record: ``gemnet_t`` is the one
    entry timed with the profile's settings (neighbours, batch size, precision, CUDA graphs
    and their shape buckets, compilation), every other GemNet-T entry is named by those
    settings (or keeps its name when they are the profile's: a variant of model settings), and
    the other models keep their names. ValueError when no entry matches the profile."""
    t = params["train"]
    want = (
        params["graph"]["max_neighbors"],
        t["batch_size"],
        t["precision"],
        bool(t["cuda_graphs"]),
        t["shape_buckets"] if t["cuda_graphs"] else None,
        bool(t.get("compile", False)),
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
        if settings == want:  # a variant of other model settings (e.g. atom features)
            out[name] = {**m, "timed_as": name}
            continue
        nb, bs, prec, graphed, buckets, comp = settings
        mode = (f"graphs{buckets}" if graphed else "eager") + ("_compiled" if comp else "")
        key = f"gemnet_t_nb{nb}_b{bs}_{prec}_{mode}"
        out[key if key not in out else name] = {**m, "timed_as": name}  # a second: its own name
    if match is None:
        raise ValueError(
            f"speed.json has no GemNet-T timing with the profile's settings "
            f"(max_neighbors, batch_size, precision, cuda_graphs, shape_buckets, compile) = {want}"
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


def rescore_alignn(results_dir: str | Path = "results/gpu", *, n_bootstrap: int = 2000) -> str:
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
    prov["alignn_rescored"] = {"by": "tracer.records.rescore_alignn", **git_state()}
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


def record_gpu_run(
    run_dir: str | Path,
    *,
    params_path: str | Path = "profiles/gpu.yaml",
    out_dir: str | Path = "results/gpu",
    root: str | Path = ".",
    n_bootstrap: int = 2000,
    half_tolerance_ev: float = 1e-3,
    ship_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``accuracy.json``, ``speed.json``, ``training.json``, predictions, and the members
    in half precision into ``ship_dir`` (default: the package's :data:`PRETRAINED_DIR`) when
    their test predictions stay within ``half_tolerance_ev`` of the float32 members' (else
    nothing is shipped), under a manifest; the gpu_results stage then gives that folder its
    recalibration and model card from the run's reliability records (:func:`finish_shipped`)."""
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
    half_dir = Path(ship_dir) if ship_dir is not None else PRETRAINED_DIR
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
    check["stored_dtype"] = "float16 matrices, float32 vectors"
    check["shipped_to"] = str(half_dir.resolve().relative_to(Path.cwd().resolve()))
    if not check["passed"]:
        shutil.rmtree(half_dir)
        check["shipped_to"] = None
    write_metrics(out_dir / "half_precision_check.json", check,
                  {**prov, "device": "cpu", "note": "members re-run on a CPU"})  # fmt: skip
    if check["passed"]:  # calibration and model card: the gpu_results stage (finish_shipped);
        # the applicability domain: `tracer fit-domain` (both belong to the members they fit)
        for name in ("recalibration.json", CALIBRATION, "MODEL_CARD.md", "applicability.pt",
                     "ood.json"):  # fmt: skip
            (half_dir / name).unlink(missing_ok=True)
        write_manifest(half_dir)
        log.warning("%s holds the new members; `dvc repro gpu_results` writes their "
                    "recalibration and model card", half_dir)  # fmt: skip
    return {"accuracy": results, "half_precision": check}


def stale_records(results_dir: str | Path) -> str | None:
    """Why ``failures.json`` and ``uncertainty.json`` (written by the gpu_results stage) do not
    belong to the ensemble of ``accuracy.json`` (written by ``record-gpu-run``), or None when
    they do: their test MAE and test-set size must be those of the recorded ensemble."""
    results_dir = Path(results_dir)
    try:
        acc, fail, unc = (json.loads((results_dir / f"{n}.json").read_text())
                          for n in ("accuracy", "failures", "uncertainty"))  # fmt: skip
    except FileNotFoundError as err:
        return f"{err.filename} is missing"
    mae = acc["models"]["gemnet_t_ensemble"]["mae"]
    if abs(fail["mae"] - mae) > 1e-9 or unc["n_test"] != acc["n_test"]:
        return (f"{results_dir}/failures.json and uncertainty.json are of another ensemble "
                f"(test MAE {fail['mae']:.5f}, accuracy.json: {mae:.5f})")  # fmt: skip
    return None


def finish_shipped(folder: str | Path, results_dir: str | Path, params: dict[str, Any]) -> bool:
    """Give a shipped folder whose members belong to ``results_dir``'s run its recalibration,
    model card and manifest (:func:`ship_pretrained`) once the run's reliability records are
    its own; True when written. A folder of other members is left alone."""
    folder, results_dir = Path(folder), Path(results_dir)
    check_path = results_dir / "half_precision_check.json"
    if not check_path.exists() or stale_records(results_dir) is not None:
        return False
    check = json.loads(check_path.read_text())
    if not check.get("passed") or not check.get("shipped_to"):
        return False
    if Path(check["shipped_to"]).resolve() != folder.resolve():
        return False
    ship_pretrained(folder, results_dir, params)
    return True


def ship_pretrained(folder: str | Path, results_dir: str | Path, params: dict[str, Any]) -> Path:
    """Finish a shipped ensemble folder (half-precision ``member_*.pt`` already there):
    ``calibration.json`` (the split-conformal quantile the run's uncertainty analysis fitted on
    its validation set, with its measured test coverage, and the σ-scaling factor beside it),
    ``MODEL_CARD.md`` (data, split, model, metrics, intended use, known failure
    regions, all read from ``results_dir``) and ``MANIFEST.json`` (sha256 of every file, checked
    by :meth:`tracer.predict.Ensemble.load`). Needs the run's ``accuracy.json``,
    ``training.json``, ``half_precision_check.json``, ``uncertainty.json`` and
    ``failures.json`` (the last two from the gpu_results stage)."""
    folder, results_dir = Path(folder), Path(results_dir)
    stale = stale_records(results_dir)
    if stale is not None:
        raise ValueError(f"{stale}: run `dvc repro gpu_results` first")

    def read(name: str) -> dict[str, Any]:
        return json.loads((results_dir / name).read_text())

    names = ("uncertainty", "failures", "accuracy", "training", "half_precision_check")
    unc, fail, acc, train, half = (read(f"{n}.json") for n in names)
    calibration = {"method": "split-conformal, σ-normalised residuals |y - mean| / σ",
                   "scale_or_quantile": unc["conformal_quantile"],
                   "interval": "mean ± scale_or_quantile · σ (eV/atom)",
                   "test_coverage95": unc["conformal_coverage95"],
                   "n_test": unc["n_test"],
                   "mean_halfwidth_test_ev_per_atom": unc["conformal_mean_halfwidth"],
                   "fitted_on": f"validation set ({unc['n_val']} structures)",
                   "sigma_scale": unc["sigma_scale"],
                   "test_coverage95_sigma_scaled": unc["coverage95_recal"],
                   "source": str(results_dir / "uncertainty.json")}  # fmt: skip
    (folder / CALIBRATION).write_text(json.dumps(calibration, indent=1) + "\n")
    if (folder / "recalibration.json").exists():  # the σ-scaling file it replaces
        (folder / "recalibration.json").unlink()
    transfer = read("transfer.json") if (results_dir / "transfer.json").exists() else None
    domain = json.loads((folder / "ood.json").read_text()) if (folder / "ood.json").exists() \
        else None  # fmt: skip
    card = model_card(acc, train, unc, fail, half, params, transfer=transfer, domain=domain)
    (folder / "MODEL_CARD.md").write_text(card)
    write_manifest(folder)
    return folder


def model_card(
    acc: dict,
    train: dict,
    unc: dict,
    fail: dict,
    half: dict,
    params: dict,
    *,
    transfer: dict | None = None,
    domain: dict | None = None,
) -> str:
    """The shipped ensemble's model card (Markdown), every number read from the run's records
    (``transfer``: the run's ``transfer.json``, for the zero-shot error on perovskites;
    ``domain``: its ``applicability.json``, the measured out-of-domain flags)."""
    m, s = acc["models"]["gemnet_t_ensemble"], acc["models"]["gemnet_t_single"]
    members = train["members"]
    first = next(iter(members.values()))
    prov = acc["provenance"]
    split = json.loads(Path(Paths(acc["dataset"]).split).read_text())
    noise = params["train"].get("position_noise_angstrom", 0.0)
    noise_note = f"; atoms displaced by Gaussian noise of σ = {noise} Å at each training step"
    noise_note = noise_note if noise else ""

    def groups(key: str) -> list[str]:
        rows = [(k, v) for k, v in fail[key].items() if v["n"] and v["mae"] > 1.5 * fail["mae"]]
        return [f"- {key.removeprefix('by_')} {k}: MAE {v['mae']:.3f} eV/atom over {v['n']} test "
                f"structures (mean σ {v['mean_sigma']:.3f})" for k, v in rows]  # fmt: skip

    worst = ", ".join(f"{w['formula']} ({w['abs_error']:.2f})" for w in fail["worst"][:5])
    shift = []
    if transfer and isinstance(transfer.get("zero_shot"), dict):
        z = transfer["zero_shot"]
        # the transfer study may have run with members of other settings than these
        same = transfer["provenance"]["params_sha256"] == prov["params_sha256"]
        whose = "" if same else " of the previous members (other model settings)"
        shift = [f"- Other reference energies: on {transfer['dataset']} perovskites the zero-shot "
                 f"MAE{whose} is {z['mae_ev_per_atom']:.2f} eV/atom ({z['n']} test cells; their "
                 "elemental references differ from the Materials Project's); fine-tune before "
                 "use on such data."]  # fmt: skip
    ood = []
    if domain:
        rates = ", ".join(f"{k} {v['flagged_fraction']:.0%}"
                          for k, v in domain["shift_detection"].items())  # fmt: skip
        ood = [
            "",
            "## Out of domain (`out_of_domain` column)",
            f"- Flags {domain['flagged_fraction_test']:.1%} of the test split "
            f"({domain['n_flagged_test']} of {domain['n_test']}); their MAE "
            f"{domain['mae_flagged']:.3f} vs {domain['mae_unflagged']:.3f} eV/atom for "
            "the others (`ood.json`)",
            f"- Made-up shifted copies of the test structures flagged: {rates}",
            "- Checks: elements never or rarely (< "
            f"{domain['min_element_count']} structures) in training; shortest bond, bond lengths "
            "against the training median for each element pair, coordination, volume per atom "
            "and widest empty slab outside the training range (tails of "
            f"{domain['range_quantile']:.2%} cut, chosen on validation); distance to the "
            f"{domain['representation_k']} nearest training structures "
            "in the model's representation above its validation "
            f"{domain['representation_quantile']:.0%} quantile",
        ]
    lines = [
        "# Model card: TRACER GemNet-T ensemble, FLLA formation energy (gpu profile)",
        "",
        "Written by the `gpu_results` stage (`tracer.records.ship_pretrained`) from the "
        "committed records in `results/gpu/`; do not edit by hand.",
        "",
        "## What it predicts",
        "DFT formation energy per atom (eV/atom, Materials Project references as in FLLA) of an "
        "inorganic crystal, with the spread of five members (σ) and a 95% interval "
        f"mean ± {unc['conformal_quantile']:.2f} σ (split-conformal quantile of the normalised "
        "residuals |y − mean| / σ, fitted on the validation set): on the held-out test split it "
        f"covers {unc['conformal_coverage95']:.3f} of {unc['n_test']} structures (mean half-width "
        f"{unc['conformal_mean_halfwidth']:.3f} eV/atom). Each prediction also says whether the "
        "structure lies outside the training domain (`applicability.pt`, fitted on the training "
        "structures; its measured behaviour in `applicability.json` of the run).",
        "",
        "## Training data and split",
        f"- Dataset: {acc['dataset']} (Faber et al. 2015; 3,938 Materials Project crystals), "
        f"sha256 {prov.get('dataset_sha256')}",
        f"- Split: seeded random, seed {split.get('seed')}, "
        f"{len(split['train'])}/{len(split['val'])}/{len(split['test'])} train/val/test; "
        "target scaling from training data only",
        "",
        "## Model",
        f"- GemNet-T (triplet interactions with angles), {first['num_params']:,} parameters per "
        f"member, {len(members)} members (seeds {', '.join(members)}); graph cutoff "
        f"{params['graph']['cutoff_angstrom']} Å, at most {params['graph']['max_neighbors']} "
        "neighbours",
        f"- Trained on {first['device']} (profile `gpu`), best epoch on validation MAE; "
        f"forward pass compiled: {_compiled_note(members)}{noise_note}",
        f"- Stored weights: {half['stored_dtype']}; largest change of a member's test "
        f"prediction against float32: {half['max_abs_diff_ev_per_atom']:.1e} eV/atom "
        f"(tolerance {half['tolerance_ev_per_atom']:.0e})",
        "",
        "## Test metrics (eV/atom, 95% bootstrap intervals)",
        f"- Ensemble: MAE {m['mae']:.4f} [{m['mae_ci95'][0]:.4f}, {m['mae_ci95'][1]:.4f}], "
        f"RMSE {m['rmse']:.4f}, R² {m['r2']:.3f} on {m['n']} structures",
        f"- One member: MAE {s['mae']:.4f} ± {s.get('mae_std', float('nan')):.4f} "
        "(mean ± std over members)",
        f"- Uncertainty: Spearman(σ, |error|) {unc['spearman']:.2f}, AUROC of σ for the worst "
        f"10% {unc['auroc_top10']:.2f}; 95% interval coverage {unc['coverage95']:.2f} from raw σ, "
        f"{unc['coverage95_recal']:.2f} after σ-scaling (× {unc['sigma_scale']:.2f}), "
        f"{unc['conformal_coverage95']:.3f} with the shipped split-conformal interval",
        "",
        "## Intended use",
        "Screening candidate crystals from the chemistries of the Materials Project: rank by "
        "predicted formation energy, and send the structures flagged `check_with_dft` (wide "
        "interval) or the `--budget` most uncertain to DFT. Not a substitute for DFT on "
        "structures far from the training data.",
        "",
        "## Known failure regions (from the test set's failure analysis)",
        *groups("by_natoms"),
        *groups("by_nelements"),
        *groups("by_energy"),
        *groups("by_chemistry"),
        f"- Worst test predictions (absolute error, eV/atom): {worst}",
        *shift,
        f"- {len(split['train']):,} training structures: elements or structure types rare in "
        "FLLA get wide intervals or, worse, confident errors; σ ranks errors but does not "
        "bound them.",
        *ood,
        "",
    ]
    return "\n".join(lines)


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


def gpu_domain_record(
    folder: str | Path, params: dict[str, Any], *, second_domain_ids: Any = ()
) -> dict[str, Any]:
    """``domain.json`` of a GPU run's domain study, finished or not: per variant the test
    metrics of its finished seeds (means), parameters (of the model the profile builds),
    median s/epoch and, for every run, epochs run, best validation MAE and the validation MAE
    at the last epoch every run of the study reached (so that unfinished runs still compare).
    ``status`` says ``RUN`` only when every run finished; then each variant also carries what
    the pipeline's own report (:func:`tracer.studies.domain_report`) gives — MAE per seed with
    its interval, device, peak memory and, for the two-database check, the MAE per domain (test
    ids in ``second_domain_ids`` are domain 1, the others domain 0)."""
    from tracer.models.baselines import build_model
    from tracer.models.domain import DomainGemNetTConfig
    from tracer.models.gemnet import GemNetTConfig
    from tracer.studies import domain_report, test_predictions

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
        "note": "s/epoch and peak memory were measured while two to four runs shared each H100 "
        "under MPS (calls on 4x, 2x and 1x H100 hosts): a rough comparison of the variants only",
    }


def gpu_transfer_record(
    folder: str | Path, *, targets: pd.DataFrame, in_domain_sigma: Any, status: dict[str, Any]
) -> dict[str, Any]:
    """``transfer.json`` of a GPU run's transfer study (``tracer study transfer``): zero-shot
    of the pre-trained members (``zero_shot.parquet``) with the unit check, the fine-tuned
    ensemble of the members that finished (``fine_tuned.n_members``), and every run's state
    (the learning curve is reported only when all its runs finished). ``targets``: the
    perovskites stage's targets table indexed by id."""
    from tracer.studies import learning_curve, per_atom_and_cell, test_predictions
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
    perov = root / "data" / "processed" / PEROVSKITES
    targets = pd.read_parquet(perov / "targets.parquet").set_index("id")
    domain = gpu_domain_record(run_dir / "domain", params, second_domain_ids=targets.index)
    write_metrics(out_dir / "domain.json", {"dataset": params["dataset"]["name"],
                                            "unit": "eV/atom", **domain}, prov)  # fmt: skip
    status = json.loads((perov / "status.json").read_text())
    frame = pd.read_parquet(out_dir / "gemnet_t.parquet")
    transfer = gpu_transfer_record(
        run_dir,
        targets=targets,
        in_domain_sigma=frame.loc[frame["set"] == "test", "std"],
        status=status,
    )
    write_metrics(out_dir / "transfer.json", transfer, prov)
    return {"domain": domain, "transfer": transfer}


def gpu_study_figures(results_dir: str | Path = "results/gpu") -> dict[str, Any]:
    """Negative result 2 and the transfer of the committed ``gpu`` run (``domain.json``,
    ``transfer.json`` and ``studies/`` of :func:`tracer.records.record_gpu_studies`), drawn by
    the same figure code as the default profile's stages: ``domain_variants``,
    ``transfer_fine_tuned`` (parity of the fine-tuned ensemble on the perovskite test split) and
    ``transfer_learning_curve``, written next to those files. A study that did not finish on
    the GPU is skipped and named under ``skipped``."""
    from tracer.figures import domain_variants, parity, save_figure, transfer_learning_curve

    results_dir = Path(results_dir)
    domain = json.loads((results_dir / "domain.json").read_text())
    transfer = json.loads((results_dir / "transfer.json").read_text())
    figures: list[Path] = []
    skipped: dict[str, str] = {}
    if domain["status"] == "RUN" and domain["multi_domain"]["status"] == "RUN":
        figures += save_figure(domain_variants(domain), "domain_variants", results_dir)
    else:
        skipped["domain_variants"] = f"{domain['status']} / {domain['multi_domain']['status']}"
    if isinstance(transfer.get("fine_tuned"), dict):
        folder = results_dir / "studies" / "transfer"
        rows = pd.read_parquet(folder / "finetune_all_member0.parquet")
        fine = _fine_tuned_test(folder, rows.loc[rows["set"] == "test", "id"].tolist())
        title = f"fine-tuned ensemble on {transfer['dataset']} test split (eV/atom), gpu run"
        fig = parity(fine["y_true"], fine["mean"], sigma=fine["std"], title=title)
        figures += save_figure(fig, "transfer_fine_tuned", results_dir)
    else:
        skipped["transfer_fine_tuned"] = str(transfer.get("fine_tuned"))
    if isinstance(transfer.get("learning_curve"), list):
        fig = transfer_learning_curve(transfer["learning_curve"])
        figures += save_figure(fig, "transfer_learning_curve", results_dir)
    else:
        skipped["transfer_learning_curve"] = str(transfer.get("learning_curve"))
    return {"figures": figures, "skipped": skipped, "domain": domain, "transfer": transfer}
