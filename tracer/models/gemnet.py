r"""GemNet-T for periodic crystals, predicting formation energy per atom.

GemNet-T is the triplets-only variant of the geometric message passing network of
J. Gasteiger, F. Becker & S. Günnemann, "GemNet: Universal Directional Graph Neural Networks for
Molecules", NeurIPS 2021 (arXiv:2106.08903). Messages live on directed edges; each interaction
block updates the embedding :math:`m_{ca}` of edge :math:`c\to a` from the embeddings of all other
edges :math:`b\to a` into the same atom, weighted by a basis of the distance :math:`d_{ba}`, and a
bilinear form in the basis of the distance :math:`d_{ca}` and the angle :math:`\angle cab`:

.. math::
    m_{ca}^{\prime} = \sum_{b \ne c} W\big(e_\text{RBF}(d_{ca}),\,
        Y_l(\cos\angle_{cab})\big)\,\big(m_{ba} \odot e_\text{RBF}(d_{ba})\big)

computed in the "efficient" order (sum over neighbours before the bilinear layer). Atom
embeddings aggregate the edge messages; an output block after the embedding and after every
interaction block adds a per-atom energy. The prediction is the **mean** over the atoms of a
structure, i.e. a (normalised) energy per atom, so it is independent of the choice of cell.

The architecture follows the paper and the reference implementation in fairchem
(``fairchem.core.models.gemnet``); this is an independent implementation in plain torch
(periodic graph and triplets from :mod:`tracer.graphs.periodic`), not a copy. Scale factors that
keep
activations at unit variance are fitted on training batches (:func:`fit_scale_factors`).

Gathers along the edge and triplet axes use :func:`torch.index_select`, whose backward is a
scatter-add; the backward of advanced indexing (``x[idx]``) on CUDA sorts the indices and sums
duplicates serially, which took 9 of the 26 ms of kernel time of a padded batch-32 step on an
H100 (``benchmarks/profile_step.py --padded``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from tracer.graphs.batch import GraphBatch
from tracer.graphs.periodic import (
    Triplets,
    max_triplets_per_edge,
    triplet_cosines,
    triplets,
)
from tracer.models.element_features import cgcnn_features

# ---------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GemNetTConfig:
    """GemNet-T hyperparameters (names as in the paper / fairchem). Lengths in Å.

    Defaults are fairchem's GemNet-T settings for OC20 except the embedding sizes, which the
    profiles set (``params.yaml: gemnet``). ``atom_features``: ``learned`` is the reference's
    embedding per atomic number; ``cgcnn`` starts each element from a linear projection of CGCNN's
    92 element-property bits (:mod:`tracer.models.element_features`, as ALIGNN's input) plus a
    learned per-element residual that starts at zero. ``variance_head``: each output block also
    gives a second value per atom, and the model returns ``[B, 2]``: the mean and a raw value
    whose softplus is the predicted variance (:func:`mean_and_variance`; Gaussian negative
    log-likelihood training, deep ensembles proper); off, one value per structure ``[B]``.
    """

    kind: ClassVar[str] = "gemnet_t"
    num_spherical: int = 7
    num_radial: int = 128
    num_blocks: int = 3
    emb_size_atom: int = 256
    emb_size_edge: int = 256
    emb_size_trip: int = 64
    emb_size_rbf: int = 16
    emb_size_cbf: int = 16
    emb_size_bil_trip: int = 64
    num_before_skip: int = 1
    num_after_skip: int = 2
    num_concat: int = 1
    num_atom: int = 3
    cutoff: float = 6.0
    max_neighbors: int = 50
    rbf: Literal["gaussian", "spherical_bessel"] = "gaussian"
    envelope_exponent: int = 5
    num_elements: int = 100
    output_init: Literal["HeOrthogonal", "zeros"] = "HeOrthogonal"
    atom_features: Literal["learned", "cgcnn"] = "learned"
    variance_head: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_params(cls, gemnet: dict[str, Any], graph: dict[str, Any]) -> GemNetTConfig:
        """From the ``gemnet`` and ``graph`` sections of ``params.yaml``."""
        return cls(
            **gemnet, cutoff=float(graph["cutoff_angstrom"]), max_neighbors=graph["max_neighbors"]
        )


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


_INITIALISE: ContextVar[bool] = ContextVar("tracer_gemnet_initialise", default=True)


@contextmanager
def weights_to_be_loaded() -> Iterator[None]:
    """Within it, :func:`he_orthogonal_` leaves weights as they are: for a model whose every
    weight is loaded from a file next (:func:`tracer.models.registry.build_model` with
    ``initialise=False``). The orthogonal initialisation costs a QR decomposition per layer,
    about 500 per five-member ensemble: seconds on a busy CPU, for weights then overwritten."""
    token = _INITIALISE.set(False)
    try:
        yield
    finally:
        _INITIALISE.reset(token)


def he_orthogonal_(weight: Tensor) -> Tensor:
    """Orthogonal init rescaled to variance ``1 / fan_in`` (fan-in = last dim of the input);
    left as it is inside :func:`weights_to_be_loaded`."""
    if not _INITIALISE.get():
        return weight
    with torch.no_grad():
        shape = weight.shape
        flat = weight.view(shape[0], -1) if weight.dim() > 1 else weight.view(1, -1)
        nn.init.orthogonal_(flat)
        fan_in = flat.shape[1] if weight.dim() == 2 else math.prod(shape[:-1])
        flat -= flat.mean(dim=1, keepdim=True)
        flat /= flat.std(dim=1, keepdim=True).clamp_min(1e-12)
        flat *= math.sqrt(1.0 / fan_in)
    return weight


class ScaledSiLU(nn.Module):
    """SiLU divided by 0.6, keeping unit-variance inputs at roughly unit variance."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.silu(x) * (1.0 / 0.6)


class Dense(nn.Module):
    """Linear layer (He-orthogonal init) with optional scaled-SiLU activation."""

    def __init__(
        self, n_in: int, n_out: int, *, bias: bool = False, activation: bool = False
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        self.act: nn.Module = ScaledSiLU() if activation else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self, init: Callable[[Tensor], Tensor] = he_orthogonal_) -> None:
        init(self.linear.weight)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.linear(x))


class ResidualLayer(nn.Module):
    """``(x + act(W2 act(W1 x))) / sqrt(2)``."""

    def __init__(self, units: int, n_layers: int = 2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(*[Dense(units, units, activation=True) for _ in range(n_layers)])

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.mlp(x)) * (1.0 / math.sqrt(2.0))


class ScaleFactor(nn.Module):
    """A scalar that rescales ``x`` to the root-mean-square of a reference, fitted on data.

    While fitting, it accumulates ``mean(ref²)`` and ``mean(x²)`` over batches; :meth:`finish`
    sets ``scale = sqrt(mean(ref²) / mean(x²))``. It is stored as a buffer (not trained).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("fitted", torch.tensor(False))
        self._fitting = False
        self._sums = [0.0, 0.0, 0]
        self._seen_hook: Callable[[ScaleFactor], None] | None = None

    def start(self) -> None:
        self._fitting, self._sums = True, [0.0, 0.0, 0]

    def finish(self) -> float:
        var_ref, var_x, n = self._sums
        self._fitting = False
        if n == 0 or var_x <= 0:
            raise RuntimeError("scale factor saw no data while fitting")
        value = math.sqrt((var_ref / n) / (var_x / n))
        self.scale.fill_(value)
        self.fitted.fill_(True)
        return value

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        if self._seen_hook is not None:
            self._seen_hook(self)
        if self._fitting:
            self._sums[0] += float((ref.detach().double() ** 2).mean())
            self._sums[1] += float((x.detach().double() ** 2).mean())
            self._sums[2] += 1
        return x * self.scale


class PolynomialEnvelope(nn.Module):
    """Smooth cutoff ``u(d) = 1 + a d^p + b d^{p+1} + c d^{p+2}`` on ``d = r / cutoff`` < 1."""

    def __init__(self, exponent: int) -> None:
        super().__init__()
        p = exponent
        self.p = p
        self.a = -(p + 1) * (p + 2) / 2.0
        self.b = p * (p + 2.0)
        self.c = -p * (p + 1) / 2.0

    def forward(self, d_scaled: Tensor) -> Tensor:
        p = self.p
        env = 1 + self.a * d_scaled**p + self.b * d_scaled ** (p + 1) + self.c * d_scaled ** (p + 2)
        return torch.where(d_scaled < 1, env, torch.zeros_like(env))


class RadialBasis(nn.Module):
    """Radial basis of distances (Å) with a polynomial envelope, ``[E, num_radial]``.

    ``gaussian``: Gaussians on [0, 1] in ``r / cutoff`` (fairchem's OC20 choice);
    ``spherical_bessel``: :math:`\\sqrt{2/c^3}\\,\\sin(n\\pi r/c) / (r/c)` (the GemNet paper's).
    """

    def __init__(self, num_radial: int, cutoff: float, kind: str, envelope_exponent: int) -> None:
        super().__init__()
        self.inv_cutoff = 1.0 / cutoff
        self.kind = kind
        self.envelope = PolynomialEnvelope(envelope_exponent)
        if kind == "gaussian":
            offsets = torch.linspace(0, 1, num_radial)
            self.register_buffer("offsets", offsets)
            self.coeff = -0.5 / float(offsets[1] - offsets[0]) ** 2
        elif kind == "spherical_bessel":
            self.register_buffer("freq", math.pi * torch.arange(1, num_radial + 1).float())
            self.norm = math.sqrt(2.0 * self.inv_cutoff**3)
        else:
            raise ValueError(f"unknown radial basis {kind!r}")

    def forward(self, d: Tensor) -> Tensor:
        ds = d * self.inv_cutoff
        env = self.envelope(ds)[:, None]
        if self.kind == "gaussian":
            basis = torch.exp(self.coeff * (ds[:, None] - self.offsets) ** 2)
        else:
            basis = self.norm * torch.sin(self.freq * ds[:, None]) / ds[:, None]
        return env * basis


def spherical_harmonics_m0(cos_theta: Tensor, num_spherical: int) -> Tensor:
    """Real spherical harmonics :math:`Y_l^0` for l < num_spherical, ``[T, num_spherical]``.

    :math:`Y_l^0(\\theta) = \\sqrt{(2l+1)/4\\pi}\\,P_l(\\cos\\theta)` with Legendre polynomials
    from Bonnet's recursion.
    """
    x = cos_theta
    polys = [torch.ones_like(x), x]
    for n in range(1, num_spherical - 1):
        polys.append(((2 * n + 1) * x * polys[n] - n * polys[n - 1]) / (n + 1))
    norms = [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)]  # noqa: E741
    # scaled by Python floats: no host-to-device copy (the step may be recorded as a CUDA graph)
    return torch.stack([p * c for p, c in zip(polys, norms, strict=False)], dim=1)


class EfficientDownProjection(nn.Module):
    """Combines the radial basis of the output edge with a weight tensor, and packs the
    per-triplet spherical basis into a zero-padded ``[E, num_spherical, K_max]`` array."""

    def __init__(self, num_spherical: int, num_radial: int, emb_size_cbf: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_spherical, num_radial, emb_size_cbf))
        he_orthogonal_(self.weight)

    def forward(
        self, rbf: Tensor, sph: Tensor, trip: Triplets, k_max: int
    ) -> tuple[Tensor, Tensor]:
        # rbf [E, R] · W [S, R, C] -> [E, C, S]
        rbf_w = torch.einsum("er,src->ecs", rbf, self.weight)
        sph_dense = sph.new_zeros(rbf.shape[0], k_max, sph.shape[1])
        sph_dense[trip.edge_out, trip.slot] = sph
        return rbf_w, sph_dense.transpose(1, 2)  # [E, C, S], [E, S, K]


class EfficientBilinear(nn.Module):
    """Sum over neighbouring edges, then the bilinear layer, in the efficient order."""

    def __init__(self, emb_size_trip: int, emb_size_cbf: int, units_out: int) -> None:
        super().__init__()
        self.emb_size_trip = emb_size_trip
        self.weight = nn.Parameter(torch.empty(emb_size_trip, emb_size_cbf, units_out))
        he_orthogonal_(self.weight)

    def forward(
        self, basis: tuple[Tensor, Tensor], m_in: Tensor, trip: Triplets, k_max: int
    ) -> Tensor:
        rbf_w, sph = basis  # [E, C, S], [E, S, K]
        m_dense = m_in.new_zeros(rbf_w.shape[0], k_max, self.emb_size_trip)
        m_dense[trip.edge_out, trip.slot] = m_in
        sum_k = torch.bmm(sph, m_dense)  # [E, S, trip]
        rbf_sum = torch.bmm(rbf_w, sum_k)  # [E, C, trip]
        return torch.einsum("ect,tco->eo", rbf_sum, self.weight)


class EdgeEmbedding(nn.Module):
    """Edge embedding from ``[h_source, h_target, features]``."""

    def __init__(self, atom_features: int, edge_features: int, out_features: int) -> None:
        super().__init__()
        self.dense = Dense(2 * atom_features + edge_features, out_features, activation=True)

    def forward(self, h: Tensor, m: Tensor, source: Tensor, target: Tensor) -> Tensor:
        return self.dense(torch.cat([h.index_select(0, source), h.index_select(0, target), m], -1))


class AtomUpdateBlock(nn.Module):
    """Aggregate edge messages (weighted by a radial basis) into atom embeddings."""

    def __init__(
        self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, n_hidden: int
    ) -> None:
        super().__init__()
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_sum = ScaleFactor()
        self.layers = nn.Sequential(
            Dense(emb_size_edge, emb_size_atom, activation=True),
            *[ResidualLayer(emb_size_atom) for _ in range(n_hidden)],
        )

    def aggregate(self, m: Tensor, rbf: Tensor, target: Tensor, num_atoms: int) -> Tensor:
        x = m * self.dense_rbf(rbf)
        summed = x.new_zeros(num_atoms, x.shape[1]).index_add_(0, target, x)
        return self.scale_sum(summed, ref=m)

    def forward(self, m: Tensor, rbf: Tensor, target: Tensor, num_atoms: int) -> Tensor:
        return self.layers(self.aggregate(m, rbf, target, num_atoms))


class OutputBlock(AtomUpdateBlock):
    """Atom update followed by a dense layer to ``num_outputs`` values per atom (the energy;
    with a variance head, also the raw variance)."""

    def __init__(
        self,
        emb_size_atom: int,
        emb_size_edge: int,
        emb_size_rbf: int,
        n_hidden: int,
        output_init: str,
        num_outputs: int = 1,
    ) -> None:
        super().__init__(emb_size_atom, emb_size_edge, emb_size_rbf, n_hidden)
        self.out = Dense(emb_size_atom, num_outputs)
        if output_init == "zeros":
            self.out.reset_parameters(nn.init.zeros_)

    def forward(self, m: Tensor, rbf: Tensor, target: Tensor, num_atoms: int) -> Tensor:
        return self.out(super().forward(m, rbf, target, num_atoms))


class TripletInteraction(nn.Module):
    """Update edge embeddings from neighbouring edges through distances and angles."""

    def __init__(self, cfg: GemNetTConfig) -> None:
        super().__init__()
        e = cfg.emb_size_edge
        self.dense_ba = Dense(e, e, activation=True)
        self.mlp_rbf = Dense(cfg.emb_size_rbf, e)
        self.scale_rbf = ScaleFactor()
        self.down = Dense(e, cfg.emb_size_trip, activation=True)
        self.bilinear = EfficientBilinear(
            cfg.emb_size_trip, cfg.emb_size_cbf, cfg.emb_size_bil_trip
        )
        self.scale_cbf_sum = ScaleFactor()
        self.up_ca = Dense(cfg.emb_size_bil_trip, e, activation=True)
        self.up_ac = Dense(cfg.emb_size_bil_trip, e, activation=True)

    def forward(
        self,
        m: Tensor,
        rbf3: Tensor,
        cbf3: tuple[Tensor, Tensor],
        trip: Triplets,
        k_max: int,
        reverse: Tensor,
    ) -> Tensor:
        x_ba = self.dense_ba(m)
        x_ba = self.scale_rbf(x_ba * self.mlp_rbf(rbf3), ref=x_ba)
        x_ba = self.down(x_ba).index_select(0, trip.edge_in)  # [T, trip]
        x = self.scale_cbf_sum(self.bilinear(cbf3, x_ba, trip, k_max), ref=x_ba)
        # the same sum serves edge c→a and, swapped, its reverse a→c
        return (self.up_ca(x) + self.up_ac(x).index_select(0, reverse)) * (1.0 / math.sqrt(2.0))


class InteractionBlock(nn.Module):
    """One GemNet-T interaction block: triplet interaction, edge and atom updates."""

    def __init__(self, cfg: GemNetTConfig) -> None:
        super().__init__()
        e = cfg.emb_size_edge
        self.dense_ca = Dense(e, e, activation=True)
        self.triplet = TripletInteraction(cfg)
        self.before_skip = nn.Sequential(*[ResidualLayer(e) for _ in range(cfg.num_before_skip)])
        self.after_skip = nn.Sequential(*[ResidualLayer(e) for _ in range(cfg.num_after_skip)])
        self.atom_update = AtomUpdateBlock(cfg.emb_size_atom, e, cfg.emb_size_rbf, cfg.num_atom)
        self.concat = EdgeEmbedding(cfg.emb_size_atom, e, e)
        self.residual_m = nn.Sequential(*[ResidualLayer(e) for _ in range(cfg.num_concat)])

    def forward(
        self,
        h: Tensor,
        m: Tensor,
        rbf3: Tensor,
        cbf3: tuple[Tensor, Tensor],
        trip: Triplets,
        k_max: int,
        rbf_h: Tensor,
        g: GraphBatch,
    ) -> tuple[Tensor, Tensor]:
        s = 1.0 / math.sqrt(2.0)
        x = (self.dense_ca(m) + self.triplet(m, rbf3, cbf3, trip, k_max, g.reverse)) * s
        x = self.before_skip(x)
        m = self.after_skip((m + x) * s)
        h = (h + self.atom_update(m, rbf_h, g.target, g.num_atoms)) * s
        m2 = self.residual_m(self.concat(h, m, g.source, g.target))
        return h, (m + m2) * s


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def check_atomic_numbers(z: Tensor, num_elements: int) -> None:
    """Raise ``ValueError`` unless every atomic number lies in 1..num_elements."""
    lo, hi = int(z.min()), int(z.max())
    if lo < 1 or hi > num_elements:
        raise ValueError(f"atomic numbers {lo}..{hi} outside 1..{num_elements}")


class GemNetT(nn.Module):
    """GemNet-T energy model; :meth:`forward` returns one value per structure, ``[B]``.

    The value is the mean over a structure's atoms of the per-atom outputs, in the units of the
    training targets after normalisation (formation energy per atom, standardised with training
    statistics; see :class:`tracer.training.normalization.TargetScaler`).

    Args:
        config: hyperparameters, see :class:`GemNetTConfig`.
    """

    def __init__(self, config: GemNetTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.radial = RadialBasis(cfg.num_radial, cfg.cutoff, cfg.rbf, cfg.envelope_exponent)
        self.mlp_rbf3 = Dense(cfg.num_radial, cfg.emb_size_rbf)
        self.mlp_cbf3 = EfficientDownProjection(cfg.num_spherical, cfg.num_radial, cfg.emb_size_cbf)
        self.mlp_rbf_h = Dense(cfg.num_radial, cfg.emb_size_rbf)
        self.mlp_rbf_out = Dense(cfg.num_radial, cfg.emb_size_rbf)
        self.atom_emb = nn.Embedding(cfg.num_elements, cfg.emb_size_atom)
        if cfg.atom_features == "learned":
            nn.init.uniform_(self.atom_emb.weight, -math.sqrt(3), math.sqrt(3))
            self.element_features: Tensor | None = None
        elif cfg.atom_features == "cgcnn":

            feats = cgcnn_features(cfg.num_elements)
            self.register_buffer("element_features", feats, persistent=False)
            self.element_proj = nn.Linear(feats.shape[1], cfg.emb_size_atom, bias=False)
            # unit variance per component at the start: each element has ~9 bits set
            bits = float(feats.sum(1).mean())
            nn.init.normal_(self.element_proj.weight, std=1.0 / math.sqrt(bits))
            nn.init.zeros_(self.atom_emb.weight)  # the learned residual starts at zero
        else:
            raise ValueError(f"unknown atom_features {cfg.atom_features!r}")
        self.edge_emb = EdgeEmbedding(cfg.emb_size_atom, cfg.num_radial, cfg.emb_size_edge)
        self.int_blocks = nn.ModuleList([InteractionBlock(cfg) for _ in range(cfg.num_blocks)])
        self.out_blocks = nn.ModuleList(
            [
                OutputBlock(
                    cfg.emb_size_atom,
                    cfg.emb_size_edge,
                    cfg.emb_size_rbf,
                    cfg.num_atom,
                    cfg.output_init,
                    num_outputs=2 if cfg.variance_head else 1,
                )
                for _ in range(cfg.num_blocks + 1)
            ]
        )

    def forward(self, g: GraphBatch) -> Tensor:
        """Per-structure outputs ``[B]`` (``[B, 2]`` with the variance head: mean and raw
        variance). Atomic numbers must lie in 1..num_elements (checked where data enters, not
        here, to keep the forward pass free of device syncs)."""
        vec = g.edge_vectors(self.atom_emb.weight.dtype)  # geometry follows the model's precision
        dist = torch.linalg.norm(vec, dim=-1)
        trip = g.triplets if g.triplets is not None else triplets(g.target, g.num_atoms)
        k_max = g.k_max if g.k_max is not None else max_triplets_per_edge(trip)
        sph = spherical_harmonics_m0(triplet_cosines(vec, trip), self.config.num_spherical)
        rbf = self.radial(dist)

        h = self.embed_atoms(g.z)
        m = self.edge_emb(h, rbf, g.source, g.target)
        rbf3 = self.mlp_rbf3(rbf)
        cbf3 = self.mlp_cbf3(rbf, sph, trip, k_max)
        rbf_h = self.mlp_rbf_h(rbf)
        rbf_out = self.mlp_rbf_out(rbf)

        e_atom = self.out_blocks[0](m, rbf_out, g.target, g.num_atoms)
        for block, out in zip(self.int_blocks, self.out_blocks[1:], strict=True):
            h, m = block(h, m, rbf3, cbf3, trip, k_max, rbf_h, g)
            e_atom = e_atom + out(m, rbf_out, g.target, g.num_atoms)
        if self.config.variance_head:
            return g.structure_mean(e_atom)
        return g.structure_mean(e_atom[:, 0])

    def embed_atoms(self, z: Tensor) -> Tensor:
        """Initial atom embeddings ``[N, emb_size_atom]`` from atomic numbers ``[N]``."""
        h = self.atom_emb(z - 1)
        if self.element_features is not None:
            h = h + self.element_proj(self.element_features.index_select(0, z - 1).to(h.dtype))
        return h

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def __repr__(self) -> str:
        c = self.config
        return (
            f"GemNetT(blocks={c.num_blocks}, emb_atom={c.emb_size_atom}, "
            f"emb_edge={c.emb_size_edge}, cutoff={c.cutoff} Å, "
            f"max_neighbors={c.max_neighbors}, params={self.num_params:,})"
        )


#: smallest predicted variance (standardised units²): keeps the likelihood finite
MIN_VARIANCE = 1e-6


def mean_and_variance(out: Tensor) -> tuple[Tensor, Tensor | None]:
    """A model's output split into the mean ``[B]`` and, from a variance head's ``[B, 2]``,
    the variance ``softplus(raw) + MIN_VARIANCE`` ``[B]`` (same standardised units, squared);
    ``None`` for a model without one."""
    if out.dim() == 1:
        return out, None
    if out.dim() != 2 or out.shape[1] != 2:
        raise ValueError(f"expected outputs [B] or [B, 2], got {list(out.shape)}")
    return out[:, 0], nn.functional.softplus(out[:, 1]) + MIN_VARIANCE


def scale_factors_in_call_order(model: nn.Module, batch: GraphBatch) -> list[ScaleFactor]:
    """The model's scale factors in the order a forward pass uses them."""
    factors = [m for m in model.modules() if isinstance(m, ScaleFactor)]
    order: list[ScaleFactor] = []

    def seen(f: ScaleFactor) -> None:
        if f not in order:
            order.append(f)

    for f in factors:
        f._seen_hook = seen
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for f in factors:
            f._seen_hook = None
    return order


def fit_scale_factors(model: nn.Module, batches: Iterable[GraphBatch]) -> dict[str, float]:
    """Fit every :class:`ScaleFactor` in call order on the given (training) batches.

    Each factor is fitted with all earlier ones already fixed, as in the GemNet reference.
    Returns ``{module name: scale}``.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("no batches to fit scale factors on")
    names = {m: n for n, m in model.named_modules() if isinstance(m, ScaleFactor)}
    was_training = model.training
    model.eval()
    fitted: dict[str, float] = {}
    with torch.no_grad():
        for factor in scale_factors_in_call_order(model, batches[0]):
            factor.start()
            for b in batches:
                model(b)
            fitted[names[factor]] = factor.finish()
    model.train(was_training)
    return fitted
