"""Is a structure inside the domain the ensemble was trained on? Checks a chemist can read.

Fitted on the training structures of the members (:func:`fit_domain`), applied to any structure
(:meth:`Domain.check`), each check with its own reason:

* **elements**: an element in no training structure ("never seen"), or in fewer than
  ``min_element_count`` of them ("rarely seen").
* **geometry**, from the model's own neighbour graph (so the same cutoff and cap): the shortest
  bond and the longest nearest-neighbour distance, each divided by the sum of the two atoms'
  covalent radii (ASE's table); the mean number of neighbours within 1.3 × that sum
  (coordination); and the volume per atom (Å³). A value outside the training structures' range
  (min to max) is flagged.
* **representation**: the mean Euclidean distance from the structure's embedding (the ensemble's
  final atom embeddings, averaged over atoms and members) to its ``k`` nearest training
  embeddings. The threshold is a quantile of the validation structures' distances, chosen on
  validation (``representation_quantile``), never on test.

Everything here is plain torch/numpy on tensors (no pymatgen), so the prediction path can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: geometric descriptors and their meaning (all per structure)
GEOMETRY = {
    "min_bond_ratio": "shortest bond / sum of covalent radii",
    "max_nn_ratio": "longest nearest-neighbour distance / sum of covalent radii",
    "coordination": "mean neighbours within 1.3 × sum of covalent radii",
    "volume_per_atom": "volume per atom (Å³)",
}
BOND_FACTOR = 1.3


def _covalent_radii() -> Tensor:
    from ase.data import covalent_radii

    return torch.as_tensor(np.asarray(covalent_radii), dtype=torch.float64)


def geometry_descriptors(data: Any) -> dict[str, np.ndarray]:
    """:data:`GEOMETRY` of every structure of a :class:`tracer.dataset.GraphDataset`."""
    radii = _covalent_radii()
    out: dict[str, list[float]] = {k: [] for k in GEOMETRY}
    for i in range(len(data)):
        a0, a1 = int(data.atom_ptr[i]), int(data.atom_ptr[i + 1])
        e0, e1 = int(data.edge_ptr[i]), int(data.edge_ptr[i + 1])
        z = data.z[a0:a1].long().cpu()
        pos = data.pos[a0:a1].double().cpu()
        cell = data.cell[i].double().cpu()
        s = data.source[e0:e1].long().cpu()
        t = data.target_atom[e0:e1].long().cpu()
        off = data.offset[e0:e1].double().cpu()
        d = torch.linalg.norm(pos[s] + off @ cell - pos[t], dim=-1)
        ratio = d / (radii[z[s]] + radii[z[t]])
        n = a1 - a0
        nn = torch.full((n,), float("inf"), dtype=torch.float64).scatter_reduce(
            0, t, ratio, "amin")  # fmt: skip
        bonded = torch.bincount(t[ratio <= BOND_FACTOR], minlength=n).double()
        out["min_bond_ratio"].append(float(ratio.min()))
        out["max_nn_ratio"].append(float(nn.max()))
        out["coordination"].append(float(bonded.mean()))
        out["volume_per_atom"].append(float(torch.linalg.det(cell).abs()) / n)
    return {k: np.asarray(v) for k, v in out.items()}


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int, *,
                 exclude_self: bool = False) -> np.ndarray:  # fmt: skip
    """Mean Euclidean distance of each ``query`` row to its ``k`` nearest ``reference`` rows
    (``exclude_self``: the query is the reference; each row's zero distance to itself is left
    out)."""
    from sklearn.neighbors import NearestNeighbors

    kk = k + 1 if exclude_self else k
    nn = NearestNeighbors(n_neighbors=kk).fit(reference)
    dist, _ = nn.kneighbors(query)
    return dist[:, 1:].mean(axis=1) if exclude_self else dist.mean(axis=1)


@dataclass
class Domain:
    """The fitted applicability domain (see the module docstring)."""

    element_counts: dict[int, int]
    ranges: dict[str, tuple[float, float]]
    embeddings: np.ndarray  # [n_train, D] float32
    k: int
    representation_threshold: float
    representation_quantile: float
    min_element_count: int = 5
    notes: dict[str, Any] = field(default_factory=dict)

    def check(self, z_per_structure: Sequence[np.ndarray], geometry: dict[str, np.ndarray],
              embedding: np.ndarray | None) -> list[list[str]]:  # fmt: skip
        """The reasons each structure is out of the domain (empty list: inside)."""
        from ase.data import chemical_symbols

        dist = (knn_distance(embedding, self.embeddings, self.k) if embedding is not None
                else None)  # fmt: skip
        reasons: list[list[str]] = []
        for i, z in enumerate(z_per_structure):
            why: list[str] = []
            never = sorted({int(e) for e in z if self.element_counts.get(int(e), 0) == 0})
            rare = sorted(
                {
                    int(e)
                    for e in z
                    if 0 < self.element_counts.get(int(e), 0) < self.min_element_count
                }
            )
            if never:
                why.append("elements never in training: "
                           + ", ".join(chemical_symbols[e] for e in never))  # fmt: skip
            if rare:
                why.append(
                    "elements rare in training: "
                    + ", ".join(f"{chemical_symbols[e]} ({self.element_counts[e]})" for e in rare)
                )
            for key, (lo, hi) in self.ranges.items():
                v = float(geometry[key][i])
                if v < lo or v > hi:
                    why.append(f"{GEOMETRY[key]} {v:.3g} outside training range "
                               f"[{lo:.3g}, {hi:.3g}]")  # fmt: skip
            if dist is not None and dist[i] > self.representation_threshold:
                why.append(
                    f"far from training structures in the model's representation "
                    f"(kNN distance {dist[i]:.3g} > {self.representation_threshold:.3g})"
                )
            reasons.append(why)
        return reasons

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        payload = asdict(self)
        payload["embeddings"] = torch.from_numpy(self.embeddings.astype(np.float32))
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Domain:
        payload = torch.load(Path(path), map_location="cpu", weights_only=False)
        payload["embeddings"] = payload["embeddings"].numpy()
        payload["ranges"] = {k: tuple(v) for k, v in payload["ranges"].items()}
        return cls(**payload)


def fit_domain(
    train_z: Sequence[np.ndarray],
    train_geometry: dict[str, np.ndarray],
    train_embedding: np.ndarray,
    val_embedding: np.ndarray,
    *,
    k: int = 5,
    representation_quantile: float = 0.98,
    min_element_count: int = 5,
) -> Domain:
    """Fit on the training structures; the representation threshold is the
    ``representation_quantile`` of the validation structures' kNN distances to training."""
    counts: dict[int, int] = {}
    for z in train_z:
        for e in {int(x) for x in z}:
            counts[e] = counts.get(e, 0) + 1
    ranges = {key: (float(np.min(v)), float(np.max(v))) for key, v in train_geometry.items()}
    val_dist = knn_distance(val_embedding, train_embedding, k)
    threshold = float(np.quantile(val_dist, representation_quantile))
    return Domain(element_counts=counts, ranges=ranges,
                  embeddings=np.asarray(train_embedding, dtype=np.float32), k=k,
                  representation_threshold=threshold,
                  representation_quantile=representation_quantile,
                  min_element_count=min_element_count)  # fmt: skip
