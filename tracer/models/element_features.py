"""Fixed per-element descriptors for the atom embedding: CGCNN's 92 one-hot bits.

A learned embedding per atomic number sees each element only through the structures that contain
it; on a few thousand training crystals many elements occur in a handful of them. CGCNN and
ALIGNN start instead from binned element properties (group, period, electronegativity, covalent
radius, valence electrons, first ionisation energy, electron affinity, block, atomic volume),
so that chemically similar elements start close. :class:`tracer.models.gemnet.GemNetT` with
``atom_features: cgcnn`` projects these bits linearly and adds a learned per-element residual.

The table ships as ``cgcnn_atom_features.json`` (one 92-character bit string per Z = 1..100),
written from jarvis-tools' ``atom_init.json`` by ``python -m tracer.models.element_features``;
``tests/test_models_element_features.py`` compares it with jarvis-tools where that is installed.
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

TABLE = Path(__file__).with_name("cgcnn_atom_features.json")
NUM_CGCNN_FEATURES = 92
MAX_Z = 100


@cache
def _bits() -> dict[int, str]:
    table = json.loads(TABLE.read_text())
    bits = {int(z): row for z, row in table["bits"].items()}
    if sorted(bits) != list(range(1, MAX_Z + 1)):
        raise ValueError(f"{TABLE}: elements {min(bits)}..{max(bits)}, expected 1..{MAX_Z}")
    for z, row in bits.items():
        if len(row) != NUM_CGCNN_FEATURES or set(row) - {"0", "1"}:
            raise ValueError(f"{TABLE}: element Z={z} is not {NUM_CGCNN_FEATURES} bits")
    return bits


def cgcnn_features(num_elements: int = MAX_Z) -> Tensor:
    """CGCNN atom features ``[num_elements, 92]`` (float32, 0/1); row ``Z - 1`` is element Z."""
    if not 1 <= num_elements <= MAX_Z:
        raise ValueError(f"CGCNN features cover Z = 1..{MAX_Z}, asked for {num_elements}")
    bits = _bits()
    return torch.tensor(
        [[float(b) for b in bits[z]] for z in range(1, num_elements + 1)], dtype=torch.float32
    )


def from_jarvis() -> dict[int, str]:
    """The bit strings of jarvis-tools' CGCNN table (needs ``jarvis-tools``)."""
    from jarvis.core.specie import cgcnn_feature_json

    raw = json.loads(Path(cgcnn_feature_json).read_text())
    return {z: "".join(str(int(v)) for v in raw[str(z)]) for z in range(1, MAX_Z + 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description="Rewrite the CGCNN table from jarvis-tools.")
    ap.add_argument("--out", type=Path, default=TABLE)
    args = ap.parse_args()
    table = json.loads(TABLE.read_text())
    table["bits"] = {str(z): row for z, row in from_jarvis().items()}
    args.out.write_text(json.dumps(table, indent=0) + "\n")


if __name__ == "__main__":
    main()
