"""Periodic neighbour graphs and triplets in plain torch (CPU or CUDA).

Conventions (lengths in Å):

* An **edge** ``e`` connects a *target* atom ``t[e]`` with a *source* atom ``s[e]`` in the periodic
  image ``offset[e]`` (integer lattice translation). Its vector points from the target to the
  source image, ``r_e = pos[s] + offset @ cell - pos[t]``; messages flow from source to target.
* The graph is **symmetric**: every edge has a reverse ``(t, s, -offset)`` in the list and
  ``reverse[e]`` is its index, so a one-atom cell (all edges are self-images) is handled by edge
  id, never by atom id.
* Each atom keeps at most ``max_neighbors`` edges, except that a shell of (nearly) equal distances
  that straddles the cap is kept whole (distances within ``tolerance`` of the last kept one); the
  reverse of every kept edge is then added, so degrees can exceed the cap slightly.
* A **triplet** is an ordered pair of distinct edges meeting at the same target atom
  ``(edge_in, edge_out)``, ``t[edge_in] == t[edge_out]``, ``edge_in != edge_out`` — equivalently,
  in DimeNet's view of the path ``k → a → c``, the edge ``k→a`` may be any edge into ``a`` except
  the reverse of ``a→c``. Its angle is the one at the shared atom between the two edge vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PeriodicGraph:
    """Edges of one structure (or a batch): indices, image offsets, reverse edge ids."""

    source: Tensor  # [E] long
    target: Tensor  # [E] long, sorted ascending
    offset: Tensor  # [E, 3] long, lattice translation of the source image
    reverse: Tensor  # [E] long

    @property
    def num_edges(self) -> int:
        return int(self.source.numel())


def image_ranges(cell: Tensor, cutoff: float) -> Tensor:
    """How many cell translations along each lattice vector can hold a neighbour within cutoff
    (``cell`` ``[3, 3]`` Å, or a stack ``[N, 3, 3]`` for ``[N, 3]`` at once).

    For fractional coordinates wrapped into [0, 1), ``ceil(cutoff / d_i)`` images suffice, where
    ``d_i`` is the spacing of the lattice planes spanned by the other two vectors.
    """
    inv = torch.linalg.inv(cell)  # columns are reciprocal vectors (without 2π)
    spacing = 1.0 / torch.linalg.norm(inv, dim=-2)
    return torch.ceil(cutoff / spacing).to(torch.long)


def _encode(s: Tensor, t: Tensor, off: Tensor, n_atoms: int, span: int) -> Tensor:
    width = 2 * span + 1
    o = off + span
    return (((s * n_atoms + t) * width + o[:, 0]) * width + o[:, 1]) * width + o[:, 2]


def radius_graph_pbc(
    pos: Tensor,
    cell: Tensor,
    cutoff: float,
    *,
    max_neighbors: int | None = None,
    tolerance: float = 1e-4,
) -> PeriodicGraph:
    """Neighbours within ``cutoff`` (Å) of every atom of one periodic structure.

    Args:
        pos: Cartesian positions, ``[n_atoms, 3]`` (Å); need not lie inside the cell.
        cell: lattice vectors as rows, ``[3, 3]`` (Å).
        cutoff: neighbour radius (Å); pairs at distance ``<= cutoff`` are edges.
        max_neighbors: cap on edges per target atom (see module docstring), ``None`` for no cap.
        tolerance: distance (Å) within which a neighbour shell counts as degenerate at the cap.

    Returns:
        A symmetric :class:`PeriodicGraph` whose ``offset`` refers to the positions as given.
    """
    device = pos.device
    n = pos.shape[0]
    if n == 0:
        raise ValueError("structure has no atoms")
    inv = torch.linalg.inv(cell)
    frac = pos @ inv
    shift = torch.floor(frac)
    wrapped = pos - shift @ cell
    reps = image_ranges(cell, cutoff)
    axes = [torch.arange(-int(r), int(r) + 1, device=device) for r in reps]
    images = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # [K, 3]
    image_shift = images.to(pos.dtype) @ cell  # [K, 3]
    # vec[t, s, k] = wrapped[s] + image_shift[k] - wrapped[t]
    vec = wrapped[None, :, None, :] + image_shift[None, None, :, :] - wrapped[:, None, None, :]
    dist = torch.linalg.norm(vec, dim=-1)  # [n, n, K]
    k_zero = int(((images == 0).all(dim=1)).nonzero()[0, 0])
    eye = torch.eye(n, dtype=torch.bool, device=device)
    not_self = torch.ones_like(dist, dtype=torch.bool)
    not_self[:, :, k_zero] = ~eye
    t_idx, s_idx, k_idx = torch.nonzero((dist <= cutoff) & not_self, as_tuple=True)
    d = dist[t_idx, s_idx, k_idx]
    # back to offsets relative to the positions as given
    offset = images[k_idx] + shift[t_idx].long() - shift[s_idx].long()

    if max_neighbors is not None and t_idx.numel() > 0:
        s_idx, t_idx, offset = cap_neighbors(s_idx, t_idx, offset, d, n, max_neighbors, tolerance)

    return _finish(s_idx, t_idx, offset, n)


def cap_neighbors(
    s: Tensor,
    t: Tensor,
    offset: Tensor,
    d: Tensor,
    n_atoms: int,
    max_neighbors: int,
    tolerance: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep each target atom's ``max_neighbors`` nearest edges (plus every edge within
    ``tolerance`` Å of the last kept distance, so a degenerate shell stays whole), then add the
    reverse of every kept edge and drop repeats. ``n_atoms``: atoms indexed by ``s`` and ``t``
    (those of one structure, or of a batch numbered structure after structure)."""
    order = torch.argsort(d, stable=True)
    order = order[torch.argsort(t[order], stable=True)]  # by atom, then distance
    t, s, offset, d = t[order], s[order], offset[order], d[order]
    counts = torch.bincount(t, minlength=n_atoms)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(t.numel(), device=t.device) - start[t]
    thresh = torch.full((n_atoms,), math.inf, dtype=d.dtype, device=d.device)
    over = counts > max_neighbors
    thresh[over] = d[start[over] + max_neighbors - 1]
    keep = (rank < max_neighbors) | (d <= thresh[t] + tolerance)
    t, s, offset = t[keep], s[keep], offset[keep]
    span = int(offset.abs().max()) + 1 if offset.numel() else 1
    s_all, t_all = torch.cat([s, t]), torch.cat([t, s])
    o_all = torch.cat([offset, -offset])
    _, first = _unique_first(_encode(s_all, t_all, o_all, n_atoms, span))
    return s_all[first], t_all[first], o_all[first]


def _unique_first(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Unique keys and the index of their first occurrence."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long, device=keys.device)
    first.scatter_reduce_(0, inverse, torch.arange(keys.numel(), device=keys.device), "amin")
    return uniq, first


def _finish(s: Tensor, t: Tensor, off: Tensor, n_atoms: int) -> PeriodicGraph:
    """Sort edges by (target, source, offset) and find each edge's reverse."""
    span = int(off.abs().max()) + 1 if off.numel() else 1
    keys = _encode(s, t, off, n_atoms, span)
    # order by target first: encode with target as the leading digit
    order_keys = _encode(t, s, off, n_atoms, span)
    order = torch.argsort(order_keys)
    s, t, off, keys = s[order], t[order], off[order], keys[order]
    rev_keys = _encode(t, s, -off, n_atoms, span)
    sorted_keys, perm = torch.sort(keys)
    pos = torch.searchsorted(sorted_keys, rev_keys)
    pos = pos.clamp(max=max(sorted_keys.numel() - 1, 0))
    if keys.numel() and not torch.equal(sorted_keys[pos], rev_keys):
        raise RuntimeError("neighbour list is not symmetric")  # pragma: no cover
    reverse = perm[pos]
    return PeriodicGraph(source=s, target=t, offset=off, reverse=reverse)


def edge_vectors(
    pos: Tensor, cell_per_edge: Tensor, graph_source: Tensor, graph_target: Tensor, offset: Tensor
) -> Tensor:
    """Edge vectors ``pos[s] + offset @ cell - pos[t]`` (Å), ``[E, 3]``.

    ``cell_per_edge`` is ``[E, 3, 3]`` (the cell of each edge's structure) or ``[3, 3]``.
    """
    off = offset.to(pos.dtype)
    if cell_per_edge.dim() == 2:
        shift = off @ cell_per_edge
    else:
        shift = torch.bmm(off[:, None, :], cell_per_edge).squeeze(1)
    return pos.index_select(0, graph_source) + shift - pos.index_select(0, graph_target)


@dataclass
class Triplets:
    """Ordered pairs of distinct edges sharing a target atom."""

    edge_in: Tensor  # [T] the neighbouring edge b→a
    edge_out: Tensor  # [T] the edge c→a being updated; sorted ascending
    slot: Tensor  # [T] 0..(in-degree - 2): position of the triplet among those of edge_out

    @property
    def num_triplets(self) -> int:
        return int(self.edge_in.numel())


def triplets(target: Tensor, num_atoms: int) -> Triplets:
    """All ``(edge_in, edge_out)`` with equal target atom and ``edge_in != edge_out``.

    Args:
        target: target atom of every edge, ``[E]``, sorted ascending (as from
            :func:`radius_graph_pbc` or :func:`batch_graphs`).
        num_atoms: number of atoms (length of the atom axis).
    """
    if target.numel() > 1 and bool((target[1:] < target[:-1]).any()):
        raise ValueError("edges must be sorted by target atom")
    device = target.device
    deg = torch.bincount(target, minlength=num_atoms)
    start = torch.cumsum(deg, 0) - deg
    per_edge = deg[target]  # candidates per outgoing edge (its target's in-degree)
    edge_out = torch.repeat_interleave(torch.arange(target.numel(), device=device), per_edge)
    base = torch.repeat_interleave(start[target], per_edge)
    first = torch.cumsum(per_edge, 0) - per_edge
    local = torch.arange(edge_out.numel(), device=device) - torch.repeat_interleave(first, per_edge)
    edge_in = base + local
    keep = edge_in != edge_out
    edge_in, edge_out, local = edge_in[keep], edge_out[keep], local[keep]
    own = (torch.arange(target.numel(), device=device) - start[target])[edge_out]
    slot = local - (local > own).long()
    return Triplets(edge_in=edge_in, edge_out=edge_out, slot=slot)


def triplet_cosines(vectors: Tensor, trip: Triplets, eps: float = 1e-12) -> Tensor:
    """Cosine of the angle at the shared atom between the two edges of each triplet, ``[T]``.

    Clamped to [-1, 1]; finite (with finite gradients) for collinear edges.
    """
    a = vectors.index_select(0, trip.edge_out)
    b = vectors.index_select(0, trip.edge_in)
    dot = (a * b).sum(-1)
    norm = torch.sqrt((a * a).sum(-1) * (b * b).sum(-1) + eps)
    return (dot / norm).clamp(-1.0, 1.0)


def max_triplets_per_edge(trip: Triplets) -> int:
    """Width of the zero-padded triplet arrays (0 when there are no triplets)."""
    return int(trip.slot.max()) + 1 if trip.num_triplets else 0
