"""Write a synthetic scale-up of a structure-tensor file and its split, for throughput runs
(``benchmarks/scaleout.sh`` with ``STRUCTURES``/``SPLIT``): every structure copied ``--copies``
times with a seeded Gaussian jitter of every atom (``--jitter`` Å; :func:`scale_up.scaled_copies`),
ids ``<id>~<k>``; copy ``k`` of an id stays in that id's set (train/val/test), so the copies of a
training structure never meet its validation neighbours. Targets are the originals': no accuracy
is claimed on it. Usage::

    python benchmarks/scaled_copies.py --structures flla_structures.pt \\
        --split data/splits/flla.json --copies 8 --out x8.pt --split-out x8.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_up import scaled_copies

from tracer.data.splits import SET_NAMES, load_split, split_sha256
from tracer.graphs.dataset import FORMAT_VERSION, load_structure_tensors


def write_scaled(structures: Path, split: Path, copies: int, jitter_angstrom: float,
                 out: Path, split_out: Path) -> dict[str, int]:  # fmt: skip
    """Write the jittered copies (``out``) and their split (``split_out``); returns set sizes."""
    payload = load_structure_tensors(structures)
    ids, arrays, targets = scaled_copies(payload, copies, jitter_angstrom, seed=0)
    torch.save(
        {"format_version": FORMAT_VERSION, "ids": ids, "targets": targets,
         "unit": payload["unit"], "z": [a[0] for a in arrays], "pos": [a[1] for a in arrays],
         "cell": [a[2] for a in arrays]},
        out,
    )  # fmt: skip
    doc = load_split(split)
    for name in SET_NAMES:
        doc[name] = [f"{i}~{k}" for k in range(copies) for i in doc[name]]
    doc["sizes"] = {name: len(doc[name]) for name in SET_NAMES}
    doc["method"] = (
        f"{doc['method']}; x{copies} copies jittered by {jitter_angstrom} Å (throughput only)"
    )
    doc["split_sha256"] = split_sha256(doc)
    split_out.write_text(json.dumps(doc))
    return doc["sizes"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--structures", required=True, type=Path)
    ap.add_argument("--split", required=True, type=Path)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--jitter", type=float, default=0.02, help="Å")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--split-out", required=True, type=Path)
    args = ap.parse_args()
    sizes = write_scaled(args.structures, args.split, args.copies, args.jitter, args.out,
                         args.split_out)  # fmt: skip
    print(json.dumps(sizes))


if __name__ == "__main__":
    main()
