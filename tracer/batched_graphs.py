"""Periodic neighbour graphs of many structures at once, in plain torch (CPU or CUDA).

:func:`tracer.graphs.radius_graph_pbc` builds one structure's graph; screening thousands of
candidates one at a time is bound by Python and kernel launches. Here structures of similar
size are padded into chunks and every chunk is handled by one set of tensor operations: the
same wrapped positions, image ranges (the chunk's largest; extra images only add pairs beyond the
cutoff), distance test, neighbour cap with its degenerate-shell tolerance, symmetrisation and
edge order as the per-structure function, so the result is identical edge for edge (tested).
Lengths in Å; the geometry is float64 throughout, as in the per-structure code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tracer.dataset import GraphDataset
from tracer.graphs import _finish, cap_neighbors, image_ranges


def _chunks(cost: np.ndarray, budget: float) -> list[np.ndarray]:
    """Indices grouped in order of ``cost`` so that each group's padded cost stays within
    ``budget`` (a structure above it gets a group of its own)."""
    order = np.argsort(cost, kind="stable")
    groups, current = [], []
    for i in order:
        if current and cost[i] * (len(current) + 1) > budget:  # cost[i] is the group's largest
            groups.append(np.array(current))
            current = []
        current.append(i)
    if current:
        groups.append(np.array(current))
    return groups


def _chunk_edges(
    pos: list[Tensor],
    cell: Tensor,
    reps: Tensor,
    cutoff: float,
    max_neighbors: int | None,
    tolerance: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Edges of a chunk: global source/target atom ids (atoms numbered structure after
    structure), offsets and global reverse ids, sorted as :func:`tracer.graphs._finish`
    sorts them, plus each structure's atom count."""
    device = cell.device
    b = len(pos)
    n = torch.tensor([len(p) for p in pos], device=device)
    n_max = int(n.max())
    base = torch.cumsum(n, 0) - n
    padded = torch.zeros(b, n_max, 3, dtype=torch.float64, device=device)
    valid = torch.zeros(b, n_max, dtype=torch.bool, device=device)
    for i, p in enumerate(pos):
        padded[i, : len(p)] = p
        valid[i, : len(p)] = True
    frac = padded @ torch.linalg.inv(cell)
    shift = torch.floor(frac)
    wrapped = padded - shift @ cell
    axes = [torch.arange(-int(r), int(r) + 1, device=device) for r in reps]
    images = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    image_shift = images.to(torch.float64) @ cell  # [B, K, 3]
    # vec[b, t, s, k] = wrapped[b, s] + image_shift[b, k] - wrapped[b, t]
    vec = (
        wrapped[:, None, :, None, :]
        + image_shift[:, None, None, :, :]
        - wrapped[:, :, None, None, :]
    )
    dist = torch.linalg.norm(vec, dim=-1)  # [B, n, n, K]
    del vec
    k_zero = int((images == 0).all(dim=1).nonzero()[0, 0])
    ok = (dist <= cutoff) & valid[:, :, None, None] & valid[:, None, :, None]
    ok[:, :, :, k_zero] &= ~torch.eye(n_max, dtype=torch.bool, device=device)
    b_idx, t_idx, s_idx, k_idx = torch.nonzero(ok, as_tuple=True)
    d = dist[b_idx, t_idx, s_idx, k_idx]
    del dist, ok
    offset = images[k_idx] + shift[b_idx, t_idx].long() - shift[b_idx, s_idx].long()
    t_g, s_g = base[b_idx] + t_idx, base[b_idx] + s_idx
    total = int(n.sum())
    if max_neighbors is not None and t_g.numel() > 0:
        s_g, t_g, offset = cap_neighbors(s_g, t_g, offset, d, total, max_neighbors, tolerance)
    g = _finish(s_g, t_g, offset, total)
    return g.source, g.target, g.offset, g.reverse, n


def graphs_batched(
    ids: Sequence[str],
    arrays: Sequence[tuple[Tensor, Tensor, Tensor]],
    targets: Sequence[float] | None,
    *,
    cutoff: float,
    max_neighbors: int | None,
    unit: str = "eV/atom",
    device: str | torch.device = "cpu",
    tolerance: float = 1e-4,
    budget: float | None = None,
) -> GraphDataset:
    """The :class:`~tracer.dataset.GraphDataset` of ``(z, pos Å, cell Å)`` tensors that
    :func:`tracer.dataset.graphs_from_arrays` builds, computed chunk by chunk on ``device``
    (the dataset comes back on the CPU). ``budget``: padded pair-image distances per chunk
    (atoms² × images × structures), which bounds its memory (about 40 bytes each); default
    3e7 on a GPU, 2e6 on the CPU (cache-sized chunks).

    Raises ``ValueError`` naming the structure when an atom has no neighbour within the cutoff
    or an image offset leaves the int8 range, as the per-structure builder does."""
    device = torch.device(device)
    if budget is None:
        budget = 3e7 if device.type == "cuda" else 2e6
    n_atoms = np.array([len(z) for z, _, _ in arrays])
    if (n_atoms == 0).any():
        raise ValueError(f"{ids[int(np.argmin(n_atoms))]}: structure has no atoms")
    cells = torch.stack([c.to(torch.float64) for _, _, c in arrays])
    reps = torch.stack([image_ranges(c, cutoff) for c in cells])
    images = (2 * reps + 1).prod(dim=1).numpy()
    cost = n_atoms.astype(float) ** 2 * images
    per = [None] * len(arrays)
    for chunk in _chunks(cost, budget):
        pos = [arrays[i][1].to(device, torch.float64) for i in chunk]
        src, tgt, off, rev, n = _chunk_edges(
            pos, cells[chunk].to(device), reps[chunk].amax(0), cutoff, max_neighbors, tolerance
        )
        src, tgt, off, rev, n = (x.cpu() for x in (src, tgt, off, rev, n))
        base = torch.cumsum(n, 0) - n
        owner = torch.repeat_interleave(torch.arange(len(chunk)), n)[tgt]
        counts = torch.bincount(owner, minlength=len(chunk))
        e_start = torch.cumsum(counts, 0) - counts
        for j, i in enumerate(chunk):
            lo, hi = int(e_start[j]), int(e_start[j] + counts[j])
            sl = slice(lo, hi)
            per[i] = (src[sl] - base[j], tgt[sl] - base[j], off[sl], rev[sl] - lo)
    src_l, tgt_l, off_l, rev_l = [], [], [], []
    for rid, (z, _, _), (s, t, o, r) in zip(ids, arrays, per, strict=True):
        present = torch.zeros(len(z), dtype=torch.bool)
        present[t] = True
        if not bool(present.all()):
            lonely = torch.nonzero(~present).flatten().tolist()
            raise ValueError(f"{rid}: atoms {lonely[:5]} have no neighbour within {cutoff} Å")
        if o.numel() and int(o.abs().max()) > 127:
            raise ValueError(f"{rid}: image offsets beyond int8 range")
        src_l.append(s.to(torch.int32))
        tgt_l.append(t.to(torch.int32))
        off_l.append(o.to(torch.int8))
        rev_l.append(r.to(torch.int32))

    def ptr(counts: Sequence[int]) -> Tensor:
        return torch.tensor([0, *np.cumsum(counts)], dtype=torch.long)

    return GraphDataset(
        ids=list(ids),
        target=torch.tensor(
            list(targets) if targets is not None else [float("nan")] * len(ids),
            dtype=torch.float64,
        ),
        z=torch.cat([z.to(torch.int16) for z, _, _ in arrays]),
        pos=torch.cat([p.to(torch.float64) for _, p, _ in arrays]),
        cell=cells,
        atom_ptr=ptr(n_atoms.tolist()),
        source=torch.cat(src_l),
        target_atom=torch.cat(tgt_l),
        offset=torch.cat(off_l),
        reverse=torch.cat(rev_l),
        edge_ptr=ptr([len(s) for s in src_l]),
        cutoff=float(cutoff),
        max_neighbors=max_neighbors,
        unit=unit,
    )
