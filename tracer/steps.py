"""One optimisation step of a member, eager or replayed from a CUDA graph, and weight averaging.

A GemNet-T step on a small batch is bound by kernel launches, not by the GPU: one step launches
well over a thousand small kernels. :class:`CudaGraphStep` records the whole step (forward,
weighted loss, backward, gradient clipping, the fused AdamW update and the EMA update) once as a
CUDA graph and then replays it, so a step costs one launch. A graph replays fixed shapes, so its
batches are padded to one :class:`tracer.dataset.StaticShape` (:func:`tracer.dataset.pad_batch`,
whose padding provably leaves the loss and gradients of the real structures unchanged).

:class:`EagerStep` does the same arithmetic eagerly (CPU, or CUDA without graphs); the trainer
picks one of them (``train.cuda_graphs``). :class:`WeightAverage` keeps an exponential moving
average of the weights, the model that is validated and kept (``train.ema_decay``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tracer.models.gemnet import GraphBatch

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def weighted_loss(kind: str) -> LossFn:
    """``(prediction, target, weight or None) -> scalar`` mean absolute (``l1``) or squared
    (``mse``) error over the structures of weight 1 (all of them when ``weight`` is None)."""
    if kind not in ("l1", "mse"):
        raise ValueError(f"unknown loss {kind!r}")

    def loss(pred: Tensor, y: Tensor, weight: Tensor | None) -> Tensor:
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


class EagerStep:
    """Forward, loss, backward, clipping, optimiser step (and EMA update), launched eagerly."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: LossFn,
        *,
        grad_clip: float,
        ema: WeightAverage | None = None,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.grad_clip, self.ema = grad_clip, ema
        self.params = [p for p in model.parameters() if p.requires_grad]

    def _compute(self, batch: GraphBatch, y: Tensor, weight: Tensor | None) -> Tensor:
        loss = self.loss_fn(self.model(batch), y, weight)
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


class CudaGraphStep(EagerStep):
    """:class:`EagerStep` recorded as a CUDA graph after ``warmup`` eager steps, then replayed.

    Every batch must be padded to the same shape (:func:`tracer.dataset.pad_batch`) and come with
    its weights. The warm-up steps are ordinary training steps on real batches (run on a side
    stream, as capture requires); the step that records the graph then replays it, so no batch
    is skipped or repeated. The optimiser must be capturable (AdamW ``capturable=True``) with a
    tensor learning rate, which a schedule updates in place.
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
    ) -> None:
        super().__init__(model, optimizer, loss_fn, grad_clip=grad_clip, ema=ema)
        if not all(g.get("capturable") for g in optimizer.param_groups):
            raise ValueError("CUDA-graph steps need a capturable optimiser")
        if not all(isinstance(g["lr"], Tensor) for g in optimizer.param_groups):
            raise ValueError("CUDA-graph steps need a tensor learning rate")
        self.warmup = warmup
        self.steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[GraphBatch, Tensor, Tensor] | None = None
        self._loss: Tensor | None = None

    def _load(
        self, batch: GraphBatch, y: Tensor, weight: Tensor
    ) -> tuple[GraphBatch, Tensor, Tensor]:
        if self._static is None:
            self._static = (batch._map(lambda t: t.clone()), y.clone(), weight.clone())
            return self._static
        sb, sy, sw = self._static
        pairs = [(sb.z, batch.z), (sb.pos, batch.pos), (sb.cell, batch.cell)]
        pairs += [(sb.atom_batch, batch.atom_batch), (sb.source, batch.source)]
        pairs += [(sb.target, batch.target), (sb.offset, batch.offset)]
        pairs += [(sb.reverse, batch.reverse), (sy, y), (sw, weight)]
        if sb.atom_counts is None or batch.atom_counts is None:
            raise ValueError("padded batches carry their atom counts")
        pairs.append((sb.atom_counts, batch.atom_counts))
        if sb.triplets is None or batch.triplets is None or sb.k_max != batch.k_max:
            raise ValueError("padded batches carry their triplets and the static k_max")
        pairs += [(sb.triplets.edge_in, batch.triplets.edge_in)]
        pairs += [(sb.triplets.edge_out, batch.triplets.edge_out)]
        pairs += [(sb.triplets.slot, batch.triplets.slot)]
        for dst, src in pairs:
            if dst.shape != src.shape:
                raise ValueError(f"batch shape {tuple(src.shape)} differs from {tuple(dst.shape)}")
            dst.copy_(src, non_blocking=True)
        return self._static

    def __call__(self, batch: GraphBatch, y: Tensor, weight: Tensor | None = None) -> Tensor:
        if weight is None:
            raise ValueError("CUDA-graph steps need padded batches with weights")
        sb, sy, sw = self._load(batch, y, weight)
        self.steps += 1
        if self.graph is not None:
            self.graph.replay()
            assert self._loss is not None
            return self._loss
        if self.steps <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = super().__call__(sb, sy, sw)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._loss = self._compute(sb, sy, sw)
        self.graph = graph
        graph.replay()
        return self._loss
