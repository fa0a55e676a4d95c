"""Is a structure inside the domain the ensemble was trained on? Checks a chemist can read.

Fitted on the training structures of the members (:func:`fit_domain`), applied to any structure
(:meth:`Domain.check`), each check with its own reason:

* **elements**: an element in no training structure ("never seen"), or in fewer than
  ``min_element_count`` of them ("rarely seen").
* **geometry**, from the model's own neighbour graph (so the same cutoff and cap): the shortest
  bond divided by the sum of the two atoms' covalent radii (ASE's table); each atom's nearest-
  neighbour distance against the training median for that pair of elements (log ratio; its
  smallest, median and largest over the atoms: squeezed, strained or rattled cells); the mean
  number of neighbours within 1.3 × the radii sum (coordination); the volume per atom (Å³); and
  the widest empty slab between atomic planes parallel to a cell face (Å: vacuum, surfaces,
  isolated molecules). A value outside the training structures' central range is flagged; the
  range's tail quantile is chosen on validation (:data:`RANGE_QUANTILES`: the widest whose
  validation flag rate, all checks together, stays within ``max_val_flagged``).
* **representation**: the mean Euclidean distance from the structure's embedding (the ensemble's
  final atom embeddings, averaged over atoms and members) to its ``k`` nearest training
  embeddings. The threshold is a quantile of the validation structures' distances, chosen on
  validation (``representation_quantile``), never on test.

Everything here is plain torch/numpy on tensors (no pymatgen), so the prediction path can use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from torch import Tensor

#: geometric descriptors and their meaning (all per structure)
GEOMETRY = {
    "min_bond_ratio": "shortest bond / sum of covalent radii",
    "bond_dev_min": "smallest log(nearest-neighbour distance / training median for the pair)",
    "bond_dev_median": "median log(nearest-neighbour distance / training median for the pair)",
    "bond_dev_max": "largest log(nearest-neighbour distance / training median for the pair)",
    "coordination": "mean neighbours within 1.3 × sum of covalent radii",
    "volume_per_atom": "volume per atom (Å³)",
    "largest_gap": "widest empty slab between atomic planes (Å)",
}
BOND_FACTOR = 1.3
#: tail quantiles tried for the geometric ranges, most sensitive first (chosen on validation)
RANGE_QUANTILES = (0.005, 0.0025, 0.001, 0.0)


def _covalent_radii() -> Tensor:
    from ase.data import covalent_radii

    return torch.as_tensor(np.asarray(covalent_radii), dtype=torch.float64)


@dataclass
class Geometry:
    """Raw per-structure geometry: each atom's element, its nearest neighbour's element and
    distance (Å), the shortest bond over radii, coordination, volume per atom (Å³) and the
    widest empty slab (Å)."""

    z: list[np.ndarray]
    partner: list[np.ndarray]
    nn_distance: list[np.ndarray]
    scalars: dict[str, np.ndarray]


def geometry_of(data: Any) -> Geometry:
    """:class:`Geometry` of every structure of a :class:`tracer.graphs.dataset.GraphDataset`."""
    radii = _covalent_radii()
    zs, partners, nns = [], [], []
    scal: dict[str, list[float]] = {k: [] for k in
                                    ("min_bond_ratio", "coordination", "volume_per_atom",
                                     "largest_gap")}  # fmt: skip
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
        nn = torch.full((n,), float("inf"), dtype=torch.float64).scatter_reduce(0, t, d, "amin")
        nearest = d == nn[t]
        partner = torch.zeros(n, dtype=torch.long)
        partner[t[nearest]] = z[s[nearest]]
        bonded = torch.bincount(t[ratio <= BOND_FACTOR], minlength=n).double()
        inv = torch.linalg.inv(cell)
        spacing = 1.0 / torch.linalg.norm(inv, dim=-2)
        frac = torch.sort(torch.remainder(pos @ inv, 1.0), dim=0).values
        gaps = torch.diff(torch.cat([frac, frac[:1] + 1.0]), dim=0) * spacing
        zs.append(z.numpy())
        partners.append(partner.numpy())
        nns.append(nn.numpy())
        scal["min_bond_ratio"].append(float(ratio.min()))
        scal["coordination"].append(float(bonded.mean()))
        scal["volume_per_atom"].append(float(torch.linalg.det(cell).abs()) / n)
        scal["largest_gap"].append(float(gaps.max()))
    return Geometry(zs, partners, nns, {k: np.asarray(v) for k, v in scal.items()})


def pair_medians(geometry: Geometry, min_count: int = 3) -> tuple[dict[tuple[int, int], float],
                                                                   float]:  # fmt: skip
    """Median nearest-neighbour distance (Å) per unordered element pair seen at least
    ``min_count`` times, and the median ratio of such distances to the covalent radii sum (used
    for pairs seen less often)."""
    radii = _covalent_radii().numpy()
    found: dict[tuple[int, int], list[float]] = {}
    ratios = []
    for z, p, d in zip(geometry.z, geometry.partner, geometry.nn_distance, strict=True):
        for a, b, x in zip(z, p, d, strict=True):
            found.setdefault((min(a, b), max(a, b)), []).append(float(x))
            ratios.append(float(x) / (radii[a] + radii[b]))
    medians = {(int(a), int(b)): float(np.median(v)) for (a, b), v in found.items()
               if len(v) >= min_count}  # fmt: skip
    return medians, float(np.median(ratios))


def bond_deviations(geometry: Geometry, medians: dict[tuple[int, int], float],
                    fallback_ratio: float) -> list[np.ndarray]:  # fmt: skip
    """Per structure, each atom's log(nearest-neighbour distance / training median for its pair)
    (``fallback_ratio`` × the covalent radii sum for a pair without a median)."""
    radii = _covalent_radii().numpy()
    out = []
    for z, p, d in zip(geometry.z, geometry.partner, geometry.nn_distance, strict=True):
        ref = np.array([medians.get((min(a, b), max(a, b)), fallback_ratio * (radii[a] + radii[b]))
                        for a, b in zip(z, p, strict=True)])  # fmt: skip
        out.append(np.log(d / ref))
    return out


def descriptors(geometry: Geometry, medians: dict[tuple[int, int], float],
                fallback_ratio: float) -> dict[str, np.ndarray]:  # fmt: skip
    """:data:`GEOMETRY` of every structure (the bond deviations against ``medians``)."""
    dev: dict[str, list[float]] = {"bond_dev_min": [], "bond_dev_median": [], "bond_dev_max": []}
    for lr in bond_deviations(geometry, medians, fallback_ratio):
        dev["bond_dev_min"].append(float(lr.min()))
        dev["bond_dev_median"].append(float(np.median(lr)))
        dev["bond_dev_max"].append(float(lr.max()))
    out = {k: np.asarray(v) for k, v in dev.items()}
    return {k: (out[k] if k in out else geometry.scalars[k]) for k in GEOMETRY}


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int, *,
                 exclude_self: bool = False) -> np.ndarray:  # fmt: skip
    """Mean Euclidean distance of each ``query`` row to its ``k`` nearest ``reference`` rows
    (``exclude_self``: the query is the reference; each row's zero distance to itself is left
    out)."""

    kk = k + 1 if exclude_self else k
    nn = NearestNeighbors(n_neighbors=kk).fit(reference)
    dist, _ = nn.kneighbors(query)
    return dist[:, 1:].mean(axis=1) if exclude_self else dist.mean(axis=1)


@dataclass
class Domain:
    """The fitted applicability domain (see the module docstring)."""

    element_counts: dict[int, int]
    pair_medians: dict[tuple[int, int], float]
    fallback_ratio: float
    ranges: dict[str, tuple[float, float]]
    range_quantile: float
    embeddings: np.ndarray  # [n_train, D] float32
    k: int
    representation_threshold: float
    representation_quantile: float
    min_element_count: int = 5

    def check(self, geometry: Geometry, embedding: np.ndarray | None) -> list[list[str]]:
        """The reasons each structure is out of the domain (empty list: inside)."""
        from ase.data import chemical_symbols

        desc = descriptors(geometry, self.pair_medians, self.fallback_ratio)
        dist = (knn_distance(embedding, self.embeddings, self.k) if embedding is not None
                else None)  # fmt: skip
        reasons: list[list[str]] = []
        for i, z in enumerate(geometry.z):
            why: list[str] = []
            counts = {int(e): self.element_counts.get(int(e), 0) for e in set(z.tolist())}
            never = sorted(e for e, c in counts.items() if c == 0)
            rare = sorted(e for e, c in counts.items() if 0 < c < self.min_element_count)
            if never:
                why.append("elements never in training: "
                           + ", ".join(chemical_symbols[e] for e in never))  # fmt: skip
            if rare:
                why.append("elements rare in training: " + ", ".join(
                    f"{chemical_symbols[e]} ({counts[e]})" for e in rare))  # fmt: skip
            for key, (lo, hi) in self.ranges.items():
                v = float(desc[key][i])
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
    train: Geometry,
    val: Geometry,
    train_embedding: np.ndarray,
    val_embedding: np.ndarray,
    *,
    k: int = 5,
    representation_quantile: float = 0.98,
    min_element_count: int = 5,
    max_val_flagged: float = 0.05,
) -> Domain:
    """Fit on the training structures; on validation: the representation threshold (the
    ``representation_quantile`` of the validation structures' kNN distances to training) and
    the geometric ranges' tail quantile (the first of :data:`RANGE_QUANTILES` whose validation
    flag rate, all checks together, is at most ``max_val_flagged``; 0: the training min-max)."""
    counts: dict[int, int] = {}
    for z in train.z:
        for e in {int(x) for x in z}:
            counts[e] = counts.get(e, 0) + 1
    medians, fallback = pair_medians(train)
    desc = descriptors(train, medians, fallback)
    val_dist = knn_distance(val_embedding, train_embedding, k)
    threshold = float(np.quantile(val_dist, representation_quantile))
    domain = None
    for q in RANGE_QUANTILES:
        ranges = {key: (float(np.quantile(v, q)), float(np.quantile(v, 1 - q)))
                  for key, v in desc.items()}  # fmt: skip
        domain = Domain(element_counts=counts, pair_medians=medians, fallback_ratio=fallback,
                        ranges=ranges, range_quantile=q,
                        embeddings=np.asarray(train_embedding, dtype=np.float32), k=k,
                        representation_threshold=threshold,
                        representation_quantile=representation_quantile,
                        min_element_count=min_element_count)  # fmt: skip
        flagged = np.mean([bool(r) for r in domain.check(val, val_embedding)])
        if flagged <= max_val_flagged:
            break
    assert domain is not None
    return domain
