"""``results/flla_full/scaleout.json`` from a run of ``benchmarks/scaleout.sh`` (two-GPU host) and
the
CPU scale-up measurement (``results/cpu/scale_up.json`` of ``benchmarks/scale_up.py``).

* ``members_parallel_speedup``: wall time of two members one after the other (two commands)
  over the wall time of the same two commands at once, one per GPU (as ``tracer train-parallel``
  runs the members' stage commands; ``walls.json``; runs without it: one process pool);
  ``members_parallel_time_ratio`` is its inverse (target ≤ 0.55);
* ``ddp_epoch_ratio``: median epoch time of one member with DDP on two GPUs over the same on one
  GPU, at the same effective batch (first epoch excluded; without per-epoch histories, the mean
  over all epochs, ``basis``; target ≤ 0.6), at the largest batch the
  run measured (``ddp_batch``); ``ddp_by_batch`` holds every batch measured, with each run's best
  validation MAE (same within noise at equal effective batch) and, where the histories hold
  them, the medians of the epoch's two parts, the steps (``train_s``) and validation (``val_s``);
  ``ddp_device`` names the host of the DDP runs when it was not the members' (``--ddp-device``);
* ``ddp_scaled`` (``--ddp-scaled-run-dir``): the same DDP comparison on a synthetic scale-up of
  FLLA (jittered copies, throughput only, ``--ddp-scaled-data`` says which), where an epoch has
  tens of steps rather than FLLA's three or four at these batches; ``None`` when not run;
* ``host_mem_peak_gib_130k``: peak resident memory of preprocessing and one training epoch over
  the ~130k-structure scale-up on the CPU machine (target < 24 GiB).

Usage: ``python benchmarks/scaleout_record.py --run-dir RUN``; ``--ddp-run-dir EARLIER`` takes the
DDP runs from an earlier run's folder (run folders or only their logs, ``ddp<n>_b<batch>.log``, with
``ddp_b<batch>.yaml``) when RUN measured the members only (``DDP=0 scaleout.sh``); both run
folders are named in the record.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tracer.data.splits import load_split
from tracer.pipeline.config import load_params
from tracer.pipeline.provenance import provenance, write_metrics


def _epoch_time(run: Path, epochs: int) -> tuple[float, list[float] | None, int, str]:
    """(epoch time s, per-epoch times or None, processes, basis): the median epoch after the
    first from the run's history; a run without one (trainers before history.json was written
    beside DDP checkpoints) gives its training time over all its epochs, read from its log."""
    found = sorted(run.glob("work/member_*/history.json"))
    if found:
        history = json.loads(found[0].read_text())
        times = [h["epoch_time_s"] for h in history]
        return statistics.median(times[1:] or times), times, history[-1]["processes"], "median"
    summary = _log_summary(run)
    return summary["train_time_s"] / epochs, None, summary["processes"], "mean incl. first"


def _part_median(run: Path, key: str) -> float | None:
    """Median after the first epoch of one part of the epoch (``train_s``: the steps, ``val_s``:
    validation), from histories that hold them (None otherwise)."""
    found = sorted(run.glob("work/member_*/history.json"))
    history = json.loads(found[0].read_text()) if found else []
    times = [h[key] for h in history if key in h]
    return statistics.median(times[1:] or times) if times else None


def _log_summary(run: Path) -> dict:
    """The summary line ``tracer train-ddp`` prints last into ``<run>.log``."""
    lines = Path(f"{run}.log").read_text().splitlines()
    return json.loads(next(x for x in reversed(lines) if x.startswith('{"best_epoch"')))


def _best_val(run: Path) -> float:
    found = sorted(run.glob("work/member_*/history.json"))
    if found:
        return min(h["val_mae"] for h in json.loads(found[0].read_text()))
    return _log_summary(run)["best_val_mae"]


def _ddp_by_batch(ddp_run: Path) -> dict[str, dict]:
    """Every batch a run folder measured on one and on two GPUs: epoch ratio, epoch times, best
    validation MAE and, where the histories hold them, the epoch's two parts."""
    ddp: dict[str, dict] = {}
    batches = {p.name.split("_b")[1].removesuffix(".log") for p in ddp_run.glob("ddp1_b*")}
    for batch in sorted(batches, key=int):
        one_dir, two_dir = ddp_run / f"ddp1_b{batch}", ddp_run / f"ddp2_b{batch}"
        epochs = load_params(ddp_run / f"ddp_b{batch}.yaml")["train"]["max_epochs"]
        one, one_times, p1, basis = _epoch_time(one_dir, epochs)
        two, two_times, p2, _ = _epoch_time(two_dir, epochs)
        assert (p1, p2) == (1, 2), (p1, p2)
        best = {"1": _best_val(one_dir), "2": _best_val(two_dir)}
        ddp[batch] = {"ratio": two / one, "epoch_s": {"1": one, "2": two}, "basis": basis,
                      "epoch_times_s": {"1": one_times, "2": two_times},
                      "best_val_mae": best, "epochs": epochs}  # fmt: skip
        for part in ("train_s", "val_s"):  # the epoch's two parts, where recorded
            t1, t2 = _part_median(one_dir, part), _part_median(two_dir, part)
            if t1 is not None and t2 is not None:
                ddp[batch][part] = {"1": t1, "2": t2, "ratio": t2 / t1}
    if not ddp:
        raise FileNotFoundError(f"{ddp_run}: no ddp1_b<batch> runs")
    return ddp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--device", required=True, help="the host's card name")
    ap.add_argument("--scale-up", default="results/cpu/scale_up.json")
    ap.add_argument("--split", default="data/splits/flla.json", help="the run's split file")
    ap.add_argument("--out", default="results/flla_full/scaleout.json")
    ap.add_argument("--ddp-run-dir", default=None, help="DDP runs of an earlier run (default: RUN)")
    ap.add_argument(
        "--ddp-device", default=None, help="card name of the DDP runs' host (default: --device)"
    )
    ap.add_argument(
        "--ddp-scaled-run-dir",
        default=None,
        help="DDP runs on a synthetic scale-up (throughput only; recorded beside FLLA's)",
    )
    ap.add_argument("--ddp-scaled-data", default=None, help="what the scale-up was (recorded)")
    args = ap.parse_args()
    run = Path(args.run_dir)
    walls_path = run / "walls.json"
    if walls_path.exists():  # whole commands, interpreter start included (scaleout.sh)
        walls = json.loads(walls_path.read_text())
        seq, par = walls["sequential_s"], walls["concurrent_commands_s"]
        par_dirs = ["cmd0", "cmd1"]
    else:  # runs before walls.json: train_ensemble's own wall time (graphs loaded to
        # predictions written), the two sequential commands added, against the process pool
        walls = None
        seq = sum(json.loads((run / f"seq{s}" / "training.json").read_text())["wall_time_s"]
                  for s in (0, 1))  # fmt: skip
        par = json.loads((run / "par" / "training.json").read_text())["wall_time_s"]
        par_dirs = ["par"]
    par_records = [json.loads((run / d / "training.json").read_text()) for d in par_dirs]
    # each member's own training time (epochs only), to tell fixed costs from training
    train_s = {
        "sequential": [
            m["train_time_s"]
            for s in (0, 1)
            for m in json.loads((run / f"seq{s}" / "training.json").read_text())["members"].values()
        ],
        "parallel": [m["train_time_s"] for r in par_records for m in r["members"].values()],
    }
    ddp_run = Path(args.ddp_run_dir) if args.ddp_run_dir else run
    ddp = _ddp_by_batch(ddp_run)
    largest = max(ddp, key=int)
    scaled = _ddp_by_batch(Path(args.ddp_scaled_run_dir)) if args.ddp_scaled_run_dir else None
    scale = json.loads(Path(args.scale_up).read_text())
    out = {
        "device": args.device,
        "members_parallel_speedup": seq / par,
        "members_parallel_time_ratio": par / seq,
        "members_sequential_s": seq,
        "members_parallel_s": par,
        "members_train_time_s": train_s,
        "members_parallel_how": "two commands at once, one per GPU (as tracer train-parallel)"
        if walls
        else "one process pool (train-ensemble --parallel 2), train_ensemble's own wall times",
        "walls_s": walls,
        "member_epochs": load_params(run / "members.yaml")["train"]["max_epochs"],
        "ddp_epoch_ratio": ddp[largest]["ratio"],
        "ddp_batch": int(largest),
        "ddp_by_batch": ddp,
        "ddp_device": args.ddp_device or args.device,
        "ddp_scaled": None
        if scaled is None
        else {
            "data": args.ddp_scaled_data,
            "epoch_ratio": scaled[max(scaled, key=int)]["ratio"],
            "batch": int(max(scaled, key=int)),
            "by_batch": scaled,
        },
        "run_dirs": {
            "members": str(run),
            "ddp": str(ddp_run),
            **({"ddp_scaled": args.ddp_scaled_run_dir} if scaled else {}),
        },
        "host_mem_peak_gib_130k": scale["host_mem_peak_gib_130k"],
        "scale_up": {
            k: scale[k]
            for k in ("n_structures", "n_edges", "graph_build_s", "epoch_s", "peak_rss_gib")
        },
        "targets": {
            "members_parallel_time_ratio": 0.55,
            "ddp_epoch_ratio": 0.6,
            "host_mem_peak_gib_130k": 24.0,
        },
    }
    split = load_split(args.split)
    prov = provenance(params=load_params(ddp_run / f"ddp_b{largest}.yaml"),
                      dataset_sha256=split["dataset_sha256"],
                      split_sha256=split["split_sha256"], wall_time_s=seq + par,
                      device=args.device, extra={"run": "benchmarks/scaleout.sh"})  # fmt: skip
    write_metrics(Path(args.out), out, prov)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
