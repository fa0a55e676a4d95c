"""Structures as tensors: a compact graph dataset that training and prediction read without
pymatgen.

:func:`structures_to_graphs` turns pymatgen structures into one :class:`GraphDataset` (positions,
cells, atomic numbers and the symmetric periodic edges of :func:`tracer.graphs.radius_graph_pbc`,
concatenated with pointer arrays). It is saved with :func:`torch.save` and loaded on any machine
that has torch; batches are cut from it by :meth:`GraphDataset.collate`. Triplets are not stored
(they are cheap to derive on the device and would dominate the file size).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tracer.graphs import PeriodicGraph, Triplets, radius_graph_pbc, triplets
from tracer.models.gemnet import GraphBatch, max_triplets_per_edge

FORMAT_VERSION = 1


@dataclass
class GraphDataset:
    """Concatenated per-structure tensors (float64 geometry, Å) with pointer arrays.

    ``atom_ptr[i]:atom_ptr[i+1]`` are structure ``i``'s atoms, ``edge_ptr`` likewise its edges;
    edge ``source``/``target``/``reverse`` indices are local to their structure.
    """

    ids: list[str]
    target: Tensor  # [S] float64, target unit (see ``unit``), nan when unknown
    z: Tensor  # [N] int16
    pos: Tensor  # [N, 3] float64
    cell: Tensor  # [S, 3, 3] float64
    atom_ptr: Tensor  # [S+1] int64
    source: Tensor  # [E] int32
    target_atom: Tensor  # [E] int32
    offset: Tensor  # [E, 3] int8
    reverse: Tensor  # [E] int32
    edge_ptr: Tensor  # [S+1] int64
    cutoff: float
    max_neighbors: int | None
    unit: str = "eV/atom"
    domain: Tensor | None = None  # [S] int64 domain (source database) index, None: one domain

    def __len__(self) -> int:
        return len(self.ids)

    def num_atoms(self) -> Tensor:
        return self.atom_ptr[1:] - self.atom_ptr[:-1]

    def num_edges(self) -> Tensor:
        return self.edge_ptr[1:] - self.edge_ptr[:-1]

    def triplet_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per structure: number of triplets, and most triplets of any one edge (the in-degree
        of its target atom minus one), as :func:`tracer.graphs.triplets` makes them."""
        n_atoms = self.num_atoms().cpu().numpy()
        n_edges = self.num_edges().cpu().numpy()
        owner = np.repeat(np.arange(len(self)), n_edges)
        atom = self.target_atom.cpu().numpy().astype(np.int64) + np.repeat(
            self.atom_ptr[:-1].cpu().numpy(), n_edges
        )
        deg = np.bincount(atom, minlength=int(n_atoms.sum()))
        atom_owner = np.repeat(np.arange(len(self)), n_atoms)
        n_trip = np.bincount(atom_owner, weights=deg * (deg - 1), minlength=len(self))
        k_max = np.zeros(len(self), dtype=np.int64)
        np.maximum.at(k_max, owner, deg[atom] - 1)
        return n_trip.astype(np.int64), k_max

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of the given ids (KeyError naming the first missing one)."""
        where = {rid: i for i, rid in enumerate(self.ids)}
        try:
            return np.array([where[i] for i in ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"id {exc.args[0]!r} is not in the graph dataset") from None

    def to(self, device: str | torch.device) -> GraphDataset:
        """A copy whose tensors live on ``device`` (batches are then cut there, no copies)."""
        moved = {
            k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()
        }
        return GraphDataset(**moved)

    @classmethod
    def concat(cls, parts: Sequence[GraphDataset]) -> GraphDataset:
        """The structures of ``parts`` in one dataset, ``domain`` = index of the part each came
        from (same graph settings and unit required; ids must not repeat across parts)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for part in parts[1:]:
            if (part.cutoff, part.max_neighbors, part.unit) != (
                first.cutoff,
                first.max_neighbors,
                first.unit,
            ):
                raise ValueError("datasets differ in cutoff, max_neighbors or unit")
        ids = [rid for part in parts for rid in part.ids]
        seen: set[str] = set()
        repeated = [rid for rid in ids if rid in seen or seen.add(rid)]  # type: ignore[func-returns-value]
        if repeated:
            raise ValueError(f"id {repeated[0]!r} is in more than one part")

        def ptr(name: str) -> Tensor:
            counts = [getattr(p, name).cpu().diff() for p in parts]
            return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.cat(counts), 0)])

        cat = lambda name: torch.cat([getattr(p, name).cpu() for p in parts])  # noqa: E731
        return cls(
            ids=ids,
            target=cat("target"),
            z=cat("z"),
            pos=cat("pos"),
            cell=cat("cell"),
            atom_ptr=ptr("atom_ptr"),
            source=cat("source"),
            target_atom=cat("target_atom"),
            offset=cat("offset"),
            reverse=cat("reverse"),
            edge_ptr=ptr("edge_ptr"),
            cutoff=first.cutoff,
            max_neighbors=first.max_neighbors,
            unit=first.unit,
            domain=torch.cat(
                [torch.full((len(p),), k, dtype=torch.long) for k, p in enumerate(parts)]
            ),
        )

    def collate(self, indices: Sequence[int] | np.ndarray) -> GraphBatch:
        """A :class:`GraphBatch` of the given structures (in that order), on this dataset's
        device, with its triplets precomputed."""
        dev = self.z.device
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=dev)
        a0, a1 = self.atom_ptr[idx], self.atom_ptr[idx + 1]
        e0, e1 = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        n_atoms, n_edges = a1 - a0, e1 - e0
        atom_sel = _ranges(a0, n_atoms)
        edge_sel = _ranges(e0, n_edges)
        atom_shift = torch.cumsum(n_atoms, 0) - n_atoms  # new start of each structure's atoms
        edge_shift = torch.cumsum(n_edges, 0) - n_edges
        per_edge_atom_shift = torch.repeat_interleave(atom_shift, n_edges)
        per_edge_edge_shift = torch.repeat_interleave(edge_shift, n_edges)
        target = self.target_atom[edge_sel].long() + per_edge_atom_shift
        trip = triplets(target, int(n_atoms.sum()))
        return GraphBatch(
            z=self.z[atom_sel].long(),
            pos=self.pos[atom_sel],
            cell=self.cell[idx],
            atom_batch=torch.repeat_interleave(torch.arange(len(idx), device=dev), n_atoms),
            source=self.source[edge_sel].long() + per_edge_atom_shift,
            target=target,
            offset=self.offset[edge_sel].long(),
            reverse=self.reverse[edge_sel].long() + per_edge_edge_shift,
            num_structures=len(idx),
            atom_counts=n_atoms,
            triplets=trip,
            k_max=max_triplets_per_edge(trip),
            domain=None if self.domain is None else self.domain[idx],
        )

    def collate_padded(
        self, indices: Sequence[int] | np.ndarray, shapes: Shapes
    ) -> tuple[GraphBatch, Tensor, Tensor]:
        """:meth:`collate` then :func:`pad_batch` to the first of ``shapes`` that holds the
        batch, with the targets (eV/atom)."""
        return pad_batch(self.collate(indices), self.targets(indices), shapes)

    def targets(self, indices: Sequence[int] | np.ndarray) -> Tensor:
        return self.target[
            torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.target.device)
        ]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format_version": FORMAT_VERSION, **self.__dict__}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GraphDataset:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"graph dataset not found: {path} (run the graphs stage)")
        payload: dict[str, Any] = torch.load(path, weights_only=False)
        version = payload.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: graph format {version}, expected {FORMAT_VERSION}")
        return cls(**payload)


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


def structure_tensors(structure: Any) -> tuple[Tensor, Tensor, Tensor]:
    """``(z [n] int64, pos [n,3] float64 Å, cell [3,3] float64 Å)`` of a pymatgen Structure."""
    z = torch.tensor([site.specie.Z for site in structure], dtype=torch.long)
    pos = torch.tensor(np.asarray(structure.cart_coords), dtype=torch.float64)
    cell = torch.tensor(np.asarray(structure.lattice.matrix), dtype=torch.float64)
    return z, pos, cell


def save_structure_tensors(
    path: str | Path,
    ids: Sequence[str],
    structures: Sequence[Any],
    targets: Sequence[float],
    unit: str,
) -> Path:
    """Write structures as plain tensors (z, pos, cell in Å) for machines without pymatgen."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [structure_tensors(s) for s in structures]
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "ids": list(ids),
            "targets": list(targets),
            "unit": unit,
            "z": [a[0] for a in arrays],
            "pos": [a[1] for a in arrays],
            "cell": [a[2] for a in arrays],
        },
        path,
    )
    return path


def load_structure_tensors(path: str | Path) -> dict[str, Any]:
    """Read a file of :func:`save_structure_tensors` (keys ids, targets, unit, z, pos, cell)."""
    payload: dict[str, Any] = torch.load(Path(path), weights_only=False)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unexpected format {payload.get('format_version')}")
    return payload


def _graph_job(args: tuple[str, np.ndarray, np.ndarray, float, int | None]) -> tuple:
    """Edges of one structure; numpy in and out (torch tensors would travel between processes
    as file descriptors and exhaust them)."""
    rid, pos, cell, cutoff, max_neighbors = args
    g = radius_graph_pbc(
        torch.from_numpy(pos), torch.from_numpy(cell), cutoff, max_neighbors=max_neighbors
    )
    return rid, g.source.numpy(), g.target.numpy(), g.offset.numpy(), g.reverse.numpy()


def graphs_from_arrays(
    ids: Sequence[str],
    arrays: Iterator[tuple[Tensor, Tensor, Tensor]] | Sequence[tuple[Tensor, Tensor, Tensor]],
    targets: Sequence[float] | None,
    *,
    cutoff: float,
    max_neighbors: int | None,
    unit: str = "eV/atom",
    workers: int = 1,
    progress: bool = False,
) -> GraphDataset:
    """Build a :class:`GraphDataset` from ``(z, pos, cell)`` tensors on the CPU.

    Args:
        workers: processes building graphs in parallel (1: in this process).

    Raises ``ValueError`` naming the structure when an atom has no neighbour within the cutoff.
    """
    from tqdm.auto import tqdm

    zs, poss, cells, srcs, tgts, offs, revs = [], [], [], [], [], [], []
    n_atoms, n_edges = [], []
    items = list(zip(ids, arrays, strict=True))
    jobs = [
        (rid, pos.double().numpy(), cell.double().numpy(), cutoff, max_neighbors)
        for rid, (_, pos, cell) in items
    ]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(
            workers, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            built = list(
                tqdm(
                    pool.imap(_graph_job, jobs, chunksize=16),
                    total=len(jobs),
                    desc="graphs",
                    disable=not progress,
                )
            )
    else:
        built = [_graph_job(j) for j in tqdm(jobs, desc="graphs", disable=not progress)]
    for (rid, (z, pos, cell)), (_, source, target, offset, reverse) in zip(
        items, built, strict=True
    ):
        g = PeriodicGraph(
            source=torch.from_numpy(source),
            target=torch.from_numpy(target),
            offset=torch.from_numpy(offset),
            reverse=torch.from_numpy(reverse),
        )
        lonely = set(range(len(z))) - set(g.target.tolist())
        if lonely:
            raise ValueError(
                f"{rid}: atoms {sorted(lonely)[:5]} have no neighbour within {cutoff} Å"
            )
        if int(g.offset.abs().max()) > 127:
            raise ValueError(f"{rid}: image offsets beyond int8 range")
        zs.append(z.to(torch.int16))
        poss.append(pos.to(torch.float64))
        cells.append(cell.to(torch.float64))
        srcs.append(g.source.cpu().to(torch.int32))
        tgts.append(g.target.cpu().to(torch.int32))
        offs.append(g.offset.cpu().to(torch.int8))
        revs.append(g.reverse.cpu().to(torch.int32))
        n_atoms.append(len(z))
        n_edges.append(g.num_edges)
    ptr = lambda counts: torch.tensor([0, *np.cumsum(counts)], dtype=torch.long)  # noqa: E731
    target = torch.tensor(
        list(targets) if targets is not None else [float("nan")] * len(items), dtype=torch.float64
    )
    return GraphDataset(
        ids=list(ids),
        target=target,
        z=torch.cat(zs),
        pos=torch.cat(poss),
        cell=torch.stack(cells),
        atom_ptr=ptr(n_atoms),
        source=torch.cat(srcs),
        target_atom=torch.cat(tgts),
        offset=torch.cat(offs),
        reverse=torch.cat(revs),
        edge_ptr=ptr(n_edges),
        cutoff=float(cutoff),
        max_neighbors=max_neighbors,
        unit=unit,
    )


def structures_to_graphs(
    ids: Sequence[str],
    structures: Sequence[Any],
    targets: Sequence[float] | None,
    *,
    cutoff: float,
    max_neighbors: int | None,
    unit: str = "eV/atom",
    progress: bool = False,
) -> GraphDataset:
    """Graphs of pymatgen structures (the one place where pymatgen meets the tensors)."""
    return graphs_from_arrays(
        ids,
        [structure_tensors(s) for s in structures],
        targets,
        cutoff=cutoff,
        max_neighbors=max_neighbors,
        unit=unit,
        progress=progress,
    )


def epoch_batches(
    indices: np.ndarray,
    num_edges: np.ndarray,
    *,
    batch_size: int,
    max_edges: int | None,
    seed: int,
    epoch: int,
) -> list[np.ndarray]:
    """The training batches of one epoch: ``indices`` shuffled by ``default_rng([seed, epoch +
    1])`` and cut by :func:`batches_by_size`. The one-process trainer takes them as they are; each
    DDP rank takes its part of every one (:func:`tracer.distributed.rank_batches`)."""
    rng = np.random.default_rng([seed, epoch + 1])
    return batches_by_size(indices, num_edges, batch_size=batch_size, max_edges=max_edges,
                           shuffle=True, rng=rng)  # fmt: skip


def scale_fit_batches(
    indices: np.ndarray, num_edges: np.ndarray, *, batch_size: int, seed: int, count: int
) -> list[np.ndarray]:
    """The training batches GemNet's scale factors are fitted on (before the first epoch): the
    first ``count`` batches of ``batch_size`` structures of ``indices`` shuffled by
    ``default_rng([seed, 0])`` (epochs use ``[seed, epoch + 1]``, :func:`epoch_batches`). The
    one-process trainer and every DDP rank fit on these same batches, so both start alike."""
    rng = np.random.default_rng([seed, 0])
    batches = batches_by_size(indices, num_edges, batch_size=batch_size, shuffle=True, rng=rng)
    return batches[:count]


def batches_by_size(
    indices: np.ndarray,
    num_edges: np.ndarray,
    *,
    batch_size: int,
    max_edges: int | None = None,
    shuffle: bool,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Split indices into batches of at most ``batch_size`` structures and ``max_edges`` edges."""
    order = rng.permutation(indices) if shuffle and rng is not None else np.asarray(indices)
    batches: list[np.ndarray] = []
    current: list[int] = []
    edges = 0
    for i in order:
        e = int(num_edges[i])
        if current and (len(current) >= batch_size or (max_edges and edges + e > max_edges)):
            batches.append(np.array(current))
            current, edges = [], 0
        current.append(int(i))
        edges += e
    if current:
        batches.append(np.array(current))
    return batches
