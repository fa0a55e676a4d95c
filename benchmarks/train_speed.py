"""Training and inference speed of GemNet-T and ALIGNN on the same split, data and device.

One run times both models side by side (same process, same card):

* graphs are built once before timing (GemNet-T: ``tracer.graphs.periodic``; ALIGNN: the ``alignn``
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
        --params profiles/full.yaml --out speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tracer.data.splits import load_split
from tracer.graphs.dataset import batches_by_size, load_structure_tensors
from tracer.graphs.padding import PaddedBatcher, plan_static_shapes
from tracer.models.gemnet import GemNetT, GemNetTConfig, fit_scale_factors
from tracer.models.registry import build_model, config_from_dict
from tracer.pipeline.config import load_params
from tracer.pipeline.launch import build_graphs
from tracer.pipeline.provenance import device_name
from tracer.training.alignn import RECIPES, alignn_graphs
from tracer.training.batches import batch_stream
from tracer.training.optim import make_optimizer
from tracer.training.settings import TrainConfig
from tracer.training.steps import CudaGraphStep, WeightAverage
from tracer.training.trainer import make_step


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_gib(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def _time_epochs(model, step, epoch_batches, dev, epochs):
    """Epoch times, the first (warm-up: compilation, graph capture) first, and peak memory.

    ``step(batch, y, weight)`` is one whole optimisation step."""
    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for epoch in range(epochs + 1):
        _sync(dev)
        t0 = time.perf_counter()
        model.train()
        for batch, y, w in epoch_batches(epoch):
            step(batch, y, w)
        _sync(dev)
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
    """Timed epochs: all but the first, which is reported apart (``warmup_epoch_s``)."""
    warmup, times = times[0], times[1:]
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "batch_size": bs,
        "s_per_epoch": statistics.median(times),
        "epoch_times_s": times,
        "warmup_epoch_s": warmup,
        "train_structures_per_s": n / statistics.median(times),
        "infer_structures_per_s": infer,
        "peak_mem_gib": peak,
    }


def model_settings(params, kind):
    """(model config, train settings) of GemNet-T or a baseline, as the pipeline has them."""
    if kind == "gemnet_t":
        return GemNetTConfig.from_params(params["gemnet"], params["graph"]), params["train"]
    base = params["baselines"]
    return config_from_dict(kind, base[kind]), {**params["train"], **base["train"]}


def time_gemnet(data, train_idx, params, dev, epochs, *, cuda_graphs, kind="gemnet_t"):
    """One member's epochs (GemNet-T, or a baseline ``kind``) with the trainer's own step
    (tracer.training.trainer.make_step)."""
    cfg, train = model_settings(params, kind)
    tc = TrainConfig(**{**train, "cuda_graphs": cuda_graphs})
    bs = tc.batch_size
    tc.apply_precision()
    torch.manual_seed(0)
    model = build_model(cfg).to(dev)
    data_dev = data.to(dev)
    edges = data.num_edges().numpy()
    if isinstance(model, GemNetT):
        fit = batches_by_size(train_idx, edges, batch_size=bs, shuffle=False)[:4]
        fit_scale_factors(model, [data_dev.collate(b) for b in fit])
    ema = WeightAverage(model, tc.ema_decay) if tc.ema_decay else None
    step = make_step(model, make_optimizer(model, tc, dev), tc, dev, ema)
    plans = [
        batches_by_size(train_idx, edges, batch_size=bs, shuffle=True, rng=np.random.default_rng(e))
        for e in range(epochs + 1)
    ]
    graphed = isinstance(step, CudaGraphStep)
    shapes = None
    if graphed:
        shapes = plan_static_shapes(data, (b for p in plans for b in p), buckets=tc.shape_buckets)
    batcher = PaddedBatcher(data_dev, shapes) if shapes and tc.loader_workers <= 0 else None

    def epoch_batches(epoch):  # as the trainer cuts them (tracer.training.batches.batch_stream)
        stream = batch_stream(
            data,
            data_dev,
            plans[epoch],
            workers=tc.loader_workers,
            device=dev,
            shapes=shapes,
            batcher=batcher,
        )
        for batch, y, w in stream:
            yield batch, y.float(), None if w is None else w.float()

    times, peak = _time_epochs(model, step, epoch_batches, dev, epochs)
    replay_ms = None
    if graphed:  # the device's own time per step: each recorded step alone, on its static batch
        replay_ms = []
        for graph in step.graphs.values():
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(50):
                graph.replay()
            _sync(dev)
            replay_ms.append((time.perf_counter() - t0) / 50 * 1e3)
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
    return {
        **_summary(model, bs, times, peak, infer, len(train_idx)),
        "loader_workers": tc.loader_workers,
        "cuda_graphs": graphed,
        "ema_decay": tc.ema_decay,
        "static_shapes": None if shapes is None else [s.__dict__ for s in shapes],
        "replay_ms_per_step_by_shape": replay_ms,
        "max_neighbors": params["graph"]["max_neighbors"],
        "precision": tc.precision,
        "shape_buckets": tc.shape_buckets if graphed else None,
        "steps_per_epoch": len(plans[0]),
        "compiled": tc.compile,
    }


def time_alignn(payload, train_idx, dev, epochs, workers):
    from tracer.models.alignn import alignn_batch, make_alignn, move_batch

    arrays = [(payload["z"][i], payload["pos"][i], payload["cell"][i]) for i in train_idx]
    t0 = time.perf_counter()  # graphs at ALIGNN's TrainingConfig defaults
    graphs = alignn_graphs(arrays, RECIPES["defaults"], workers=workers)
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
            yield batch_of(idx), y_all[idx].to(dev), None

    def step(batch, y, _):  # ALIGNN's own training step: MSE, AdamW
        opt.zero_grad(set_to_none=True)
        loss = ((model(batch)["out"] - y) ** 2).mean()
        loss.backward()
        opt.step()

    times, peak = _time_epochs(model, step, epoch_batches, dev, epochs)
    infer = _inference_rate(
        model, lambda: (batch_of(np.arange(k, min(k + bs, n))) for k in range(0, n, bs)), n, dev
    )
    return {**_summary(model, bs, times, peak, infer, n), "graph_build_s": graph_time}


def _variant(spec: str, params: dict) -> tuple[str, dict]:
    """``NAME:section.key=value,...`` -> (name, params with those values; YAML-typed)."""
    import copy

    import yaml

    name, _, sets = spec.partition(":")
    out = copy.deepcopy(params)
    for item in filter(None, sets.split(",")):
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        if section not in out or field not in out[section]:
            raise SystemExit(f"--variant {spec!r}: unknown setting {key!r}")
        out[section][field] = yaml.safe_load(value)
    return name, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--structures", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--params", default="profiles/full.yaml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--skip-alignn", action="store_true")
    ap.add_argument("--baselines", action="store_true", help="also time SchNet and CGCNN")
    ap.add_argument("--limit", type=int, help="time on the first N training ids only (smoke test)")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:SECTION.KEY=VALUE,...",
        help="also time GemNet-T with these settings changed (repeatable), "
        "e.g. nb12:graph.max_neighbors=12,train.shape_buckets=4",
    )
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    params = load_params(args.params)
    split = load_split(args.split)
    payload = load_structure_tensors(args.structures)
    where = {rid: i for i, rid in enumerate(payload["ids"])}
    train_pos = np.array([where[i] for i in split["train"]])[: args.limit]
    out = {
        "device": device_name(),
        "n_train": len(train_pos),
        "timed_epochs": args.epochs,
        "models": {},
    }
    # the trainer's path ("gemnet_t": CUDA graphs on a GPU), on a GPU eager steps beside it,
    # then the variants (graphed on a GPU)
    runs = [("gemnet_t", params, dev.type == "cuda")]
    if dev.type == "cuda":
        runs.append(("gemnet_t_eager", params, False))
    runs = [(name, p, graphed, "gemnet_t") for name, p, graphed in runs]
    for spec in args.variant:
        name, p = _variant(spec, params)
        graphed = dev.type == "cuda" and p["train"]["cuda_graphs"]
        runs.append((f"gemnet_t_{name}", p, graphed, "gemnet_t"))
    if args.baselines:  # SchNet and CGCNN as the pipeline trains them (eager steps)
        runs += [(kind, params, False, kind) for kind in params["baselines"]["models"]]
    graphs: dict[tuple, tuple] = {}
    for name, p, graphed, kind in runs:
        cfg, _ = model_settings(p, kind)
        key = (cfg.cutoff, cfg.max_neighbors)
        if key not in graphs:
            t0 = time.perf_counter()
            data = build_graphs(args.structures, cfg, workers=args.workers)
            graphs[key] = (data, time.perf_counter() - t0)
        data, graph_s = graphs[key]
        out["models"][name] = time_gemnet(
            data, train_pos, p, dev, args.epochs, cuda_graphs=graphed, kind=kind
        )
        out["models"][name]["graph_build_s"] = graph_s
        print(name, json.dumps(out["models"][name], indent=1), flush=True)
    if not args.skip_alignn:
        out["models"]["alignn"] = time_alignn(payload, train_pos, dev, args.epochs, args.workers)
        a = out["models"]["alignn"]
        for name in out["models"]:
            if name == "alignn":
                continue
            ratio = out["models"][name]["s_per_epoch"] / a["s_per_epoch"]
            out[f"epoch_time_ratio_{name}_over_alignn"] = ratio
        if "gemnet_t" in out["models"]:  # the trainer's path on this device
            out["epoch_time_ratio_gemnet_over_alignn"] = out[
                "epoch_time_ratio_gemnet_t_over_alignn"
            ]
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
    for key, value in out.items():
        if key.startswith("epoch_time_ratio_"):
            print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()
