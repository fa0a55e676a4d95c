"""A batch of periodic structures with their precomputed symmetric edges: the one input every model
reads (:class:`GraphBatch`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tracer.graphs.periodic import Triplets, edge_vectors


@dataclass
class GraphBatch:
    """A batch of periodic structures with their (precomputed) symmetric edges.

    Shapes: ``N`` atoms, ``B`` structures, ``E`` edges. Edges are sorted by target atom.
    """

    z: Tensor  # [N] atomic numbers
    pos: Tensor  # [N, 3] Å
    cell: Tensor  # [B, 3, 3] Å, lattice vectors as rows
    atom_batch: Tensor  # [N] structure index of each atom
    source: Tensor  # [E]
    target: Tensor  # [E]
    offset: Tensor  # [E, 3] integer image offsets
    reverse: Tensor  # [E] index of the reverse edge
    num_structures: int
    atom_counts: Tensor | None = None  # [B] atoms per structure (derived when absent)
    triplets: Triplets | None = None  # precomputed where the batch is cut (derived when absent)
    k_max: int | None = None  # most triplets of any edge (derived when absent)
    domain: Tensor | None = None  # [B] domain (source database) index of each structure

    def _map(self, fn: Callable[[Tensor], Tensor]) -> GraphBatch:
        trip = self.triplets
        return GraphBatch(
            z=fn(self.z),
            pos=fn(self.pos),
            cell=fn(self.cell),
            atom_batch=fn(self.atom_batch),
            source=fn(self.source),
            target=fn(self.target),
            offset=fn(self.offset),
            reverse=fn(self.reverse),
            num_structures=self.num_structures,
            atom_counts=None if self.atom_counts is None else fn(self.atom_counts),
            triplets=None
            if trip is None
            else Triplets(edge_in=fn(trip.edge_in), edge_out=fn(trip.edge_out), slot=fn(trip.slot)),
            k_max=self.k_max,
            domain=None if self.domain is None else fn(self.domain),
        )

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> GraphBatch:
        """The batch on ``device`` (geometry keeps its dtype; the model casts it)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> GraphBatch:
        """Page-locked copy, for asynchronous host-to-device copies (used by DataLoader)."""
        return self._map(lambda t: t.pin_memory())

    @property
    def num_atoms(self) -> int:
        return int(self.z.numel())

    def edge_vectors(self, dtype: torch.dtype) -> Tensor:
        """Edge vectors ``[E, 3]`` (Å) from source (in its image) to target, in ``dtype``."""
        cell_e = self.cell.to(dtype).index_select(0, self.atom_batch.index_select(0, self.target))
        return edge_vectors(self.pos.to(dtype), cell_e, self.source, self.target, self.offset)

    def structure_mean(self, per_atom: Tensor) -> Tensor:
        """Per-structure mean ``[B, ...]`` of a per-atom quantity ``[N, ...]``."""
        shape = (self.num_structures, *per_atom.shape[1:])
        total = per_atom.new_zeros(shape).index_add_(0, self.atom_batch, per_atom)
        counts = self.atom_counts
        if counts is None:
            counts = torch.bincount(self.atom_batch, minlength=self.num_structures)
        return total / counts.to(total.dtype).reshape(-1, *[1] * (per_atom.dim() - 1))
