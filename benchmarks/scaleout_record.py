"""``results/gpu/scaleout.json`` from a run of ``benchmarks/scaleout.sh`` (two-GPU host) and the
CPU scale-up measurement (``results/cpu/scale_up.json`` of ``benchmarks/scale_up.py``).

* ``members_parallel_speedup``: wall time of two members one after the other over the wall time
  of the same two members at once, one per GPU (``members_parallel_time_ratio`` is its inverse;
  target ≤ 0.55);
* ``ddp_epoch_ratio``: median epoch time of one member with DDP on two GPUs over the same on one
  GPU, at the same effective batch (first epoch excluded; target ≤ 0.6);
* ``host_mem_peak_gib_130k``: peak resident memory of preprocessing and one training epoch over
  the ~130k-structure scale-up on the CPU machine (target < 24 GiB).

Usage: ``python benchmarks/scaleout_record.py --run-dir RUN``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tracer.config import load_params
from tracer.provenance import provenance, write_metrics


def _median_epoch(run: Path) -> tuple[float, list[float], int]:
    history = json.loads(next(run.glob("work/member_*/history.json")).read_text())
    times = [h["epoch_time_s"] for h in history]
    return statistics.median(times[1:] or times), times, history[-1]["processes"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--device", required=True, help="the host's card name")
    ap.add_argument("--scale-up", default="results/cpu/scale_up.json")
    ap.add_argument("--out", default="results/gpu/scaleout.json")
    args = ap.parse_args()
    run = Path(args.run_dir)
    seq = json.loads((run / "seq" / "training.json").read_text())
    par = json.loads((run / "par" / "training.json").read_text())
    one, one_times, p1 = _median_epoch(run / "ddp1")
    two, two_times, p2 = _median_epoch(run / "ddp2")
    assert (p1, p2) == (1, 2), (p1, p2)
    scale = json.loads(Path(args.scale_up).read_text())
    out = {
        "device": args.device,
        "members_parallel_speedup": seq["wall_time_s"] / par["wall_time_s"],
        "members_parallel_time_ratio": par["wall_time_s"] / seq["wall_time_s"],
        "members_sequential_s": seq["wall_time_s"],
        "members_parallel_s": par["wall_time_s"],
        "ddp_epoch_ratio": two / one,
        "ddp_epoch_s": {"1": one, "2": two},
        "ddp_epoch_times_s": {"1": one_times, "2": two_times},
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
    prov = provenance(params=load_params(run / "ddp.yaml"), dataset_sha256=None,
                      split_sha256=None, wall_time_s=seq["wall_time_s"] + par["wall_time_s"],
                      device=args.device, extra={"run": "benchmarks/scaleout.sh"})  # fmt: skip
    write_metrics(Path(args.out), out, prov)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
