"""Periodic neighbour graphs of many structures at once, in plain torch (CPU or CUDA).

:func:`tracer.graphs.periodic.radius_graph_pbc` builds one structure's graph; screening thousands of
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

from tracer.graphs.dataset import GraphDataset
from tracer.graphs.periodic import _finish, cap_neighbors, image_ranges


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
    pos: Tensor,
    atom_start: Tensor,
    n: Tensor,
    cell: Tensor,
    reps: Tensor,
    cutoff: float,
    max_neighbors: int | None,
    tolerance: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Edges of a chunk of structures whose atoms are ``pos[atom_start[b]:][:n[b]]`` (``pos``
    of every structure, on the device): source/target atom ids numbered structure after
    structure within the chunk, offsets and reverse edge ids, sorted as
    :func:`tracer.graphs.periodic._finish` sorts them (so each structure's edges are contiguous)."""
    device = cell.device
    b = len(n)
    n_max = int(n.max())
    base = torch.cumsum(n, 0) - n
    owner = torch.repeat_interleave(torch.arange(b, device=device), n)
    local = torch.arange(owner.numel(), device=device) - base[owner]
    padded = torch.zeros(b, n_max, 3, dtype=torch.float64, device=device)
    valid = torch.zeros(b, n_max, dtype=torch.bool, device=device)
    padded[owner, local] = pos[atom_start[owner] + local]
    valid[owner, local] = True
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
    total = owner.numel()
    if max_neighbors is not None and t_g.numel() > 0:
        s_g, t_g, offset = cap_neighbors(s_g, t_g, offset, d, total, max_neighbors, tolerance)
    g = _finish(s_g, t_g, offset, total)
    return g.source, g.target, g.offset, g.reverse


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
    """The :class:`~tracer.graphs.dataset.GraphDataset` of ``(z, pos Å, cell Å)`` tensors that
    :func:`tracer.graphs.dataset.graphs_from_arrays` builds, computed chunk by chunk on ``device``
    (the dataset comes back on the CPU). ``budget``: padded pair-image distances per chunk
    (atoms² × images × structures), which bounds its memory (about 40 bytes each); default
    3e7 on a GPU, 2e6 on the CPU (cache-sized chunks). Positions go to the device once, and
    the edges of every chunk are put back in the structures' order by one stable sort: no step
    runs once per structure.

    Raises ``ValueError`` naming the structure when an atom has no neighbour within the cutoff
    or an image offset leaves the int8 range, as the per-structure builder does."""
    device = torch.device(device)
    if budget is None:
        budget = 3e7 if device.type == "cuda" else 2e6
    n_atoms = np.array([len(z) for z, _, _ in arrays])
    if (n_atoms == 0).any():
        raise ValueError(f"{ids[int(np.argmin(n_atoms))]}: structure has no atoms")
    cells = torch.stack([c.to(torch.float64) for _, _, c in arrays])
    reps = image_ranges(cells, cutoff)
    images = (2 * reps + 1).prod(dim=1).numpy()
    cost = n_atoms.astype(float) ** 2 * images
    pos = torch.cat([p.to(torch.float64) for _, p, _ in arrays])
    atom_ptr = _ptr(n_atoms)
    pos_dev, cells_dev = pos.to(device), cells.to(device)
    n_dev, start_dev = torch.from_numpy(n_atoms).to(device), atom_ptr[:-1].to(device)
    parts: list[tuple[Tensor, ...]] = []
    for chunk in _chunks(cost, budget):
        c = torch.from_numpy(chunk).to(device)
        src, tgt, off, rev = _chunk_edges(
            pos_dev, start_dev[c], n_dev[c], cells_dev[c], reps[chunk].amax(0), cutoff,
            max_neighbors, tolerance,
        )  # fmt: skip
        n = n_dev[c]
        base = torch.cumsum(n, 0) - n
        owner = torch.repeat_interleave(torch.arange(len(chunk), device=device), n)[tgt]
        counts = torch.bincount(owner, minlength=len(chunk))
        e_start = torch.cumsum(counts, 0) - counts
        parts.append((c[owner], src - base[owner], tgt - base[owner], off, rev - e_start[owner]))
    struct, src, tgt, off, rev = (torch.cat(x) for x in zip(*parts, strict=True))
    order = torch.argsort(struct, stable=True)  # chunk edges of a structure stay in their order
    struct, src, tgt, off, rev = (x[order].cpu() for x in (struct, src, tgt, off, rev))
    _check(ids, atom_ptr, struct, tgt, off, cutoff)
    return GraphDataset(
        ids=list(ids),
        target=torch.tensor(
            list(targets) if targets is not None else [float("nan")] * len(ids),
            dtype=torch.float64,
        ),
        z=torch.cat([z.to(torch.int16) for z, _, _ in arrays]),
        pos=pos,
        cell=cells,
        atom_ptr=atom_ptr,
        source=src.to(torch.int32),
        target_atom=tgt.to(torch.int32),
        offset=off.to(torch.int8),
        reverse=rev.to(torch.int32),
        edge_ptr=_ptr(torch.bincount(struct, minlength=len(ids)).numpy()),
        cutoff=float(cutoff),
        max_neighbors=max_neighbors,
        unit=unit,
    )


def _ptr(counts: np.ndarray) -> Tensor:
    return torch.tensor([0, *np.cumsum(counts)], dtype=torch.long)


def _check(
    ids: Sequence[str], atom_ptr: Tensor, struct: Tensor, tgt: Tensor, off: Tensor, cutoff: float
) -> None:
    """The per-structure builder's errors, for the first structure (in input order) that has
    one: an atom without a neighbour within ``cutoff`` Å, or an image offset beyond int8."""
    present = torch.zeros(int(atom_ptr[-1]), dtype=torch.bool)
    present[atom_ptr[struct] + tgt] = True
    lonely = torch.nonzero(~present).flatten()
    lonely_struct = torch.searchsorted(atom_ptr, lonely, right=True) - 1
    far = struct[(off.abs() > 127).any(dim=1)] if off.numel() else struct[:0]
    first_lonely = int(lonely_struct.min()) if lonely.numel() else len(ids)
    first_far = int(far.min()) if far.numel() else len(ids)
    if first_lonely < len(ids) and first_lonely <= first_far:
        atoms = (lonely[lonely_struct == first_lonely] - atom_ptr[first_lonely]).tolist()
        raise ValueError(f"{ids[first_lonely]}: atoms {atoms[:5]} have no neighbour within "
                         f"{cutoff} Å")  # fmt: skip
    if first_far < len(ids):
        raise ValueError(f"{ids[first_far]}: image offsets beyond int8 range")
