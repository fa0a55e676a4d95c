"""One optimisation step of a member, eager or replayed from a CUDA graph, and weight averaging.

A GemNet-T step on a small batch is bound by kernel launches, not by the GPU: one step launches
well over a thousand small kernels. :class:`CudaGraphStep` records the whole step (forward,
weighted loss, backward, gradient clipping, the fused AdamW update and the EMA update) once as a
CUDA graph and then replays it, so a step costs one launch. A graph replays fixed shapes, so
batches are padded to one of a few :class:`tracer.graphs.padding.StaticShape` s
(:func:`tracer.graphs.padding.pad_batch`, whose padding provably leaves the loss and gradients of
the
real structures unchanged), and one graph is recorded per shape.

:class:`EagerStep` does the same arithmetic eagerly (CPU, or CUDA without graphs); the trainer
picks one of them (``train.cuda_graphs``). :class:`WeightAverage` keeps an exponential moving
average of the weights, the model that is validated and kept (``train.ema_decay``). Either step
can displace every atom by Gaussian noise before the forward pass, a regulariser
(``train.position_noise_angstrom``); :func:`seed_position_noise` makes that noise a function of
(seed, epoch, rank).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from tracer.graphs.batch import GraphBatch
from tracer.models.gemnet import mean_and_variance

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def compiled(model: nn.Module) -> Callable[[GraphBatch], Tensor]:
    """``torch.compile`` of ``model``'s forward pass with dynamic shapes: one compilation serves
    every batch shape (and every static shape of a CUDA-graph run), and fused kernels replace
    most of the small elementwise ones. Parameters and gradients stay those of ``model``."""
    return torch.compile(model, dynamic=True)


def weighted_loss(kind: str) -> LossFn:
    """``(prediction, target, weight or None) -> scalar`` mean absolute (``l1``) or squared
    (``mse``) error, or Gaussian negative log-likelihood (``gaussian_nll``, without its constant
    ½ log 2π: ½ (log σ² + (y − μ)² / σ²), as torch's ``gaussian_nll_loss``; predictions ``[B, 2]``
    from a variance head, :func:`tracer.models.gemnet.mean_and_variance`), over the structures
    of weight 1 (all of them when ``weight`` is None)."""
    if kind not in ("l1", "mse", "gaussian_nll"):
        raise ValueError(f"unknown loss {kind!r}")

    def loss(pred: Tensor, y: Tensor, weight: Tensor | None) -> Tensor:
        if kind == "gaussian_nll":
            mean, var = mean_and_variance(pred)
            if var is None:
                raise ValueError("the gaussian_nll loss needs a model with a variance head")
            # written out: torch's gaussian_nll_loss checks var >= 0 on the host, which a
            # CUDA graph cannot record (the variance is at least MIN_VARIANCE by construction)
            err = 0.5 * (torch.log(var) + (y - mean) ** 2 / var)
        elif pred.dim() != 1:
            raise ValueError(f"the {kind} loss needs one output per structure, not a variance head")
        else:
            err = (pred - y).abs() if kind == "l1" else (pred - y) ** 2
        if weight is None:
            return err.mean()
        return (err * weight).sum() / weight.sum()

    return loss


class WeightAverage:
    """Exponential moving average of a model's parameters (buffers are copied once).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, as in the
    GemNet reference; the update is arithmetic on the device (capturable in a CUDA graph).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._params = list(model.parameters())
        self._avg = list(self.model.parameters())
        self.num_updates = torch.zeros((), dtype=torch.float32, device=self._avg[0].device)

    @torch.no_grad()
    def update(self) -> None:
        n = self.num_updates
        weight = 1.0 - torch.clamp((1.0 + n) / (10.0 + n), max=self.decay)
        diff = torch._foreach_sub(self._params, self._avg)
        torch._foreach_mul_(diff, weight)
        torch._foreach_add_(self._avg, diff)
        n.add_(1.0)

    def state_dict(self) -> dict[str, object]:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "num_updates": float(self.num_updates),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.num_updates.fill_(float(state["num_updates"]))  # type: ignore[arg-type]


def seed_position_noise(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch's generators (CPU and CUDA) for one epoch's position noise from (member seed,
    epoch, rank), so that a resumed run draws the same noise as an uninterrupted one and DDP
    ranks draw different noise. A CUDA graph reads the generator's seed at each replay."""
    torch.manual_seed(int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0]))


class EagerStep:
    """Forward, loss, backward, clipping, optimiser step (and EMA update), launched eagerly.

    ``forward`` computes the outputs (default: ``model`` itself; :func:`compiled` for fused
    kernels); ``model`` owns the parameters that are clipped and stepped. With
    ``position_noise`` σ > 0 (Å), every atom's position is displaced by fresh N(0, σ²) noise per
    Cartesian component at each step before the forward pass (the batch itself is unchanged;
    edges and image offsets stay those of the relaxed structure; targets unchanged).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        *,
        grad_clip: float,
        ema: WeightAverage | None = None,
        forward: Callable[[GraphBatch], Tensor] | None = None,
        position_noise: float = 0.0,
    ) -> None:
        if position_noise < 0:
            raise ValueError(f"position noise must be >= 0 Å, got {position_noise}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.forward = model if forward is None else forward
        self.grad_clip, self.ema = grad_clip, ema
        self.position_noise = position_noise
        self.params = [p for p in model.parameters() if p.requires_grad]

    def _compute(self, batch: GraphBatch, y: Tensor, weight: Tensor | None) -> Tensor:
        if self.position_noise > 0:  # drawn inside a recorded graph too: fresh at each replay
            jitter = self.position_noise * torch.randn_like(batch.pos)
            batch = dataclasses.replace(batch, pos=batch.pos + jitter)
        loss = self.loss_fn(self.forward(batch), y, weight)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        return loss.detach()

    def __call__(self, batch: GraphBatch, y: Tensor, weight: Tensor | None = None) -> Tensor:
        """One step on ``batch`` (targets ``y`` standardised); returns the loss (device scalar)."""
        self.optimizer.zero_grad(set_to_none=True)
        return self._compute(batch, y, weight)


def _static_inputs(batch: GraphBatch, y: Tensor, weight: Tensor) -> list[Tensor]:
    """Every tensor a recorded step reads from its batch, in a fixed order."""
    if batch.atom_counts is None or batch.triplets is None or batch.k_max is None:
        raise ValueError("padded batches carry their atom counts, triplets and static k_max")
    domain = [] if batch.domain is None else [batch.domain]
    return [
        *domain,
        batch.z,
        batch.pos,
        batch.cell,
        batch.atom_batch,
        batch.source,
        batch.target,
        batch.offset,
        batch.reverse,
        batch.atom_counts,
        batch.triplets.edge_in,
        batch.triplets.edge_out,
        batch.triplets.slot,
        y,
        weight,
    ]


class CudaGraphStep(EagerStep):
    """:class:`EagerStep` recorded as a CUDA graph per batch shape, then replayed.

    Batches must be padded (:func:`tracer.graphs.padding.pad_batch`) and come with their weights;
    each
    distinct padded shape gets its own static input buffers and graph. The first ``warmup``
    steps are ordinary eager training steps on real batches (on a side stream, as capture
    requires); after them, the first batch of a new shape records its graph and replays it, so
    no batch is skipped or repeated. The optimiser must be capturable (AdamW
    ``capturable=True``) with a tensor learning rate, which a schedule updates in place.

    With ``compiled`` set (the forward pass, or the module DDP wraps, is :func:`compiled`), a
    new shape first runs one forward and backward pass outside
    the capture (gradients discarded, no optimiser step; under DDP without gradient
    synchronisation), so that any kernel the compiler still has to build or tune for that shape
    is built before recording starts.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        *,
        grad_clip: float,
        ema: WeightAverage | None = None,
        warmup: int = 3,
        forward: Callable[[GraphBatch], Tensor] | None = None,
        compiled: bool = False,
        position_noise: float = 0.0,
    ) -> None:
        super().__init__(model, optimizer, loss_fn, grad_clip=grad_clip, ema=ema, forward=forward,
                         position_noise=position_noise)  # fmt: skip
        if not all(g.get("capturable") for g in optimizer.param_groups):
            raise ValueError("CUDA-graph steps need a capturable optimiser")
        if not all(isinstance(g["lr"], Tensor) for g in optimizer.param_groups):
            raise ValueError("CUDA-graph steps need a tensor learning rate")
        self.warmup, self.compiled = warmup, compiled
        self.steps = 0
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self._static: dict[tuple, tuple[GraphBatch, Tensor, Tensor]] = {}
        self._loss: dict[tuple, Tensor] = {}

    @staticmethod
    def _key(batch: GraphBatch, y: Tensor, weight: Tensor) -> tuple:
        shapes = tuple(tuple(t.shape) for t in _static_inputs(batch, y, weight))
        return (*shapes, batch.num_structures, batch.k_max)

    def _load(
        self, batch: GraphBatch, y: Tensor, weight: Tensor
    ) -> tuple[tuple, tuple[GraphBatch, Tensor, Tensor]]:
        key = self._key(batch, y, weight)
        if key not in self._static:
            self._static[key] = (batch._map(lambda t: t.clone()), y.clone(), weight.clone())
        else:
            static = _static_inputs(*self._static[key])
            for dst, src in zip(static, _static_inputs(batch, y, weight), strict=True):
                dst.copy_(src, non_blocking=True)
        return key, self._static[key]

    def _dry_run(self, batch: GraphBatch, y: Tensor, weight: Tensor) -> None:
        """Forward and backward on a side stream without an update (gradients dropped)."""
        no_sync = getattr(self.model, "no_sync", contextlib.nullcontext)  # DDP: stay local
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), no_sync():
            self.loss_fn(self.forward(batch), y, weight).backward()
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self, batch: GraphBatch, y: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is None:
            raise ValueError("CUDA-graph steps need padded batches with weights")
        key, (sb, sy, sw) = self._load(batch, y, weight)
        self.steps += 1
        if key in self.graphs:
            self.graphs[key].replay()
            return self._loss[key]
        if self.steps <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = super().__call__(sb, sy, sw)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        if self.compiled:
            self._dry_run(sb, sy, sw)
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._loss[key] = self._compute(sb, sy, sw)
        self.graphs[key] = graph
        graph.replay()
        return self._loss[key]
