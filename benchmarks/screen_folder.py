"""Throughput and memory of ``tracer predict`` on a folder of many structure files.

Writes ``--n`` CIF files (FLLA crystals in turn, each under its own name; a few non-structure
files and a broken CIF among them, so the accounting is exercised) into a temporary folder and
screens it with the shipped ensemble in one call of :func:`tracer.inference.screening.screen`
(reading,
validation, graphs, five members, applicability domain, outputs written as it goes), reporting
files per second and the process's peak resident memory. The peak at a tenth of the files is
run first in its own process, so that the two peaks side by side show whether memory grows with
the folder (streaming: it should not).

Usage::

    python benchmarks/screen_folder.py --n 10000 --out results/flla_full/screen_folder.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tracer.pipeline.provenance import provenance


def _one(n: int, device: str) -> dict:
    """Screen a folder of ``n`` files in this process; the timings and counts."""
    import resource

    from tracer.data.table import read_table
    from tracer.inference.screening import screen

    table = read_table("data/processed/flla.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        t0 = time.perf_counter()
        for k in range(n):
            s = table["structure"].iloc[k % len(table)]
            s.to(filename=str(folder / f"s{k:05d}.cif"))
        (folder / "README.txt").write_text("candidates from the screening campaign")
        (folder / "broken.cif").write_text("data_x\n_cell_length_a 3\n")
        written_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = screen([folder], Path(tmp) / "out" / "screen.csv", device=device, budget=50)
        wall = time.perf_counter() - t0
    return {"n_files": summary["files"], "predicted": summary["predicted"],
            "errors": summary["errors"], "skipped": summary["skipped"],
            "out_of_domain": summary["out_of_domain"], "wall_s": round(wall, 1),
            "structures_per_s": round(summary["predicted"] / wall, 2),
            "files_written_s": round(written_s, 1),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/flla_full/screen_folder.json")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)  # child: one folder
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.single:
        print(json.dumps(_one(args.single, args.device)))
        return
    runs = {}
    for n in (args.n // 10, args.n):
        proc = subprocess.run([sys.executable, __file__, "--single", str(n), "--device",
                               args.device], capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        runs[str(n)] = json.loads(proc.stdout.strip().splitlines()[-1])
    from large_cell import _cpu

    if args.device == "cpu":
        device = _cpu()
    else:
        import torch

        device = torch.cuda.get_device_name(torch.device(args.device))
    record = {"what": "tracer predict on a folder of CIF files (FLLA crystals), shipped "
              "ensemble", "device": device,
              "runs": runs,
              "peak_ratio_large_to_small": runs[str(args.n)]["peak_rss_gib"]
              / runs[str(args.n // 10)]["peak_rss_gib"]}  # fmt: skip
    record["provenance"] = provenance(params=vars(args), dataset_sha256=None, split_sha256=None,
                                      wall_time_s=time.perf_counter() - t0,
                                      device=record["device"])  # fmt: skip
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
