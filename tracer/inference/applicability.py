"""Is a structure inside the domain the ensemble was trained on? Checks a chemist can read.

Fitted on the training structures of the members (:func:`fit_domain`), applied to any structure
(:meth:`Domain.check`), each check with its own reason:

* **elements**: an element in no training structure ("never seen"), or in fewer than
  ``min_element_count`` of them ("rarely seen").
* **geometry**, from the model's own neighbour graph (so the same cutoff and cap): the shortest
  bond divided by the sum of the two atoms' covalent radii (ASE's table); each atom's nearest-
  neighbour distance against the distance a bond-length model expects (log ratio; its smallest,
  median and largest over the atoms: squeezed, strained or rattled cells); the mean number of
  neighbours within 1.3 × the radii sum (coordination); the volume per atom (Å³); and the widest
  empty slab between atomic planes parallel to a cell face (Å: vacuum, surfaces, isolated
  molecules). A value outside the training structures' central range is flagged; the ranges'
  tail quantiles are chosen on validation (:func:`fit_domain`): one for the strain check
  (``bond_dev_median``), one for the others (grids in :mod:`tracer.inference.thresholds`).
* **bond lengths** (:class:`BondLengths`): the expected nearest-neighbour distance of an atom is
  learned on the training atoms (scikit-learn's histogram gradient boosting) from the two
  elements (CGCNN's element bits and ASE's covalent radii) and the scale-free shape of the atom's
  neighbourhood (how many neighbours lie within 1.05, 1.1, 1.2, 1.3 and 1.5 × its nearest
  distance, and their mean atomic number). Under a uniform strain every feature stays the same
  and every distance moves by the strain, so the median log ratio of a strained cell moves by
  exactly log(1 + strain). The training structures' own ratios come from out-of-fold predictions
  (5 folds by structure), so their ranges are not narrowed by the fit.
* **symmetry**: a cell with no symmetry beyond translations (space group P1 within
  :data:`SYMPREC` Å, spglib) when such cells are rare in training (at most
  :data:`RARE_P1_FRACTION` of the training structures): rattled cells, amorphous and MD snapshots.
* **representation**: the mean Euclidean distance from the structure's embedding (the ensemble's
  final atom embeddings, averaged over atoms and members) to its ``k`` nearest training
  embeddings. The threshold is a quantile of the validation structures' distances.

The three quantiles are chosen together on validation, never on test: the setting that flags at
most ``max_val_flagged`` of the validation structures and detects the most of made-up shifted
copies of them (its worst kind), :func:`fit_domain`; grids and designs in
:mod:`tracer.inference.thresholds`.

Everything here is plain torch/numpy/scikit-learn/spglib on arrays (no pymatgen), so the
prediction path can use it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import NearestNeighbors
from torch import Tensor

from tracer.inference import thresholds as grids
from tracer.models.element_features import cgcnn_features

#: geometric descriptors and their meaning (all per structure)
GEOMETRY = {
    "min_bond_ratio": "shortest bond / sum of covalent radii",
    "bond_dev_min": "smallest log(nearest-neighbour distance / expected bond length)",
    "bond_dev_median": "median log(nearest-neighbour distance / expected bond length)",
    "bond_dev_max": "largest log(nearest-neighbour distance / expected bond length)",
    "coordination": "mean neighbours within 1.3 × sum of covalent radii",
    "volume_per_atom": "volume per atom (Å³)",
    "largest_gap": "widest empty slab between atomic planes (Å)",
}
BOND_FACTOR = 1.3
#: neighbour shells of an atom, in units of its nearest-neighbour distance (scale-free features)
SHELLS = (1.05, 1.1, 1.2, 1.3, 1.5)
#: spglib's distance tolerance (Å) for the symmetry check
SYMPREC = 0.1
#: the symmetry check applies when at most this fraction of the training structures is P1
RARE_P1_FRACTION = 0.01


def _covalent_radii() -> Tensor:
    from ase.data import covalent_radii

    return torch.as_tensor(np.asarray(covalent_radii), dtype=torch.float64)


def space_group(cell: np.ndarray, frac: np.ndarray, z: np.ndarray) -> int:
    """spglib's space-group number of a cell (rows: lattice vectors, Å; fractional positions;
    atomic numbers) within :data:`SYMPREC` Å; 1 (P1) when spglib finds no symmetric cell."""
    import spglib

    os.environ.setdefault("SPGLIB_WARNING", "OFF")  # its C library's notes on stderr
    old, spglib.error.OLD_ERROR_HANDLING = spglib.error.OLD_ERROR_HANDLING, False
    try:
        return int(spglib.get_symmetry_dataset((cell, frac, z), symprec=SYMPREC).number)
    except spglib.error.SpglibError:
        return 1
    finally:
        spglib.error.OLD_ERROR_HANDLING = old


@dataclass
class Geometry:
    """Raw per-structure geometry: each atom's element, its nearest neighbour's element and
    distance (Å), its neighbour counts within :data:`SHELLS` × that distance and their mean
    atomic number (within 1.3 ×); per structure the shortest bond over radii, coordination,
    volume per atom (Å³), the widest empty slab (Å) and the space-group number (spglib,
    :data:`SYMPREC`; 1 also when spglib finds no cell)."""

    z: list[np.ndarray]
    partner: list[np.ndarray]
    nn_distance: list[np.ndarray]
    shells: list[np.ndarray]
    shell_z: list[np.ndarray]
    scalars: dict[str, np.ndarray]


def geometry_of(data: Any) -> Geometry:
    """:class:`Geometry` of every structure of a :class:`tracer.graphs.dataset.GraphDataset`."""
    radii = _covalent_radii()
    zs, partners, nns, shells, shell_z = [], [], [], [], []
    scal: dict[str, list[float]] = {k: [] for k in
                                    ("min_bond_ratio", "coordination", "volume_per_atom",
                                     "largest_gap", "space_group")}  # fmt: skip
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
        rel = d / nn[t]
        counts = torch.stack([torch.bincount(t[rel <= f], minlength=n) for f in SHELLS], 1)
        first = rel <= 1.3
        zsum = torch.zeros(n, dtype=torch.float64).index_add(0, t[first], z[s[first]].double())
        inv = torch.linalg.inv(cell)
        spacing = 1.0 / torch.linalg.norm(inv, dim=-2)
        frac = torch.sort(torch.remainder(pos @ inv, 1.0), dim=0).values
        gaps = torch.diff(torch.cat([frac, frac[:1] + 1.0]), dim=0) * spacing
        zs.append(z.numpy())
        partners.append(partner.numpy())
        nns.append(nn.numpy())
        shells.append(counts.numpy())
        shell_z.append((zsum / counts[:, SHELLS.index(1.3)].double()).numpy())
        scal["space_group"].append(float(space_group(cell.numpy(), (pos @ inv).numpy(),
                                                     z.numpy())))  # fmt: skip
        scal["min_bond_ratio"].append(float(ratio.min()))
        scal["coordination"].append(float(bonded.mean()))
        scal["volume_per_atom"].append(float(torch.linalg.det(cell).abs()) / n)
        scal["largest_gap"].append(float(gaps.max()))
    return Geometry(zs, partners, nns, shells, shell_z,
                    {k: np.asarray(v) for k, v in scal.items()})  # fmt: skip


class BondLengths:
    """The expected nearest-neighbour distance (Å) of each atom (see the module docstring):
    a :class:`sklearn.ensemble.HistGradientBoostingRegressor` of log distance on
    :meth:`features`."""

    #: fixed before fitting; the feature set was chosen on validation (docs/screening.md)
    PARAMS: ClassVar[dict[str, Any]] = {"max_iter": 400, "learning_rate": 0.05, "random_state": 0}

    def __init__(self, model: Any) -> None:
        self.model = model

    @staticmethod
    def features(geometry: Geometry) -> np.ndarray:
        """Per atom of every structure (stacked): both elements' covalent radii (Å, smaller Z
        first) and their sum, the neighbour counts within :data:`SHELLS`, both elements' CGCNN
        bits and the first shell's mean atomic number: ``[atoms, 193]``."""
        bits = cgcnn_features().numpy()
        radii = _covalent_radii().numpy()
        rows = []
        for z, p, shells, shell_z in zip(geometry.z, geometry.partner, geometry.shells,
                                         geometry.shell_z, strict=True):  # fmt: skip
            a, b = np.minimum(z, p), np.maximum(z, p)
            rows.append(np.concatenate([
                np.stack([radii[a], radii[b], radii[a] + radii[b]], 1), shells,
                bits[a - 1], bits[b - 1], shell_z[:, None]], 1))  # fmt: skip
        return np.concatenate(rows)

    @staticmethod
    def target(geometry: Geometry) -> np.ndarray:
        """Every atom's log nearest-neighbour distance (log Å), stacked as :meth:`features`."""
        return np.log(np.concatenate(geometry.nn_distance))

    @classmethod
    def fit(cls, geometry: Geometry) -> BondLengths:
        """Fit on every atom of ``geometry`` (the training structures)."""
        model = HistGradientBoostingRegressor(**cls.PARAMS)
        return cls(model.fit(cls.features(geometry), cls.target(geometry)))

    def log_expected(self, geometry: Geometry) -> list[np.ndarray]:
        """Per structure, each atom's log expected nearest-neighbour distance (log Å)."""
        return _per_structure(self.model.predict(self.features(geometry)), geometry)

    @classmethod
    def out_of_fold(cls, geometry: Geometry, folds: int = 5) -> list[np.ndarray]:
        """:meth:`log_expected` of each training structure by a model fitted without it
        (``folds`` folds of whole structures)."""
        x, y = cls.features(geometry), cls.target(geometry)
        groups = np.repeat(np.arange(len(geometry.z)), [len(z) for z in geometry.z])
        flat = np.empty(len(y))
        for fit_rows, held in GroupKFold(n_splits=folds).split(x, y, groups):
            model = HistGradientBoostingRegressor(**cls.PARAMS).fit(x[fit_rows], y[fit_rows])
            flat[held] = model.predict(x[held])
        return _per_structure(flat, geometry)


def _per_structure(flat: np.ndarray, geometry: Geometry) -> list[np.ndarray]:
    """Stacked per-atom values split back into one array per structure of ``geometry``."""
    return np.split(flat, np.cumsum([len(z) for z in geometry.z])[:-1])


def bond_deviations(geometry: Geometry, log_expected: list[np.ndarray]) -> list[np.ndarray]:
    """Per structure, each atom's log(nearest-neighbour distance / expected distance)."""
    return [np.log(d) - e for d, e in zip(geometry.nn_distance, log_expected, strict=True)]


def descriptors(geometry: Geometry, log_expected: list[np.ndarray]) -> dict[str, np.ndarray]:
    """:data:`GEOMETRY` of every structure (the bond deviations against ``log_expected``, from
    :meth:`BondLengths.log_expected`)."""
    dev: dict[str, list[float]] = {"bond_dev_min": [], "bond_dev_median": [], "bond_dev_max": []}
    for lr in bond_deviations(geometry, log_expected):
        dev["bond_dev_min"].append(float(lr.min()))
        dev["bond_dev_median"].append(float(np.median(lr)))
        dev["bond_dev_max"].append(float(lr.max()))
    out = {k: np.asarray(v) for k, v in dev.items()}
    return {k: (out[k] if k in out else geometry.scalars[k]) for k in GEOMETRY}


def flagged_fraction(reasons: list[list[str]]) -> float:
    """The fraction of structures with at least one reason (of :meth:`Domain.check`)."""
    return float(np.mean([bool(r) for r in reasons]))


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
    bond_lengths: BondLengths
    p1_fraction: float  # of the training structures
    ranges: dict[str, tuple[float, float]]
    range_quantile: float
    strain_quantile: float
    embeddings: np.ndarray  # [n_train, D] float32
    k: int
    representation_threshold: float
    representation_quantile: float
    min_element_count: int = 5
    #: the strain check's lower tail when chosen apart from its upper one (``split-tails``)
    strain_low_quantile: float | None = None

    def check(self, geometry: Geometry, embedding: np.ndarray | None, *,
              precomputed: tuple[dict[str, np.ndarray], np.ndarray | None] | None = None,
              ) -> list[list[str]]:  # fmt: skip
        """The reasons each structure is out of the domain (empty list: inside).
        ``precomputed``: :meth:`parts` of these structures (when several thresholds are tried)."""
        from ase.data import chemical_symbols

        desc, dist = precomputed or self.parts(geometry, embedding)
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
            if (self.p1_fraction <= RARE_P1_FRACTION
                    and geometry.scalars["space_group"][i] == 1):  # fmt: skip
                why.append(f"no symmetry within {SYMPREC:g} Å (space group P1; "
                           f"{self.p1_fraction:.1%} of training structures)")  # fmt: skip
            if dist is not None and dist[i] > self.representation_threshold:
                why.append(
                    f"far from training structures in the model's representation "
                    f"(kNN distance {dist[i]:.3g} > {self.representation_threshold:.3g})"
                )
            reasons.append(why)
        return reasons

    def parts(self, geometry: Geometry, embedding: np.ndarray | None,
              ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:  # fmt: skip
        """What :meth:`check` computes before its thresholds: the :data:`GEOMETRY` descriptors
        (bond deviations against this domain's bond-length model) and the kNN distance of each
        embedding to training (None without embeddings)."""
        dist = (knn_distance(embedding, self.embeddings, self.k) if embedding is not None
                else None)  # fmt: skip
        return descriptors(geometry, self.bond_lengths.log_expected(geometry)), dist

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        payload = asdict(self)
        payload["embeddings"] = torch.from_numpy(self.embeddings.astype(np.float32))
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Domain:
        payload = torch.load(Path(path), map_location="cpu", weights_only=False)
        if "bond_lengths" not in payload:
            raise ValueError(
                f"{path}: a domain fitted by an earlier tracer (pair medians, no "
                "bond-length model); refit it with `tracer fit-domain --force`"
            )
        payload["embeddings"] = payload["embeddings"].numpy()
        payload["ranges"] = {k: tuple(v) for k, v in payload["ranges"].items()}
        return cls(**payload)


def fit_domain(
    train: Geometry,
    val: Geometry,
    train_embedding: np.ndarray,
    val_embedding: np.ndarray,
    **choice: Any,
) -> Domain:
    """Fit on the training structures (:func:`fit_training`), set the thresholds on validation
    (:func:`choose_thresholds`, which takes ``choice``: the shifted validation copies, ``k``,
    the grids, ``min_element_count`` and ``max_val_flagged``)."""
    return choose_thresholds(fit_training(train), train_embedding, val, val_embedding, **choice)


@dataclass
class TrainingFit:
    """What :func:`fit_domain` fits on the training structures: structures per element, the
    bond-length model, the P1 fraction and every descriptor (bond deviations out of fold)."""

    element_counts: dict[int, int]
    bond_lengths: BondLengths
    p1_fraction: float
    descriptors: dict[str, np.ndarray]


def fit_training(train: Geometry) -> TrainingFit:
    """The training part of :func:`fit_domain`."""
    counts: dict[int, int] = {}
    for z in train.z:
        for e in {int(x) for x in z}:
            counts[e] = counts.get(e, 0) + 1
    return TrainingFit(counts, BondLengths.fit(train),
                       float(np.mean(train.scalars["space_group"] == 1)),
                       descriptors(train, BondLengths.out_of_fold(train)))  # fmt: skip


def choose_thresholds(
    fitted: TrainingFit,
    train_embedding: np.ndarray,
    val: Geometry,
    val_embedding: np.ndarray,
    *,
    shifted_val: dict[str, tuple[Geometry, np.ndarray]] | None = None,
    k: int = 5,
    representation_quantiles: Sequence[float] = grids.REPRESENTATION_QUANTILES,
    strain_quantiles: Sequence[float] = grids.STRAIN_QUANTILES,
    strain_low_quantiles: Sequence[float] | None = None,
    range_quantiles: Sequence[float] = grids.RANGE_QUANTILES,
    upper_only: Sequence[str] = (),
    min_element_count: int = 5,
    max_val_flagged: float = grids.MAX_VAL_FLAGGED,
) -> Domain:
    """The thresholds of a domain, chosen on validation for the training fit ``fitted``.

    Chosen over the grid of the representation quantile (of the validation structures' kNN
    distances to training), the tail quantile of the strain check's range (``bond_dev_median``,
    of the training values) and the tail quantile of the other ranges: among the settings that
    flag at most ``max_val_flagged`` of the validation structures, the one whose smallest
    detection rate over the ``shifted_val`` kinds (made-up shifted copies of the validation
    structures: geometry and embedding) is highest; ties, or no shifted copies, go to the first
    such setting in grid order (each sequence is given most sensitive first). When no setting
    qualifies, the least sensitive one (the largest representation quantile, training min-max
    ranges) is taken. ``strain_low_quantiles``: the strain check's lower tails, searched apart
    (None: one tail for both sides); ``upper_only``: descriptors bounded above only."""
    counts, bonds, p1, desc = (fitted.element_counts, fitted.bond_lengths, fitted.p1_fraction,
                               fitted.descriptors)  # fmt: skip
    shifted_val = shifted_val or {}
    best: tuple[tuple[float, int], Domain] | None = None
    lows: Sequence[float | None] = (None,) if strain_low_quantiles is None else strain_low_quantiles
    grid = [(r, s, sl, q) for r in representation_quantiles for s in strain_quantiles
            for sl in lows for q in range_quantiles]  # fmt: skip
    embeddings = np.asarray(train_embedding, dtype=np.float32)
    pre = {name: (descriptors(g, bonds.log_expected(g)), knn_distance(e, embeddings, k))
           for name, (g, e) in {"val": (val, val_embedding), **shifted_val}.items()}  # fmt: skip
    for index, (rq, sq, sl, q) in enumerate(grid):
        ranges = {}
        for key, v in desc.items():
            lo_tail, hi_tail = ((sq if sl is None else sl, sq) if key == "bond_dev_median"
                                else (q, q))  # fmt: skip
            ranges[key] = (-np.inf if key in upper_only else float(np.quantile(v, lo_tail)),
                           float(np.quantile(v, 1 - hi_tail)))  # fmt: skip
        domain = Domain(element_counts=counts, bond_lengths=bonds, p1_fraction=p1,
                        ranges=ranges, range_quantile=q, strain_quantile=sq,
                        embeddings=embeddings, k=k,
                        representation_threshold=float(np.quantile(pre["val"][1], rq)),
                        representation_quantile=rq,
                        min_element_count=min_element_count,
                        strain_low_quantile=sl)  # fmt: skip
        last = index == len(grid) - 1
        val_rate = flagged_fraction(domain.check(val, None, precomputed=pre["val"]))
        if val_rate > max_val_flagged:
            if last and best is None:
                best = ((0.0, -index), domain)
            continue
        detected = [flagged_fraction(domain.check(g, None, precomputed=pre[name]))
                    for name, (g, _) in shifted_val.items()]  # fmt: skip
        score = (float(min(detected)) if detected else 0.0, -index)
        if best is None or score > best[0]:
            best = (score, domain)
    assert best is not None
    return best[1]
