"""Screening throughput: the 5-member GemNet-T ensemble against one ALIGNN model, graph
construction included, in one run on one device.

Both start from the same in-memory structures (atomic numbers, positions and cell in Å, as
``tracer predict`` has them after reading files) and end with a prediction per structure:

* GemNet-T ensemble: :meth:`tracer.inference.predict.Ensemble.predict_arrays` — graphs built once
(in
  size-sorted chunks on a GPU; one by one in ``--workers`` processes on the CPU), then every
  member over batches of ``--batch`` structures in inference mode; with ``--compile`` also with
  the members compiled (the warm-up call pays the compilation: ``warmup_s``), the faster way
  counted (building the next block's graphs in a second thread beside the members was tried:
  no faster, docs/performance.md § Screening throughput);
* ALIGNN (published size, ``alignn`` package's pure-torch model; random weights, as only the
  compute is timed): graphs from the package's own builder (``alignn.torch_graph_builder``) at
  its ``TrainingConfig`` defaults — all first, in ``--workers`` CPU processes or one by one on
  the device, then the model over batches of ``--batch`` in inference mode; and overlapped:
  the model runs on each batch as soon as the CPU processes have built it. The fastest of its
  ways is counted.

Each pipeline runs ``--repeats`` times after a warm-up on a few structures; medians are reported.
File reading (pymatgen) is the same for both and left out.

Usage (GPU machine)::

    python benchmarks/screen_speed.py --structures flla_structures.pt --out screen_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tracer.graphs.dataset import load_structure_tensors
from tracer.inference.predict import Ensemble
from tracer.pipeline.provenance import device_name
from tracer.training.alignn import RECIPES, alignn_graphs
from tracer.training.trainer import pick_device


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev, repeats):
    times, out = [], None
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def ensemble_identity(ens) -> dict:
    """Which members were timed: their folder, count, parameters and interaction blocks."""
    first = torch.load(ens.members[0], map_location="cpu", weights_only=False)
    where = Path(ens.members[0]).parent.resolve()
    if where.is_relative_to(Path.cwd().resolve()):
        where = where.relative_to(Path.cwd().resolve())
    return {"dir": str(where), "members": len(ens.members),
            "params_per_member": first["summary"]["num_params"],
            "num_blocks": first["model_config"].get("num_blocks")}  # fmt: skip


def gemnet(ens, ids, arrays, dev, batch, workers, repeats, compile=False):
    kw = {"device": str(dev), "batch_size": batch, "workers": workers, "compile": compile}
    t0 = time.perf_counter()
    ens.predict_arrays(ids[:32], arrays[:32], **kw)  # warm-up (and compilation)
    warmup_s = time.perf_counter() - t0
    g_s, _, _ = _timed(lambda: ens.graphs(ids, arrays, device=str(dev), workers=workers),
                       dev, repeats)  # fmt: skip
    total, times, out = _timed(lambda: ens.predict_arrays(ids, arrays, **kw), dev, repeats)
    assert np.isfinite(out["mean"]).all()
    return {"s": total, "times_s": times, "graph_s": g_s, "structures_per_s": len(ids) / total,
            "members": len(ens.members), "graphs_on": "device chunks" if dev.type == "cuda"
            else f"cpu, {workers} processes", "compiled": compile, "warmup_s": warmup_s,
            "predictions": out["members"]}  # fmt: skip


def alignn(arrays, cells, dev, batch, workers, repeats):
    from tracer.models.alignn import alignn_batch, alignn_graph, make_alignn, move_batch
    from tracer.training.alignn import iter_alignn_graphs

    recipe = RECIPES["defaults"]
    torch.manual_seed(0)
    model = make_alignn().to(dev).eval()

    def graphs_cpu():
        return alignn_graphs(arrays, recipe, workers=workers)

    def graphs_dev():
        settings = {"cutoff": recipe.cutoff, "three_body_cutoff": recipe.three_body_cutoff,
                    "max_neighbors": recipe.max_neighbors}  # fmt: skip
        return [alignn_graph(z, p, c, **settings, device=dev) for z, p, c in arrays]

    def infer(graphs):
        out = []
        with torch.inference_mode():
            for k in range(0, len(graphs), batch):
                b = move_batch(alignn_batch(graphs[k : k + batch], cells[k : k + batch]), dev)
                out.append(model(b)["out"].reshape(-1))
        return torch.cat(out)

    def overlapped():  # the model on each batch as soon as it is built
        out, built = [], []
        with torch.inference_mode():
            for g in iter_alignn_graphs(arrays, recipe, workers=workers):
                built.append(g)
                if len(built) == batch or sum(map(len, out)) + len(built) == len(arrays):
                    k = sum(map(len, out))
                    b = move_batch(alignn_batch(built, cells[k : k + len(built)]), dev)
                    out.append(model(b)["out"].reshape(-1))
                    built = []
        return torch.cat(out)

    infer(graphs_cpu()[:32])  # warm-up
    paths = {"cpu": graphs_cpu}
    if dev.type == "cuda":
        paths["device"] = graphs_dev
    graph = {k: _timed(f, dev, repeats) for k, f in paths.items()}
    best = min(graph, key=lambda k: graph[k][0])
    built = graph[best][2]
    infer_s, _, pred = _timed(lambda: infer(built), dev, repeats)
    assert torch.isfinite(pred).all()
    over_s, over_times, over_pred = _timed(overlapped, dev, repeats)
    torch.testing.assert_close(over_pred, pred)
    total = min(graph[best][0] + infer_s, over_s)
    return {"s": total, "graph_s": graph[best][0], "model_s": infer_s,
            "graph_s_by_path": {k: v[0] for k, v in graph.items()},
            "graphs_first_s": graph[best][0] + infer_s, "overlapped_s": over_s,
            "overlapped_times_s": over_times,
            "graphs_on": best if total < over_s else "cpu, overlapped with the model",
            "structures_per_s": len(arrays) / total}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--structures", required=True, help="structure-tensor file (.pt)")
    ap.add_argument("--ensemble", default=None, help="member folder (default: the shipped one)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="first N structures only")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true",
                    help="also time the members compiled (steps.compiled)")  # fmt: skip
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = pick_device(args.device)
    payload = load_structure_tensors(args.structures)
    n = len(payload["ids"]) if args.limit is None else args.limit
    ids = payload["ids"][:n]
    arrays = list(zip(payload["z"][:n], payload["pos"][:n], payload["cell"][:n], strict=True))
    cells = torch.stack([c.float() for _, _, c in arrays])
    ens = Ensemble.load(args.ensemble)
    run = (dev, args.batch, args.workers, args.repeats)
    out = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else device_name(),
           "n_structures": n, "batch": args.batch, "workers": args.workers,
           "repeats": args.repeats, "ensemble": ensemble_identity(ens),
           "gemnet_t_ensemble": gemnet(ens, ids, arrays, *run),
           "alignn": alignn(arrays, cells, *run)}  # fmt: skip
    plain = out["gemnet_t_ensemble"].pop("predictions")
    if args.compile:  # the same members compiled; the faster way is the ensemble's
        fused = gemnet(ens, ids, arrays, *run, compile=True)
        diff = float(np.abs(fused.pop("predictions") - plain).max())
        out["gemnet_t_ensemble_compiled"] = {**fused, "max_abs_diff_ev_per_atom": diff}
    rates = {k: v["structures_per_s"] for k, v in out.items() if k.startswith("gemnet_t_ensemble")}
    out["ensemble_timed_as"] = max(rates, key=rates.get)
    out["ratio_ensemble_over_alignn"] = max(rates.values()) / out["alignn"]["structures_per_s"]
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
