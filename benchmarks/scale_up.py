"""Host memory and throughput at Materials-Project scale, on a synthetic scale-up of FLLA.

FLLA's structures are copied ``--copies`` times with every atom displaced by a seeded Gaussian
jitter (``--jitter`` Å, default 0.02): about 130,000 structures with FLLA's size distribution.
Their targets are FLLA's (only throughput and memory are measured; no accuracy is claimed).
Then, in one process on the CPU:

1. graph preprocessing in ``--workers`` processes (:func:`tracer.graphs.dataset.graphs_from_arrays`:
   results stream back one structure at a time, so memory grows with the finished dataset only),
   saved, dropped, and read back memory-mapped (``torch.load(mmap=True)``: the edge arrays stay
   in the page cache, not in the process's private memory);
2. one training epoch of GemNet-T at the profile's settings over every synthetic structure, in
   batches capped by the profile's batch size and by ``--max-edges`` edges (so a batch of large
   cells is cut early), validation on ``--val`` structures.

Peak resident memory (``ru_maxrss``) of this process and of its worker processes is reported
with the wall times. Usage::

    python benchmarks/scale_up.py --structures flla_structures.pt --params params.yaml \\
        --copies 33 --out results/scale_up_cpu.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tracer.data.download import sha256_file
from tracer.graphs.dataset import GraphDataset, graphs_from_arrays, load_structure_tensors
from tracer.models.gemnet import GemNetTConfig
from tracer.pipeline.config import load_params
from tracer.pipeline.provenance import provenance, write_metrics
from tracer.training.settings import TrainConfig
from tracer.training.trainer import train_member


def _peak_gib() -> dict[str, float]:
    to_gib = 1024**2  # ru_maxrss is in KiB on Linux
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / to_gib,
        "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / to_gib,
    }


def scaled_copies(payload: dict, copies: int, jitter: float, seed: int) -> tuple[list, list, list]:
    """``copies`` jittered copies of every structure: ids ``<id>~<k>``, arrays, targets."""
    rng = np.random.default_rng(seed)
    ids, arrays, targets = [], [], []
    for k in range(copies):
        rows = zip(payload["ids"], payload["z"], payload["pos"], payload["cell"],
                   payload["targets"], strict=True)  # fmt: skip
        for rid, z, pos, cell, y in rows:
            shift = torch.from_numpy(rng.normal(0.0, jitter, size=tuple(pos.shape)))
            ids.append(f"{rid}~{k}")
            arrays.append((z, pos.double() + shift, cell.double()))
            targets.append(float(y))
    return ids, arrays, targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--structures", required=True, help="structure-tensor file of FLLA")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--copies", type=int, default=33)
    ap.add_argument("--jitter", type=float, default=0.02, help="Å")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-edges", type=int, default=8192, help="edges per training batch")
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/tracer_scale_up")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    config = GemNetTConfig.from_params(params["gemnet"], params["graph"])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ids, arrays, targets = scaled_copies(load_structure_tensors(args.structures), args.copies,
                                         args.jitter, seed=0)  # fmt: skip
    copy_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = graphs_from_arrays(ids, arrays, targets, cutoff=config.cutoff,
                              max_neighbors=config.max_neighbors, workers=args.workers)  # fmt: skip
    graph_s = time.perf_counter() - t0
    path = data.save(work / "graphs.pt")
    n, n_edges = len(data), int(data.edge_ptr[-1])
    del data, arrays
    after_graphs = _peak_gib()
    payload = torch.load(path, weights_only=False, mmap=True)
    payload.pop("format_version")
    data = GraphDataset(**payload)
    order = np.random.default_rng(1).permutation(n)
    split = {"train": [ids[i] for i in order[args.val :]],
             "val": [ids[i] for i in order[: args.val]], "test": []}  # fmt: skip
    train = replace(TrainConfig(**params["train"]), max_epochs=1, cuda_graphs=False,
                    max_edges_per_batch=args.max_edges)  # fmt: skip
    t0 = time.perf_counter()
    summary = train_member(data=data, split=split, seed=0, model_config=config,
                           train_config=train, work_dir=work / "member",
                           member_path=work / "member.pt", device="cpu",
                           progress=False)  # fmt: skip
    epoch_s = time.perf_counter() - t0
    out = {
        "n_structures": n,
        "n_edges": n_edges,
        "copies": args.copies,
        "jitter_angstrom": args.jitter,
        "graph_workers": args.workers,
        "threads": torch.get_num_threads(),
        "copy_s": copy_s,
        "graph_build_s": graph_s,
        "graph_structures_per_s": n / graph_s,
        "graphs_file_gib": path.stat().st_size / 2**30,
        "peak_rss_gib_after_graphs": after_graphs,
        "epoch_s": epoch_s,
        "train_structures_per_s": len(split["train"]) / summary["train_time_s"],
        "max_edges_per_batch": args.max_edges,
        "peak_rss_gib": _peak_gib(),
        "host_mem_peak_gib_130k": max(_peak_gib().values()),
        "device": "cpu",
    }
    prov = provenance(params=params, dataset_sha256=sha256_file(args.structures), split_sha256=None,
                      wall_time_s=copy_s + graph_s + epoch_s, device="cpu",
                      extra={"data": f"{args.structures} x {args.copies}, jittered"})  # fmt: skip
    write_metrics(Path(args.out), out, prov)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
