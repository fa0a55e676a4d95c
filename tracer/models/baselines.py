"""SchNet and CGCNN baselines on TRACER's periodic graphs, built from torch_geometric's layers.

Both read a :class:`tracer.graphs.batch.GraphBatch` (edges with their periodic image offsets,
made by :mod:`tracer.graphs.periodic` with the model's own cutoff and neighbour cap) and return the
per-structure mean of per-atom outputs, i.e. a quantity per atom (formation energy, eV/atom).

* SchNet (K. T. Schütt et al., J. Chem. Phys. 148, 241722, 2018): torch_geometric's
  ``InteractionBlock`` (continuous-filter convolution with a cosine cutoff), Gaussian distance
  expansion and shifted softplus, at torch_geometric's default size (128 features, 128 filters,
  6 interactions, 50 Gaussians).
* CGCNN (T. Xie & J. C. Grossman, Phys. Rev. Lett. 120, 145301, 2018): torch_geometric's
  ``CGConv`` (gated convolution with batch normalisation) at the paper's size: 64 atom
  features, 3 convolutions, Gaussian distance expansion 0–8 Å in 0.2 Å steps, one hidden
  layer of 128 after mean pooling, 8 Å cutoff with 12 neighbours. One difference: atoms start
  from a learned embedding of the atomic number instead of CGCNN's fixed 92-feature vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from tracer.graphs.batch import GraphBatch


@dataclass(frozen=True)
class SchNetConfig:
    """SchNet hyperparameters (lengths in Å)."""

    kind: ClassVar[str] = "schnet"
    hidden_channels: int = 128
    num_filters: int = 128
    num_interactions: int = 6
    num_gaussians: int = 50
    cutoff: float = 6.0
    max_neighbors: int | None = 12
    num_elements: int = 100

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CGCNNConfig:
    """CGCNN hyperparameters (lengths in Å; Gaussians every ``gaussian_step`` up to the cutoff)."""

    kind: ClassVar[str] = "cgcnn"
    atom_fea_len: int = 64
    n_conv: int = 3
    h_fea_len: int = 128
    n_h: int = 1
    gaussian_step: float = 0.2
    cutoff: float = 8.0
    max_neighbors: int | None = 12
    num_elements: int = 100

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def without_subnormals(x: Tensor) -> Tensor:
    """``x`` with its subnormal entries (nonzero, below the dtype's smallest normal number) set to
    zero. A Gaussian distance expansion underflows to subnormal floats far from its centres;
    a CPU matrix product reading them runs about twenty times slower (the BLAS threads do not
    flush them), while in a float32 sum of normal terms they change nothing: the trained models
    are bit-identical with and without them (docs/performance.md § Subnormal Gaussians)."""
    return x.masked_fill(x.abs() < torch.finfo(x.dtype).tiny, 0.0)


class SchNet(nn.Module):
    """SchNet on periodic edges; output: per-structure mean of the atomwise outputs."""

    def __init__(self, config: SchNetConfig) -> None:
        # torch_geometric only where a baseline is built: importing it takes seconds, and every
        # process that reaches the model registry (each pipeline stage) would pay for it
        from torch_geometric.nn.models.schnet import (
            GaussianSmearing,
            InteractionBlock,
            ShiftedSoftplus,
        )

        super().__init__()
        c = self.config = config
        self.embedding = nn.Embedding(c.num_elements, c.hidden_channels)
        self.expansion = GaussianSmearing(0.0, c.cutoff, c.num_gaussians)
        self.interactions = nn.ModuleList(
            InteractionBlock(c.hidden_channels, c.num_gaussians, c.num_filters, c.cutoff)
            for _ in range(c.num_interactions)
        )
        self.head = nn.Sequential(
            nn.Linear(c.hidden_channels, c.hidden_channels // 2),
            ShiftedSoftplus(),
            nn.Linear(c.hidden_channels // 2, 1),
        )

    def forward(self, g: GraphBatch) -> Tensor:
        dist = torch.linalg.norm(g.edge_vectors(self.embedding.weight.dtype), dim=-1)
        edge_index = torch.stack([g.source, g.target])  # messages flow source -> target
        rbf = without_subnormals(self.expansion(dist))
        h = self.embedding(g.z - 1)
        for block in self.interactions:
            h = h + block(h, edge_index, dist, rbf)
        return g.structure_mean(self.head(h)[:, 0])


class CGCNN(nn.Module):
    """CGCNN on periodic edges; output: a readout of the mean-pooled atom features."""

    def __init__(self, config: CGCNNConfig) -> None:
        from torch_geometric.nn import CGConv  # only where built, as SchNet's layers

        super().__init__()
        c = self.config = config
        n_gauss = round(c.cutoff / c.gaussian_step) + 1
        self.register_buffer("centers", torch.linspace(0.0, c.cutoff, n_gauss))
        self.embedding = nn.Embedding(c.num_elements, c.atom_fea_len)
        self.convs = nn.ModuleList(
            CGConv(c.atom_fea_len, dim=n_gauss, aggr="add", batch_norm=True)
            for _ in range(c.n_conv)
        )
        layers: list[nn.Module] = [nn.Linear(c.atom_fea_len, c.h_fea_len), nn.Softplus()]
        for _ in range(c.n_h - 1):
            layers += [nn.Linear(c.h_fea_len, c.h_fea_len), nn.Softplus()]
        self.head = nn.Sequential(*layers, nn.Linear(c.h_fea_len, 1))

    def forward(self, g: GraphBatch) -> Tensor:
        dist = torch.linalg.norm(g.edge_vectors(self.embedding.weight.dtype), dim=-1)
        rbf = torch.exp(-((dist[:, None] - self.centers) ** 2) / self.config.gaussian_step**2)
        rbf = without_subnormals(rbf)
        edge_index = torch.stack([g.source, g.target])
        h = self.embedding(g.z - 1)
        for conv in self.convs:
            h = nn.functional.softplus(conv(h, edge_index, rbf))
        return self.head(nn.functional.softplus(g.structure_mean(h)))[:, 0]
