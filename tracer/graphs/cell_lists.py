"""Periodic neighbour graphs of large cells in memory linear in the atoms (cell lists).

:func:`tracer.graphs.periodic.radius_graph_pbc` compares every atom with every atom of every needed
image at once: memory ``n² K`` (a 13,824-atom supercell asks for about 124 GB). Here atoms are
sorted into bins of the wrapped fractional coordinates, at least ``cutoff`` wide along each
lattice direction, so that every neighbour within the cutoff lies in the ±``R`` bins around an
atom's own (``R = 1`` when the cell is wider than the cutoff; more bins and periodic images when
it is not). Candidate pairs are formed for a chunk of target atoms at a time, with the same
wrapped positions, the same arithmetic for the distance and the same neighbour cap,
symmetrisation and edge order (:func:`tracer.graphs.periodic.cap_neighbors`,
:func:`tracer.graphs.periodic._finish`)
as the dense function, so the two give the same graph edge for edge (tested).
:func:`periodic_graph` picks the dense function for small cells, where it is faster, and the
cell list above :data:`DENSE_PAIR_LIMIT` candidate pairs. Lengths in Å, geometry in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tracer.graphs.dataset import GraphDataset
from tracer.graphs.periodic import (
    PeriodicGraph,
    _finish,
    cap_neighbors,
    image_ranges,
    radius_graph_pbc,
)

#: ``n² K`` (atoms squared times images) above which :func:`periodic_graph` uses cell lists
DENSE_PAIR_LIMIT = 4_000_000


def _bins(cell: Tensor, cutoff: float) -> tuple[Tensor, Tensor]:
    """Bins per lattice direction (each at least ``cutoff`` wide between lattice planes) and the
    reach ``R`` in bins along each direction that a neighbour within ``cutoff`` can be."""
    spacing = 1.0 / torch.linalg.norm(torch.linalg.inv(cell), dim=-2)  # plane spacings (Å)
    nbins = torch.clamp(torch.floor(spacing / cutoff), min=1).to(torch.long)
    reach = torch.ceil(cutoff / spacing * nbins - 1e-12).to(torch.long).clamp(min=1)
    return nbins, reach


def cell_list_pairs(
    pos: Tensor, cell: Tensor, cutoff: float, *, chunk_pairs: int = 4_000_000
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every ordered pair within ``cutoff`` (Å): ``(source, target, offset, distance)`` with
    ``pos[s] + offset @ cell - pos[t]`` the pair's vector, as :func:`radius_graph_pbc` finds them
    before its cap. Memory: about ``chunk_pairs`` candidate pairs at a time."""
    device = pos.device
    n = pos.shape[0]
    frac = pos @ torch.linalg.inv(cell)
    shift = torch.floor(frac)
    wrapped = pos - shift @ cell
    wfrac = frac - shift
    nbins, reach = _bins(cell, cutoff)
    coord = torch.minimum((wfrac * nbins).floor().to(torch.long), nbins - 1).clamp(min=0)
    flat = (coord[:, 0] * nbins[1] + coord[:, 1]) * nbins[2] + coord[:, 2]
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=int(nbins.prod()))
    starts = torch.cumsum(counts, 0) - counts
    axes = [torch.arange(-int(r), int(r) + 1, device=device) for r in reach]
    steps = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # [K, 3]

    out_s, out_t, out_o, out_d = [], [], [], []
    per_atom = int(counts.max()) * steps.shape[0]
    chunk = max(1, chunk_pairs // max(per_atom, 1))
    for lo in range(0, n, chunk):
        t_atoms = torch.arange(lo, min(n, lo + chunk), device=device)
        nb = coord[t_atoms][:, None, :] + steps[None, :, :]  # [c, K, 3] neighbour bin coords
        image = torch.div(nb, nbins, rounding_mode="floor")
        home = nb - image * nbins
        bin_id = ((home[..., 0] * nbins[1] + home[..., 1]) * nbins[2] + home[..., 2]).reshape(-1)
        t_rep = t_atoms.repeat_interleave(steps.shape[0])
        img = image.reshape(-1, 3)
        cnt = counts[bin_id]
        total = int(cnt.sum())
        if total == 0:
            continue
        which = torch.repeat_interleave(torch.arange(cnt.numel(), device=device), cnt,
                                        output_size=total)  # fmt: skip
        first = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(total, device=device) - first[which]
        s = order[starts[bin_id[which]] + local]
        t = t_rep[which]
        im = img[which]
        vec = wrapped[s] + im.to(pos.dtype) @ cell - wrapped[t]
        d = torch.linalg.norm(vec, dim=-1)
        keep = (d <= cutoff) & ~((s == t) & (im == 0).all(dim=1))
        s, t, im, d = s[keep], t[keep], im[keep], d[keep]
        out_s.append(s)
        out_t.append(t)
        out_o.append(im + shift[t].long() - shift[s].long())
        out_d.append(d)
    if not out_s:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=device), pos.new_zeros(0)
    return torch.cat(out_s), torch.cat(out_t), torch.cat(out_o), torch.cat(out_d)


def radius_graph_cell_list(
    pos: Tensor,
    cell: Tensor,
    cutoff: float,
    *,
    max_neighbors: int | None = None,
    tolerance: float = 1e-4,
    chunk_pairs: int = 4_000_000,
) -> PeriodicGraph:
    """:func:`tracer.graphs.periodic.radius_graph_pbc` by cell lists: the same arguments and the
    same
    graph, in memory linear in the atoms."""
    n = pos.shape[0]
    if n == 0:
        raise ValueError("structure has no atoms")
    s, t, offset, d = cell_list_pairs(pos, cell, cutoff, chunk_pairs=chunk_pairs)
    if max_neighbors is not None and t.numel() > 0:
        s, t, offset = cap_neighbors(s, t, offset, d, n, max_neighbors, tolerance)
    return _finish(s, t, offset, n)


def periodic_graph(
    pos: Tensor, cell: Tensor, cutoff: float, *, max_neighbors: int | None = None
) -> PeriodicGraph:
    """The neighbour graph by whichever search suits the cell: the dense one while its
    ``n² K`` pairs stay under :data:`DENSE_PAIR_LIMIT`, cell lists above."""

    n = pos.shape[0]
    images = int(torch.prod(2 * image_ranges(cell, cutoff) + 1))
    if n * n * images <= DENSE_PAIR_LIMIT:
        return radius_graph_pbc(pos, cell, cutoff, max_neighbors=max_neighbors)
    return radius_graph_cell_list(pos, cell, cutoff, max_neighbors=max_neighbors)


def graph_dataset(
    ids: Sequence[str],
    arrays: Sequence[tuple[Tensor, Tensor, Tensor]],
    *,
    cutoff: float,
    max_neighbors: int | None,
) -> GraphDataset:
    """A :class:`tracer.graphs.dataset.GraphDataset` (no targets) of ``(z, pos Å, cell Å)`` tensors,
    each graph by :func:`periodic_graph`; the same dataset as
    :func:`tracer.graphs.dataset.graphs_from_arrays` builds. Raises ``ValueError`` naming the
    structure
    when an atom has no neighbour within the cutoff or an image offset leaves int8."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("z", "pos", "cell", "s", "t", "o", "r")}
    n_atoms, n_edges = [], []
    for rid, (z, pos, cell) in zip(ids, arrays, strict=True):
        g = periodic_graph(pos.double(), cell.double(), cutoff, max_neighbors=max_neighbors)
        have = torch.zeros(len(z), dtype=torch.bool)
        have[g.target] = True
        if not bool(have.all()):
            lonely = torch.nonzero(~have).flatten()[:5].tolist()
            raise ValueError(f"{rid}: atoms {lonely} have no neighbour within {cutoff} Å")
        if g.num_edges and int(g.offset.abs().max()) > 127:
            raise ValueError(f"{rid}: image offsets beyond int8 range")
        for key, value in (("z", z.to(torch.int16)), ("pos", pos.double()),
                           ("cell", cell.double()), ("s", g.source.to(torch.int32)),
                           ("t", g.target.to(torch.int32)), ("o", g.offset.to(torch.int8)),
                           ("r", g.reverse.to(torch.int32))):  # fmt: skip
            parts[key].append(value)
        n_atoms.append(len(z))
        n_edges.append(g.num_edges)

    def ptr(counts: list[int]) -> Tensor:
        return torch.tensor([0, *np.cumsum(counts, dtype=np.int64)], dtype=torch.long)

    return GraphDataset(
        ids=list(ids), target=torch.full((len(n_atoms),), float("nan"), dtype=torch.float64),
        z=torch.cat(parts["z"]), pos=torch.cat(parts["pos"]), cell=torch.stack(parts["cell"]),
        atom_ptr=ptr(n_atoms), source=torch.cat(parts["s"]), target_atom=torch.cat(parts["t"]),
        offset=torch.cat(parts["o"]), reverse=torch.cat(parts["r"]), edge_ptr=ptr(n_edges),
        cutoff=float(cutoff), max_neighbors=max_neighbors,
    )  # fmt: skip
