"""The weight-gradient product CGCNN's first layer computes, on a Gaussian distance expansion
with and without its subnormal entries, side by side in one run (median ms of repeated calls).

The expansion is CGCNN's (0–8 Å in 0.2 Å steps) of distances drawn uniformly from 1–8 Å, beside
two blocks of atom features, for one batch's edges; ``without_subnormals`` zeroes the entries
below float32's smallest normal number (docs/performance.md § Subnormal Gaussians).

Usage::

    python benchmarks/subnormal_products.py [--edges 3874] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tracer.models.baselines import without_subnormals


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=3874)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    dist = torch.rand(args.edges, generator=gen) * 7 + 1
    rbf = torch.exp(-((dist[:, None] - torch.linspace(0, 8, 41)) ** 2) / 0.2**2)
    atoms = torch.randn(args.edges, 128, generator=gen)
    grad = torch.randn(args.edges, 64, generator=gen)
    raw = torch.cat([atoms, rbf], 1)
    flushed = torch.cat([atoms, without_subnormals(rbf)], 1)
    tiny = torch.finfo(torch.float32).tiny
    with_ms = median_ms(lambda: grad.t().mm(raw), args.repeats)
    without_ms = median_ms(lambda: grad.t().mm(flushed), args.repeats)
    print(json.dumps({
        "edges": args.edges, "threads": torch.get_num_threads(),
        "subnormal_fraction": float(((rbf != 0) & (rbf.abs() < tiny)).float().mean()),
        "with_subnormals_ms": round(with_ms, 3), "without_subnormals_ms": round(without_ms, 3),
        "ratio": round(with_ms / without_ms, 1),
        "same_product": bool(torch.equal(grad.t().mm(raw), grad.t().mm(flushed))),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
