"""Training and inference speed of GemNet-T and ALIGNN on the same split, data and device.

One run times both models side by side (same process, same card):

* graphs are built once before timing (GemNet-T: ``tracer.graphs``; ALIGNN: the ``alignn``
  package's pure-torch builder at its ``TrainingConfig`` defaults: 5 Å, 12 neighbours, angles
  from bonds <= 3.5 Å), as both training codes cache their graphs;
* an epoch is one pass over the training ids in shuffled batches (collation, host-to-device copy,
  forward, backward, optimiser step), each model at its own batch size (GemNet-T: the profile's;
  ALIGNN: its default 64); the first epoch is a warm-up and excluded; the median of the timed
  epochs is reported;
* inference is structures/s over the training ids in eval mode (graphs prebuilt), and peak GPU
  memory is measured per model.

Usage (on the GPU machine)::

    python benchmarks/train_speed.py --structures flla.pt --split data/splits/flla.json \\
        --params profiles/gpu.yaml --out speed.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tracer.config import load_params
from tracer.dataset import batches_by_size, load_structure_tensors
from tracer.launch import build_graphs
from tracer.models.gemnet import GemNetT, GemNetTConfig, fit_scale_factors
from tracer.provenance import device_name
from tracer.splits import load_split
from tracer.train import batch_stream


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_gib(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def _time_epochs(model, opt, epoch_batches, loss_of, dev, epochs):
    """Median-ready list of epoch times (first epoch = warm-up, excluded) and peak memory."""
    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for epoch in range(epochs + 1):
        _sync(dev)
        t0 = time.perf_counter()
        model.train()
        for batch, y in epoch_batches(epoch):
            opt.zero_grad(set_to_none=True)
            loss = loss_of(model(batch), y)
            loss.backward()
            opt.step()
        _sync(dev)
        if epoch > 0:
            times.append(time.perf_counter() - t0)
    return times, _peak_gib(dev)


def _inference_rate(model, batches, n, dev):
    """Structures per second in eval mode over prebuilt batches."""
    model.eval()
    _sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in batches():
            model(batch)
    _sync(dev)
    return n / (time.perf_counter() - t0)


def _summary(model, bs, times, peak, infer, n):
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "batch_size": bs,
        "s_per_epoch": statistics.median(times),
        "epoch_times_s": times,
        "train_structures_per_s": n / statistics.median(times),
        "infer_structures_per_s": infer,
        "peak_mem_gib": peak,
    }


def time_gemnet(data, train_idx, params, dev, epochs):
    cfg = GemNetTConfig.from_params(params["gemnet"], params["graph"])
    bs = params["train"]["batch_size"]
    torch.manual_seed(0)
    model = GemNetT(cfg).to(dev)
    data_dev = data.to(dev)
    edges = data.num_edges().numpy()
    fit = batches_by_size(train_idx, edges, batch_size=bs, shuffle=False)[:4]
    fit_scale_factors(model, [data_dev.collate(b) for b in fit])
    opt = torch.optim.AdamW(model.parameters(), lr=params["train"]["lr"], fused=dev.type == "cuda")
    workers = params["train"].get("loader_workers", 0)

    def epoch_batches(epoch):  # as the trainer cuts them (tracer.train.batch_stream)
        rng = np.random.default_rng(epoch)
        batches = batches_by_size(train_idx, edges, batch_size=bs, shuffle=True, rng=rng)
        for batch, y in batch_stream(data, data_dev, batches, workers=workers, device=dev):
            yield batch, y.float()

    times, peak = _time_epochs(
        model, opt, epoch_batches, lambda out, y: (out - y).abs().mean(), dev, epochs
    )
    eval_bs = params["train"]["eval_batch_size"]
    infer = _inference_rate(
        model,
        lambda: (
            data_dev.collate(b)
            for b in batches_by_size(train_idx, edges, batch_size=eval_bs, shuffle=False)
        ),
        len(train_idx),
        dev,
    )
    return {**_summary(model, bs, times, peak, infer, len(train_idx)), "loader_workers": workers}


def _alignn_graph_job(args):
    from tracer.models.alignn import alignn_graph

    torch.set_num_threads(1)
    z, pos, cell = (torch.from_numpy(a) for a in args)
    g, lg = alignn_graph(z, pos, cell, cutoff=5.0, three_body_cutoff=3.5, max_neighbors=12)
    return pickle.dumps((g, lg))  # plain bytes: tensors would travel as file descriptors


def time_alignn(payload, train_idx, dev, epochs, workers):
    from tracer.models.alignn import alignn_batch, make_alignn, move_batch

    jobs = [
        (payload["z"][i].numpy(), payload["pos"][i].numpy(), payload["cell"][i].numpy())
        for i in train_idx
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        graphs = [pickle.loads(b) for b in pool.map(_alignn_graph_job, jobs, chunksize=32)]
    graph_time = time.perf_counter() - t0
    cells = torch.stack([payload["cell"][i].float() for i in train_idx])
    y_all = torch.tensor([payload["targets"][i] for i in train_idx], dtype=torch.float32)
    torch.manual_seed(0)
    model = make_alignn().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    bs, n = 64, len(train_idx)

    def batch_of(idx):
        return move_batch(alignn_batch([graphs[i] for i in idx], cells[idx]), dev)

    def epoch_batches(epoch):
        order = np.random.default_rng(epoch).permutation(n)
        for k in range(0, n, bs):
            idx = order[k : k + bs]
            yield batch_of(idx), y_all[idx].to(dev)

    times, peak = _time_epochs(
        model, opt, epoch_batches, lambda out, y: ((out["out"] - y) ** 2).mean(), dev, epochs
    )
    infer = _inference_rate(
        model, lambda: (batch_of(np.arange(k, min(k + bs, n))) for k in range(0, n, bs)), n, dev
    )
    return {**_summary(model, bs, times, peak, infer, n), "graph_build_s": graph_time}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--structures", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--params", default="profiles/gpu.yaml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--skip-alignn", action="store_true")
    ap.add_argument("--limit", type=int, help="time on the first N training ids only (smoke test)")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    params = load_params(args.params)
    split = load_split(args.split)
    payload = load_structure_tensors(args.structures)
    where = {rid: i for i, rid in enumerate(payload["ids"])}
    train_pos = np.array([where[i] for i in split["train"]])[: args.limit]

    t0 = time.perf_counter()
    data = build_graphs(
        args.structures,
        GemNetTConfig.from_params(params["gemnet"], params["graph"]),
        workers=args.workers,
    )
    gem_graph_s = time.perf_counter() - t0
    out = {
        "device": device_name(),
        "n_train": len(train_pos),
        "timed_epochs": args.epochs,
        "models": {},
    }
    out["models"]["gemnet_t"] = time_gemnet(data, train_pos, params, dev, args.epochs)
    out["models"]["gemnet_t"]["graph_build_s"] = gem_graph_s
    print(json.dumps(out["models"]["gemnet_t"], indent=1), flush=True)
    if not args.skip_alignn:
        out["models"]["alignn"] = time_alignn(payload, train_pos, dev, args.epochs, args.workers)
        g, a = out["models"]["gemnet_t"], out["models"]["alignn"]
        out["epoch_time_ratio_gemnet_over_alignn"] = g["s_per_epoch"] / a["s_per_epoch"]
    out["wall_time_s"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(
        f"{'model':10s} {'params':>10s} {'s/epoch':>9s} {'train/s':>9s} {'infer/s':>9s} "
        f"{'peak GiB':>9s}"
    )
    for name, m in out["models"].items():
        peak = m["peak_mem_gib"] if m["peak_mem_gib"] is not None else float("nan")
        print(
            f"{name:10s} {m['params']:10,d} {m['s_per_epoch']:9.2f} "
            f"{m['train_structures_per_s']:9.0f} {m['infer_structures_per_s']:9.0f} "
            f"{peak:9.2f}"
        )
    if "epoch_time_ratio_gemnet_over_alignn" in out:
        print(f"GemNet-T / ALIGNN epoch time: {out['epoch_time_ratio_gemnet_over_alignn']:.3f}")


if __name__ == "__main__":
    main()
