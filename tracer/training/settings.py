"""The settings and state of a training run (:class:`TrainConfig`, :class:`TrainState`) and the
checkpoint format's version."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (``params.yaml: train``).

    Args:
        max_epochs: epochs at most.
        batch_size: structures per batch.
        max_edges_per_batch: also cap a batch's edges (``None``: no cap).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length; then cosine decay to ``lr * final_lr_factor``.
        final_lr_factor: ratio of the last to the peak learning rate.
        grad_clip: clip the gradient norm at this value.
        loss: ``l1`` (MAE) or ``mse`` on standardised targets; ``gaussian_nll`` for a model
            with a variance head (``gemnet.variance_head``).
        patience: stop after this many epochs without a better validation MAE.
        scale_fit_batches: training batches used to fit GemNet's scale factors.
        precision: ``fp32``, or ``tf32`` (CUDA matmuls in TF32) where measured harmless.
        eval_batch_size: structures per batch when evaluating.
        loader_workers: processes that cut batches (and their triplets) on the CPU while the
            GPU trains, with pinned asynchronous copies; 0 cuts them in the training process
            on the training device.
        ema_decay: keep an exponential moving average of the weights with this decay and
            validate, select and save the averaged model (``None``: the raw weights).
        cuda_graphs: on CUDA, pad every batch to one of ``shape_buckets`` static shapes and
            replay each step from that shape's CUDA graph
            (:class:`tracer.training.steps.CudaGraphStep`);
            ignored on the CPU.
        shape_buckets: how many static shapes (and graphs) the batches of a CUDA-graph run are
            padded to (:func:`tracer.graphs.padding.plan_static_shapes`); more buckets, less
            padding.
        compile: train through ``torch.compile`` of the forward pass (dynamic shapes, one
            compilation; :func:`tracer.training.steps.compiled`): fused kernels, fewer launches. The
            compilation (tens of seconds) counts in the training time.
        position_noise_angstrom: σ (Å) of the Gaussian displacement given to every atom at
            each training step (:class:`tracer.training.steps.EagerStep`; a regulariser against
            memorising a few thousand relaxed structures; validation and prediction never
            jitter); the noise is seeded per (seed, epoch), so a resumed run draws the same.
            0: none.
        cpu_threads: torch threads of a run on the CPU (``None``: torch's default, one per
            core). A fixed count makes a CPU run's result independent of the machine's cores:
            the order of the floating-point sums in torch's CPU kernels depends on how many
            threads share them. Ignored on CUDA.
    """

    max_epochs: int = 100
    batch_size: int = 32
    max_edges_per_batch: int | None = None
    lr: float = 5e-4
    weight_decay: float = 1e-5
    warmup_epochs: int = 2
    final_lr_factor: float = 0.01
    grad_clip: float = 10.0
    loss: Literal["l1", "mse", "gaussian_nll"] = "l1"
    patience: int = 20
    scale_fit_batches: int = 16
    precision: Literal["fp32", "tf32"] = "fp32"
    eval_batch_size: int = 64
    loader_workers: int = 0
    ema_decay: float | None = None
    cuda_graphs: bool = False
    shape_buckets: int = 1
    compile: bool = False
    position_noise_angstrom: float = 0.0
    cpu_threads: int | None = None

    def apply_precision(self) -> None:
        """Set this process's CUDA matmul/cuDNN TF32 switches to ``precision``."""
        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    def apply_threads(self, device: torch.device) -> None:
        """On the CPU, set this process's torch threads to ``cpu_threads`` (when given)."""
        if device.type == "cpu" and self.cpu_threads is not None:
            if self.cpu_threads < 1:
                raise ValueError(f"cpu_threads must be at least 1, not {self.cpu_threads}")
            torch.set_num_threads(self.cpu_threads)

    def graphed_on(self, device: torch.device) -> bool:
        """Whether steps on ``device`` are replayed from CUDA graphs (CUDA and ``cuda_graphs``)."""
        return self.cuda_graphs and device.type == "cuda"


@dataclass
class TrainState:
    """Everything needed to resume (besides model, optimiser and schedule states)."""

    epoch: int = 0
    best_val_mae: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0
    stopped_early: bool = False
