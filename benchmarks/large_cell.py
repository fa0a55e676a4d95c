"""Memory and agreement of a large cell through ``tracer predict``: a 12×12×12 rock-salt
supercell (13,824 atoms) and its 8-atom cell, predicted by the shipped ensemble on the CPU.

Each structure runs in its own process (``tracer predict`` on a POSCAR file, the whole command:
reading, validation, cell-list graph, chunked triplet interaction, five members), whose peak
resident memory is read from the operating system; the record gives both peaks side by side, the
predictions and their difference (target: ≤ 4 GiB, ≤ 1e-4 eV/atom). POSCAR because pymatgen's
CIF parser alone takes about two minutes on a cell of this size (docs/screening.md).

Usage::

    python benchmarks/large_cell.py --out results/flla_full/large_cell.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymatgen.core import Lattice, Structure

from tracer.pipeline.provenance import provenance


def _run(cif: Path, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "tracer.cli", "predict", str(cif), "-o", str(out),
               "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    import pandas as pd

    row = pd.read_csv(out).iloc[0]
    return {"n_atoms": int(row["n_atoms"]), "wall_s": round(wall, 2),
            "peak_rss_gib": peak_kib / 2**20, "peak_is_new": peak_kib > before,
            "e_form_ev_per_atom": float(row["e_form_ev_per_atom"]),
            "sigma_ev_per_atom": float(row["sigma_ev_per_atom"])}  # fmt: skip


def _cpu() -> str:
    """The CPU's model name and core count (``/proc/cpuinfo``), for the record."""
    import os

    name = "unknown CPU"
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {len(os.sched_getaffinity(0))} cores available"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mult", type=int, default=12, help="supercell repeats per direction")
    parser.add_argument("--out", default="results/flla_full/large_cell.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        nacl.to(filename=str(tmp / "POSCAR_primitive"), fmt="poscar")
        (nacl * ((args.mult,) * 3)).to(filename=str(tmp / "POSCAR_supercell"), fmt="poscar")
        # the small cell first: the children's peak only grows, so the large one's is its own
        small = _run(tmp / "POSCAR_primitive", tmp / "p.csv")
        large = _run(tmp / "POSCAR_supercell", tmp / "s.csv")
    record = {
        "what": "rock salt (a = 5.64 Å): conventional cell and its "
        f"{args.mult}x{args.mult}x{args.mult} supercell through `tracer predict` on the CPU",
        "primitive": small,
        "supercell": large,
        "abs_diff_ev_per_atom": abs(large["e_form_ev_per_atom"] - small["e_form_ev_per_atom"]),
        "targets": {"peak_rss_gib": 4.0, "abs_diff_ev_per_atom": 1e-4},
        "device": _cpu(),
    }
    record["passed"] = large["peak_rss_gib"] <= 4.0 and record["abs_diff_ev_per_atom"] <= 1e-4
    record["provenance"] = provenance(
        params=vars(args),
        dataset_sha256=None,
        split_sha256=None,
        wall_time_s=time.perf_counter() - t0,
        device=_cpu(),
    )
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
