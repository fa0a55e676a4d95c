"""The model registry: every model kind by name, its configuration class and its constructor
(:func:`build_model`, :func:`config_from_dict`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from torch import nn

from tracer.models.baselines import CGCNN, CGCNNConfig, SchNet, SchNetConfig
from tracer.models.domain import DomainGemNetT, DomainGemNetTConfig
from tracer.models.gemnet import GemNetT, GemNetTConfig, weights_to_be_loaded

ModelConfig = GemNetTConfig | DomainGemNetTConfig | SchNetConfig | CGCNNConfig


CONFIGS: dict[str, type] = {
    c.kind: c for c in (GemNetTConfig, DomainGemNetTConfig, SchNetConfig, CGCNNConfig)
}


MODELS: dict[str, Callable[[Any], nn.Module]] = {
    "gemnet_t": GemNetT,
    "gemnet_t_domain": DomainGemNetT.from_config,
    "schnet": SchNet,
    "cgcnn": CGCNN,
}


def config_from_dict(kind: str, values: dict[str, Any]) -> ModelConfig:
    """The configuration of a model ``kind`` (``gemnet_t``, ``gemnet_t_domain``, ``schnet``,
    ``cgcnn``)."""
    if kind not in CONFIGS:
        raise ValueError(f"unknown model kind {kind!r} (known: {sorted(CONFIGS)})")
    return CONFIGS[kind](**values)


def build_model(config: ModelConfig, *, initialise: bool = True) -> nn.Module:
    """A freshly initialised model for ``config``. ``initialise=False``: GemNet-T's layers skip
    their orthogonal initialisation (:func:`tracer.models.gemnet.weights_to_be_loaded`), for a
    model whose state dict is loaded in full next."""
    with nullcontext() if initialise else weights_to_be_loaded():
        return MODELS[config.kind](config)
