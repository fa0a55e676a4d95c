"""Profile GemNet-T training steps on the current device: top kernels and ms/step.

Usage: python benchmarks/profile_step.py --structures S --params profiles/full.yaml [--batch-size N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tracer.graphs.dataset import batches_by_size
from tracer.graphs.padding import PaddedBatcher, plan_static_shape
from tracer.models.gemnet import GemNetT, GemNetTConfig
from tracer.pipeline.config import load_params
from tracer.pipeline.launch import build_graphs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--structures", required=True)
    ap.add_argument("--params", default="profiles/full.yaml")
    ap.add_argument("--batch-size", type=int, nargs="*", default=[32])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="torch.compile(dynamic=True) the model")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument(
        "--padded", action="store_true", help="pad batches to one static shape, as CUDA graphs do"
    )
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = load_params(args.params)
    cfg = GemNetTConfig.from_params(p["gemnet"], p["graph"])
    data = build_graphs(args.structures, cfg, workers=args.workers)
    d = data.to(dev)
    ne = data.num_edges().numpy()
    model = GemNetT(cfg).to(dev)
    if args.compile:
        model = torch.compile(model, dynamic=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for bs in args.batch_size:
        batches = batches_by_size(
            np.arange(len(data)), ne, batch_size=bs, shuffle=True, rng=np.random.default_rng(0)
        )

        batcher = PaddedBatcher(d, plan_static_shape(data, batches)) if args.padded else None

        def step(b: np.ndarray, batcher: PaddedBatcher | None = batcher) -> None:
            g, _, w = batcher(b) if batcher else (d.collate(b), None, None)
            opt.zero_grad(set_to_none=True)
            loss = model(g).square().mean() if w is None else (model(g).square() * w).mean()
            loss.backward()
            opt.step()

        t_warm = time.perf_counter()
        for b in batches[:3]:
            step(b)
        print(f"batch {bs}: warm-up (incl. compilation) {time.perf_counter() - t_warm:.1f} s")
        torch.cuda.synchronize() if dev.type == "cuda" else None
        t0 = time.perf_counter()
        for b in batches[3 : 3 + args.steps]:
            step(b)
        torch.cuda.synchronize() if dev.type == "cuda" else None
        ms = (time.perf_counter() - t0) / args.steps * 1e3
        print(f"batch {bs}: {ms:.1f} ms/step, epoch ~ {ms * len(batches) / 1e3:.2f} s", flush=True)
        if bs == args.batch_size[0] and not args.no_profile:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with profile(activities=acts) as prof:
                for b in batches[3:8]:
                    step(b)
                torch.cuda.synchronize() if dev.type == "cuda" else None
            key = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60))
            if dev.type == "cuda":
                kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
                busy = sum(e.device_time for e in kernels) / 5 / 1e3
                print(f"{len(kernels) / 5:.0f} kernels and {busy:.1f} ms of kernel time per step")


if __name__ == "__main__":
    main()
