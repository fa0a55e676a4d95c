"""Batches padded to fixed sizes (atoms, edges, triplets), so that a CUDA graph captured once
replays every batch of a run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from tracer.graphs.batch import GraphBatch
from tracer.graphs.periodic import (
    Triplets,
    triplets,
)

if TYPE_CHECKING:
    from tracer.graphs.dataset import GraphDataset


@dataclass(frozen=True)
class StaticShape:
    """Fixed sizes that every padded batch of a run has (for CUDA-graph replay).

    ``structures`` includes one extra structure that owns the padding atoms; ``atoms`` and
    ``edges`` leave room for at least two padding atoms joined by a pair of padding edges.
    """

    structures: int
    atoms: int
    edges: int
    triplets: int
    k_max: int


def plan_static_shapes(
    data: GraphDataset,
    batch_plans: Iterator[np.ndarray] | Sequence[np.ndarray],
    *,
    buckets: int = 1,
    round_to: int = 64,
    spare_edges: int = 512,
) -> tuple[StaticShape, ...]:
    """Up to ``buckets`` :class:`StaticShape` s, smallest first, the last holding every batch of
    the plans; :func:`pad_batch` pads each batch to the first that holds it.

    Batches are ranked by their triplet count (most of a GemNet-T step's work); shape ``k`` is
    the smallest (rounded up) that holds every batch up to quantile ``(k + 1) / buckets`` of
    that ranking, so shapes grow in every size and one graph per shape replays each bucket.
    Every shape leaves at least ``spare_edges`` padding edges: the padding triplets of a small
    batch (hundreds of thousands) then spread over that many edges instead of piling onto two,
    which would serialise the scatter-adds of the backward pass on a GPU.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    n_atoms = data.num_atoms().cpu().numpy()
    n_edges = data.num_edges().cpu().numpy()
    n_trip, k_max = data.triplet_counts()
    sizes = np.array(
        [
            [len(b), n_atoms[b].sum(), n_edges[b].sum(), n_trip[b].sum(), k_max[b].max()]
            for b in batch_plans
        ],
        dtype=np.int64,
    ).reshape(-1, 5)
    if not len(sizes):
        raise ValueError("no batches to plan a static shape for")
    sizes = sizes[np.argsort(sizes[:, 3], kind="stable")]
    most = np.maximum.accumulate(sizes, axis=0)  # row i: elementwise max of batches 0..i

    def up(n: int) -> int:
        return int(-(-n // round_to) * round_to)

    shapes: list[StaticShape] = []
    for k in range(1, buckets + 1):
        m = most[-(-len(sizes) * k // buckets) - 1]
        shape = StaticShape(
            structures=int(m[0]) + 1,
            atoms=up(int(m[1]) + 2),
            edges=up(int(m[2]) + max(spare_edges, 2)),  # round_to is even: edges come in pairs
            triplets=up(max(int(m[3]), 1)),
            k_max=max(int(m[4]), 1),
        )
        if not shapes or shape != shapes[-1]:
            shapes.append(shape)
    return tuple(shapes)


def plan_static_shape(
    data: GraphDataset,
    batch_plans: Iterator[np.ndarray] | Sequence[np.ndarray],
    *,
    round_to: int = 64,
    spare_edges: int = 512,
) -> StaticShape:
    """The one smallest :class:`StaticShape` that holds every batch (:func:`plan_static_shapes`
    with one bucket)."""
    (shape,) = plan_static_shapes(data, batch_plans, round_to=round_to, spare_edges=spare_edges)
    return shape


Shapes = StaticShape | Sequence[StaticShape]


def fitting_shape(
    shapes: Shapes, *, structures: int, atoms: int, edges: int, triplets: int, k_max: int
) -> StaticShape:
    """The first of ``shapes`` that holds a batch of these sizes (room for the padding
    structure, two padding atoms and a pair of padding edges); ValueError when none does."""
    for shape in [shapes] if isinstance(shapes, StaticShape) else shapes:
        pad_e = shape.edges - edges
        if (
            shape.structures > structures
            and shape.atoms - atoms >= 2
            and pad_e >= 2
            and pad_e % 2 == 0
            and shape.triplets >= triplets
            and shape.k_max >= k_max
        ):
            return shape
    raise ValueError(
        f"batch ({structures} structures, {atoms} atoms, {edges} edges, {triplets} triplets, "
        f"k_max {k_max}) fits none of {shapes}"
    )


def pad_batch(batch: GraphBatch, y: Tensor, shapes: Shapes) -> tuple[GraphBatch, Tensor, Tensor]:
    """Pad a batch (and its targets ``y``) to the first of ``shapes`` that holds it
    (:func:`fitting_shape`); returns ``(batch, y, weight)``.

    The padding cannot change the real structures' outputs: padding atoms (hydrogen) belong to
    one extra structure ``B`` and are joined only to each other, by pairs of mutually reverse
    edges 1 Å long; padding triplets join padding edges only; structures beyond ``B`` are empty
    (atom count 1 to keep their mean finite). ``weight`` is 1 for the real structures and 0
    for the rest, so a weighted loss equals the unpadded one. No device synchronisation.
    """
    if batch.triplets is None or batch.k_max is None or batch.atom_counts is None:
        raise ValueError("pad_batch needs a batch from GraphDataset.collate")
    b, n, e = batch.num_structures, batch.num_atoms, int(batch.source.numel())
    t = int(batch.triplets.edge_in.numel())
    shape = fitting_shape(shapes, structures=b, atoms=n, edges=e, triplets=t, k_max=batch.k_max)
    pad_s, pad_n, pad_e, pad_t = (
        shape.structures - b,
        shape.atoms - n,
        shape.edges - e,
        shape.triplets - t,
    )
    dev = batch.z.device
    lng = {"dtype": torch.long, "device": dev}
    pos_pad = batch.pos.new_zeros(pad_n, 3)
    pos_pad[1, 0] = 1.0  # padding atoms n and n+1 are 1 Å apart
    cell_pad = torch.eye(3, dtype=batch.cell.dtype, device=dev).expand(pad_s, 3, 3) * 10.0
    pair = torch.arange(pad_e, **lng) % 2  # even padding edges n+1 -> n, odd ones n -> n+1
    k = torch.arange(pad_t, **lng)
    counts = torch.ones(shape.structures, **lng)
    counts[:b] = batch.atom_counts
    counts[b] = pad_n
    padded = GraphBatch(
        z=torch.cat([batch.z, torch.ones(pad_n, **lng)]),
        pos=torch.cat([batch.pos, pos_pad]),
        cell=torch.cat([batch.cell, cell_pad]),
        atom_batch=torch.cat([batch.atom_batch, torch.full((pad_n,), b, **lng)]),
        source=torch.cat([batch.source, n + 1 - pair]),
        target=torch.cat([batch.target, n + pair]),
        offset=torch.cat([batch.offset, torch.zeros(pad_e, 3, **lng)]),
        reverse=torch.cat([batch.reverse, e + (torch.arange(pad_e, **lng) ^ 1)]),
        num_structures=shape.structures,
        atom_counts=counts,
        triplets=Triplets(
            edge_in=torch.cat([batch.triplets.edge_in, e + (k + 1) % pad_e]),
            edge_out=torch.cat([batch.triplets.edge_out, e + k % pad_e]),
            slot=torch.cat([batch.triplets.slot, (k // pad_e) % shape.k_max]),
        ),
        k_max=shape.k_max,
        domain=None
        if batch.domain is None
        else torch.cat([batch.domain, torch.zeros(pad_s, **lng)]),
    )
    y_pad = y.new_zeros(shape.structures)
    y_pad[:b] = y
    weight = torch.zeros(shape.structures, dtype=y.dtype, device=dev)
    weight[:b] = 1.0
    return padded, y_pad, weight


class PaddedBatcher:
    """Cuts padded batches (:func:`pad_batch`) on the dataset's device without synchronising it.

    :meth:`GraphDataset.collate` derives sizes and triplets on the device, and each derived size
    waits for the device to finish its queued work; while a GPU replays a recorded step, that
    wait would serialise the two. Here the triplets of every structure are derived once (local
    edge indices, int32) and the sizes of a batch come from host arrays, so cutting a batch only
    queues gathers. The result equals ``data.collate_padded(indices, shapes)`` exactly.
    """

    def __init__(self, data: GraphDataset, shapes: Shapes) -> None:
        self.data, self.shapes = data, shapes
        self.n_atoms = data.num_atoms().cpu().numpy()
        self.n_edges = data.num_edges().cpu().numpy()
        self.n_trip, self.k_max = data.triplet_counts()
        self.atom_ptr = data.atom_ptr.cpu().numpy()
        self.edge_ptr = data.edge_ptr.cpu().numpy()
        self.trip_ptr = np.concatenate([[0], np.cumsum(self.n_trip)])
        dev = data.z.device
        owner = torch.repeat_interleave(
            torch.arange(len(data), device=dev), data.num_edges().to(dev)
        )
        edge_start = data.edge_ptr.to(dev)[owner]  # first edge of each edge's structure
        target = data.target_atom.long() + data.atom_ptr.to(dev)[owner]
        trip = triplets(target, int(self.atom_ptr[-1]))  # whole dataset at once, sorted by edge
        self.trip_in = (trip.edge_in - edge_start[trip.edge_in]).to(torch.int32)
        self.trip_out = (trip.edge_out - edge_start[trip.edge_out]).to(torch.int32)
        self.trip_slot = trip.slot.to(torch.int32)

    def __call__(self, indices: Sequence[int] | np.ndarray) -> tuple[GraphBatch, Tensor, Tensor]:
        """``(batch, targets, weights)`` of the given structures, padded to the first shape
        that holds them."""
        d, idx = self.data, np.asarray(indices, dtype=np.int64)
        na, ne, nt = self.n_atoms[idx], self.n_edges[idx], self.n_trip[idx]
        n, e, t = int(na.sum()), int(ne.sum()), int(nt.sum())
        shifts = [np.cumsum(c) - c for c in (na, ne)]
        host = np.stack(
            [idx, self.atom_ptr[idx], self.edge_ptr[idx], self.trip_ptr[idx], na, ne, nt, *shifts]
        )
        dev = d.z.device
        i, a0, e0, t0, na_d, ne_d, nt_d, atom_shift, edge_shift = torch.from_numpy(host).to(
            dev, non_blocking=True
        )
        atom_sel = _ranges(a0, na_d, n)
        edge_sel = _ranges(e0, ne_d, e)
        trip_sel = _ranges(t0, nt_d, t)
        per_edge_atoms = torch.repeat_interleave(atom_shift, ne_d, output_size=e)
        per_trip_edges = torch.repeat_interleave(edge_shift, nt_d, output_size=t)
        batch = GraphBatch(
            z=d.z[atom_sel].long(),
            pos=d.pos[atom_sel],
            cell=d.cell[i],
            atom_batch=torch.repeat_interleave(
                torch.arange(len(idx), device=dev), na_d, output_size=n
            ),
            source=d.source[edge_sel].long() + per_edge_atoms,
            target=d.target_atom[edge_sel].long() + per_edge_atoms,
            offset=d.offset[edge_sel].long(),
            reverse=d.reverse[edge_sel].long()
            + torch.repeat_interleave(edge_shift, ne_d, output_size=e),
            num_structures=len(idx),
            atom_counts=na_d,
            triplets=Triplets(
                edge_in=self.trip_in[trip_sel].long() + per_trip_edges,
                edge_out=self.trip_out[trip_sel].long() + per_trip_edges,
                slot=self.trip_slot[trip_sel].long(),
            ),
            k_max=int(self.k_max[idx].max()),
            domain=None if d.domain is None else d.domain[i],
        )
        return pad_batch(batch, d.target[i], self.shapes)


def _ranges(starts: Tensor, lengths: Tensor, total: int | None = None) -> Tensor:
    """Concatenation of ``arange(s, s + n)`` for every (s, n); ``total`` (the sum of the
    lengths) given by the caller spares a device synchronisation."""
    if total is None:
        total = int(lengths.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=starts.device)
    first = torch.cumsum(lengths, 0) - lengths
    base = torch.repeat_interleave(starts - first, lengths, output_size=total)
    return base + torch.arange(total, device=starts.device)
