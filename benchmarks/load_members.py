"""Loading the shipped ensemble's five members, with and without the orthogonal initialisation
that the loaded weights then overwrite, side by side in one run.

Each way is timed ``--repeats`` times in turn (alternating, so a busy spell of the machine falls
on both), with torch on one thread and on two; the record gives the medians (seconds for all five
members) and their ratio, and checks that both ways give the same weights.

Usage::

    python benchmarks/load_members.py --out results/cpu/load_members.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from large_cell import _cpu

from tracer import PRETRAINED_DIR
from tracer.models.registry import build_model, config_from_dict
from tracer.pipeline.provenance import provenance, write_metrics


def _load(records: list[dict], initialise: bool) -> tuple[float, list[torch.nn.Module]]:
    t0 = time.perf_counter()
    models = []
    for record in records:
        model = build_model(config_from_dict(record["kind"], record["model_config"]),
                            initialise=initialise)  # fmt: skip
        model.load_state_dict(record["state_dict"], strict=True)
        models.append(model)
    return time.perf_counter() - t0, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="results/cpu/load_members.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    paths = sorted(Path(PRETRAINED_DIR).glob("member_*.pt"))
    records = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    by_threads = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {"initialised": [], "to_be_loaded": []}
        for _ in range(args.repeats):
            for name, init in (("initialised", True), ("to_be_loaded", False)):
                seconds, _ = _load(records, init)
                times[name].append(seconds)
        same = all(torch.equal(a, b) for m, n in zip(_load(records, True)[1],
                                                     _load(records, False)[1], strict=True)
                   for a, b in zip(m.state_dict().values(), n.state_dict().values(),
                                   strict=True))  # fmt: skip
        medians = {k: statistics.median(v) for k, v in times.items()}
        by_threads[str(threads)] = {
            "median_s": medians,
            "times_s": times,
            "ratio_to_be_loaded_over_initialised": medians["to_be_loaded"]
            / medians["initialised"],
            "same_weights": same,
        }
    record = {"what": "build and load the shipped ensemble's members (seconds for all of them)",
              "device": _cpu(), "n_members": len(paths), "repeats": args.repeats,
              "threads": by_threads}  # fmt: skip
    write_metrics(args.out, record, provenance(params=vars(args), dataset_sha256=None,
                                               split_sha256=None,
                                               wall_time_s=time.perf_counter() - t0,
                                               device=_cpu()))  # fmt: skip
    print(by_threads)


if __name__ == "__main__":
    main()
