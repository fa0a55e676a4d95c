"""ALIGNN baseline through the ``alignn`` package's pure-torch model (no DGL).

K. Choudhary & B. DeCost, "Atomistic Line Graph Neural Network for improved materials property
predictions", npj Comput. Mater. 7, 185 (2021). The model is ``alignn.models.
alignn_atomwise_pure.ALIGNNAtomWisePure`` and its graphs come from ``alignn.torch_graph_builder``;
this module only adapts TRACER's tensors (atomic numbers, positions, cell in Å) to them and sets an
energy-only, mean-readout configuration. ``alignn`` is an optional dependency, imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

# ALIGNN's published size (4 ALIGNN + 4 GCN layers, hidden 256, CGCNN atom features).
ALIGNN_DEFAULT_SIZE: dict[str, Any] = {
    "alignn_layers": 4,
    "gcn_layers": 4,
    "atom_input_features": 92,
    "edge_input_features": 80,
    "triplet_input_features": 40,
    "embedding_features": 64,
    "hidden_features": 256,
    "output_features": 1,
}


def make_alignn(**overrides: Any) -> torch.nn.Module:
    """An energy-only ``ALIGNNAtomWisePure`` (no forces/stress, no per-atom multiplication)."""
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    cfg = {
        **ALIGNN_DEFAULT_SIZE,
        "calculate_gradient": False,
        "gradwise_weight": 0.0,
        "energy_mult_natoms": False,
        "use_zbl": False,
        "use_penalty": False,
        **overrides,
    }
    return ALIGNNAtomWisePure(ALIGNNAtomWisePureConfig(name="alignn_atomwise_pure", **cfg))


def alignn_graph(
    z: Tensor,
    pos: Tensor,
    cell: Tensor,
    *,
    cutoff: float,
    three_body_cutoff: float,
    max_neighbors: int | None,
    device: str | torch.device = "cpu",
) -> tuple[Any, Any]:
    """ALIGNN's ``(graph, line graph)`` of one structure (lengths in Å)."""
    from alignn.torch_graph_builder import build_pure_torch_graph
    from jarvis.core.atoms import Atoms
    from jarvis.core.specie import atomic_numbers_to_symbols

    atoms = Atoms(
        lattice_mat=cell.double().numpy(),
        coords=pos.double().numpy(),
        elements=atomic_numbers_to_symbols([int(x) for x in z]),
        cartesian=True,
    )
    return build_pure_torch_graph(
        atoms,
        two_body_cutoff=cutoff,
        three_body_cutoff=three_body_cutoff,
        max_neighbors=max_neighbors,
        atom_features="cgcnn",
        device=device,
    )


def alignn_batch(pairs: Sequence[tuple[Any, Any]], cells: Tensor) -> tuple[Any, Any, Tensor]:
    """Batch ``(graph, line graph)`` pairs into ALIGNN's forward input ``(g, lg, lattice)``."""
    from alignn.torch_graph_builder import batch_torch_graph_pairs

    g, lg = batch_torch_graph_pairs(list(pairs))
    return g, lg, cells


def move_batch(batch: tuple[Any, Any, Tensor], device: torch.device) -> tuple[Any, Any, Tensor]:
    g, lg, lat = batch
    return g.to(device), lg.to(device), lat.to(device)
