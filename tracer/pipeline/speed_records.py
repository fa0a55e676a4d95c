"""Training speed of a run: per-epoch wall times summarised from the members' histories, and which
settings each speed belongs to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tracer.inference.ensemble import member_seed


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
