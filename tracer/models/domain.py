"""The paper's domain-conditioning module on GemNet-T (its negative result 2), switched by a mode.

Each structure carries a domain index (its source database; one domain for a single-database
task). A learned domain embedding conditions the model in one of two ways:

* ``domain_embedding``: a linear map of the domain embedding is added to every atom's initial
  embedding;
* ``film``: the atom embeddings ``h`` entering every interaction block are modulated
  feature-wise, ``h ← h · (1 + γ(d)) + β(d)`` (FiLM, Perez et al. 2018), with ``γ, β`` linear in
  the domain embedding ``d`` of the atom's structure and one pair of maps per block (the atom
  embeddings leaving the last block feed no output block in GemNet-T, so each block is
  conditioned on its input);
* ``offset``: one learned number per domain added to the structure's output (a per-atom energy
  shift in the model's standardised unit): databases whose energies differ by a constant
  reference, and by nothing else, need no more than this.

``baseline`` is GemNet-T unchanged (with the same parameters, so that it can be trained beside
the other modes through the same code). The conditioning layers start at zero, so at initialisation
every mode computes exactly the baseline's function; the base model is not modified — the
conditioning is applied by forward hooks on its atom embedding and interaction blocks.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from tracer.graphs.batch import GraphBatch
from tracer.models.gemnet import GemNetT, GemNetTConfig

MODES = ("baseline", "domain_embedding", "film", "offset")


@dataclass(frozen=True)
class DomainConfig:
    """Domain conditioning: ``mode`` (one of :data:`MODES`), number of domains and the size of
    the learned domain embedding."""

    mode: Literal["baseline", "domain_embedding", "film", "offset"] = "baseline"
    num_domains: int = 1
    emb_size: int = 16

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DomainGemNetTConfig(GemNetTConfig):
    """GemNet-T's hyperparameters with the domain module's (:class:`DomainConfig` fields as
    ``domain_mode``, ``num_domains``, ``domain_emb_size``): the configuration a trained model
    file records, model kind ``gemnet_t_domain``."""

    kind: ClassVar[str] = "gemnet_t_domain"
    domain_mode: Literal["baseline", "domain_embedding", "film", "offset"] = "baseline"
    num_domains: int = 1
    domain_emb_size: int = 16

    def gemnet(self) -> GemNetTConfig:
        names = {f.name for f in fields(GemNetTConfig)}
        return GemNetTConfig(**{k: v for k, v in asdict(self).items() if k in names})

    def domain(self) -> DomainConfig:
        return DomainConfig(self.domain_mode, self.num_domains, self.domain_emb_size)


class DomainGemNetT(nn.Module):
    """GemNet-T with optional domain conditioning; ``forward(batch, domain)`` with ``domain``
    the ``[B]`` domain index of each structure (all 0 when omitted)."""

    def __init__(self, gemnet: GemNetTConfig, domain: DomainConfig) -> None:
        super().__init__()
        if domain.mode not in MODES:
            raise ValueError(f"unknown domain mode {domain.mode!r} (known: {MODES})")
        if domain.num_domains < 1:
            raise ValueError("num_domains must be at least 1")
        self.config, self.domain_config = gemnet, domain
        self.base = GemNetT(gemnet)
        self._atom_domain: Tensor | None = None
        if domain.mode == "baseline":
            return
        if domain.mode == "offset":
            self.offset = nn.Embedding(domain.num_domains, 1)
            nn.init.zeros_(self.offset.weight)
            return
        self.domain_emb = nn.Embedding(domain.num_domains, domain.emb_size)
        width = gemnet.emb_size_atom
        if domain.mode == "domain_embedding":
            self.to_atom = nn.Linear(domain.emb_size, width)
            nn.init.zeros_(self.to_atom.weight)
            nn.init.zeros_(self.to_atom.bias)
            self.base.atom_emb.register_forward_hook(self._add_domain)
        else:
            self.film = nn.ModuleList(
                nn.Linear(domain.emb_size, 2 * width) for _ in self.base.int_blocks
            )
            for layer in self.film:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            for k, block in enumerate(self.base.int_blocks):
                # a bound method (through partial), not a closure: a deep copy of the model
                # (the weight average) must condition its own blocks with its own layers
                block.register_forward_pre_hook(functools.partial(self._film_block, k))

    @classmethod
    def from_config(cls, config: DomainGemNetTConfig) -> DomainGemNetT:
        return cls(config.gemnet(), config.domain())

    def _domain_vectors(self) -> Tensor:
        if self._atom_domain is None:
            raise RuntimeError("domain hooks run only inside DomainGemNetT.forward")
        return self.domain_emb(self._atom_domain)

    def _add_domain(self, _module: nn.Module, _inputs: Any, h: Tensor) -> Tensor:
        return h + self.to_atom(self._domain_vectors())

    def _film_block(self, k: int, _module: nn.Module, args: tuple) -> tuple:
        h, *rest = args
        gamma, beta = self.film[k](self._domain_vectors()).chunk(2, dim=-1)
        return (h * (1.0 + gamma) + beta, *rest)

    def forward(self, g: GraphBatch, domain: Tensor | None = None) -> Tensor:
        """Per-structure outputs ``[B]`` (the base model's unit); ``domain`` defaults to the
        batch's own (``g.domain``), else domain 0 for every structure."""
        if domain is None:
            domain = g.domain
        if domain is None:
            domain = torch.zeros(g.num_structures, dtype=torch.long, device=g.z.device)
        if self.domain_config.mode == "offset":
            return self.base(g) + self.offset(domain.long()).squeeze(-1)
        self._atom_domain = domain.long().index_select(0, g.atom_batch)
        try:
            return self.base(g)
        finally:
            self._atom_domain = None

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
