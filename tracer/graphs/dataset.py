"""Structures as tensors: a compact graph dataset that training and prediction read without
pymatgen.

:func:`structures_to_graphs` turns pymatgen structures into one :class:`GraphDataset` (positions,
cells, atomic numbers and the symmetric periodic edges of
:func:`tracer.graphs.periodic.radius_graph_pbc`,
concatenated with pointer arrays). It is saved with :func:`torch.save` and loaded on any machine
that has torch; batches are cut from it by :meth:`GraphDataset.collate`. Triplets are not stored
(they are cheap to derive on the device and would dominate the file size).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from tracer.graphs.batch import GraphBatch
from tracer.graphs.padding import Shapes, _ranges, pad_batch
from tracer.graphs.periodic import (
    PeriodicGraph,
    max_triplets_per_edge,
    radius_graph_pbc,
    triplets,
)

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
        of its target atom minus one), as :func:`tracer.graphs.periodic.triplets` makes them."""
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

    zs, poss, cells, srcs, tgts, offs, revs = [], [], [], [], [], [], []
    n_atoms, n_edges = [], []
    items = list(zip(ids, arrays, strict=True))
    jobs = [
        (rid, pos.double().numpy(), cell.double().numpy(), cutoff, max_neighbors)
        for rid, (_, pos, cell) in items
    ]
    if workers > 1:

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
    DDP rank takes its part of every one (:func:`tracer.training.distributed.rank_batches`)."""
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
