"""One GemNet-T member trained on several GPUs (or CPU processes) with PyTorch DDP.

Launch with torchrun, one process per GPU::

    torchrun --standalone --nproc_per_node 2 -m tracer.cli train-ddp \\
        --structures flla.pt --split data/splits/flla.json --params profiles/full.yaml \\
        --out models/ddp --seed 0

The effective batch is the profile's ``train.batch_size`` whatever the number of processes: the
epoch's batches are those of the one-process trainer, and each is dealt out to the ``W`` ranks in
equal parts of ``batch_size / W`` structures balanced by edge count (:func:`rank_batches`); DDP
averages the ranks' gradients, so a step sees the one-GPU step's structures and an epoch has the
same number of steps (the learning-rate schedule is unchanged). The loss on a rank is the mean
over its structures; with equal parts the averaged gradient is the gradient of the batch mean
(tested against one process on gloo). With ``train.cuda_graphs`` on CUDA, each rank pads its
batches to its own few static shapes and replays its whole step — DDP's gradient all-reduce
included — from CUDA graphs, as the one-GPU trainer does (PyTorch's recipe for DDP under CUDA
graphs: DDP built on a side stream, 11 eager warm-up steps before the first capture, NCCL's
asynchronous error handling off); eager steps are launch-bound at FLLA's batch sizes, and a second
GPU only pays off once a step's time is the GPU's own work (docs/performance.md § Data-parallel
training).

The run is :func:`tracer.training.trainer.train_member` with the :class:`DataParallel` strategy,
so its epochs go through the same loop (:func:`tracer.training.loop.fit`) as one GPU's. The
checkpoint (``work_dir/last.pt``) holds the unwrapped model, optimiser, schedule and training
state, identical on every rank and written by rank 0: a run resumes from it with any number of
processes. Validation is shared out too: each rank predicts every ``W``-th validation structure
and the absolute errors' sum and count are all-reduced, so every rank gets the same MAE and
takes the same early-stopping and best-epoch decisions. Each epoch's history row holds the
epoch time and its two parts, the steps (``train_s``) and validation (``val_s``). With CUDA graphs
on more than one process the forward pass runs uncompiled whatever ``train.compile`` says: the
compiled module inside captured DDP steps hung on two H100s (docs/performance.md § Data-parallel
training); the member records that it ran uncompiled. The member file has the format of
:func:`tracer.training.trainer.train_member`'s, so prediction and the ensemble code read it
unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tracer.graphs.dataset import GraphDataset, epoch_batches
from tracer.models.registry import ModelConfig
from tracer.training.loop import Strategy
from tracer.training.settings import TrainConfig
from tracer.training.steps import compiled
from tracer.training.trainer import train_member

log = logging.getLogger(__name__)

#: eager DDP steps before the first CUDA-graph capture (PyTorch's CUDA-graph notes on DDP)
DDP_GRAPH_WARMUP = 11


def init_from_env() -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``):
    NCCL with one GPU per local rank when CUDA is there, else gloo on the CPU. Returns
    ``(rank, world size, device)``; a single process without torchrun's variables is rank 0
    of 1 and starts no group."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), dev


def deal_batch(batch: np.ndarray, num_edges: np.ndarray, *, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s part of one batch (see :func:`rank_batches`)."""
    if world == 1:  # the one-process batch as it is, order included
        return batch
    ranked = batch[np.argsort(-num_edges[batch], kind="stable")]
    fill = (-len(ranked)) % world
    ranked = np.concatenate([ranked, np.resize(ranked[::-1], fill)])
    rounds = ranked.reshape(-1, world)
    rounds[1::2] = rounds[1::2, ::-1]  # snake order
    return rounds[:, rank].copy()


def rank_batches(
    train_idx: np.ndarray,
    num_edges: np.ndarray,
    *,
    batch_size: int,
    rank: int,
    world: int,
    seed: int,
    epoch: int,
    max_edges: int | None = None,
) -> list[np.ndarray]:
    """This rank's batches of one epoch.

    The epoch's batches are the one-process trainer's (:func:`tracer.graphs.dataset.epoch_batches`:
    ``batch_size`` structures, at most ``max_edges`` edges). Each batch is dealt out to the
    ``world`` ranks in equal parts: its structures sorted by edge count, largest first, and dealt
    in snake order (ranks 0, 1, …, W−1, W−1, …, 0, 0, …), so that the parts carry nearly the same
    number of edges — a step waits for its slowest rank. Where a batch's size is not a multiple of
    ``world``, its smallest structures are repeated to fill the last round (as
    :class:`torch.utils.data.DistributedSampler` repeats indices); every other batch's parts
    together are exactly the one-process batch, so the averaged gradient is that batch's.
    Every rank takes the same number of steps.
    """
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
    return [deal_batch(b, num_edges, rank=rank, world=world)
            for b in epoch_batches(train_idx, num_edges, batch_size=batch_size,
                                   max_edges=max_edges, seed=seed, epoch=epoch)]  # fmt: skip


class DataParallel(Strategy):
    """Rank ``rank`` of ``world`` processes of one DDP run (:func:`init_from_env`)."""

    epoch_parts = True

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank, self.world, self.device = rank, world, device

    def sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return values
        values = values.to(self.device)  # NCCL reduces device tensors
        dist.all_reduce(values)
        return values.cpu()

    def after_epoch(self) -> None:
        if self.world > 1:
            dist.barrier()

    def history_fields(self) -> dict[str, Any]:
        return {"processes": self.world}

    def identity_fields(self) -> dict[str, Any]:
        # no process count in the identity: a run resumes with any number of processes
        return {"ddp": True}

    def broadcast(self, value: Any) -> Any:
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share_batches(self, batches: list[np.ndarray], num_edges: np.ndarray) -> list[np.ndarray]:
        return [deal_batch(b, num_edges, rank=self.rank, world=self.world) for b in batches]

    def wrap(
        self, model: torch.nn.Module, config: TrainConfig, graphed: bool
    ) -> tuple[torch.nn.Module, TrainConfig, int]:
        """DDP around ``model`` (around its compiled forward pass with ``train.compile``: its
        gradient hooks sit on the same parameters); built on a side stream for CUDA-graph
        capture, after :data:`DDP_GRAPH_WARMUP` eager steps. One process: ``model`` itself."""
        if self.world == 1:
            return model, config, 3
        if config.compile and graphed:
            log.warning("train.compile is ignored under DDP with CUDA graphs (hung on two H100s: "
                        "docs/performance.md § Data-parallel training); the forward pass runs "
                        "uncompiled")  # fmt: skip
            config = replace(config, compile=False)
        inner = compiled(model) if config.compile else model
        if not graphed:
            return DistributedDataParallel(inner), config, DDP_GRAPH_WARMUP
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            wrapped = DistributedDataParallel(inner)
        torch.cuda.current_stream().wait_stream(side)
        return wrapped, config, DDP_GRAPH_WARMUP


def train_ddp(
    *,
    data: GraphDataset,
    split: dict[str, Sequence[str]],
    seed: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    work_dir: str | Path,
    member_path: str | Path,
) -> dict[str, Any]:
    """Train one member with DDP over the processes of the current group (see the module
    docstring); returns the summary rank 0 writes into the member file (every rank gets it)."""
    if train_config.cuda_graphs and torch.cuda.is_available():  # before the NCCL group starts
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0")
    rank, world, dev = init_from_env()
    if train_config.batch_size % world:
        raise ValueError(f"batch size {train_config.batch_size} is not divisible by {world} "
                         "processes")  # fmt: skip
    return train_member(data=data, split=split, seed=seed, model_config=model_config,
                        train_config=train_config, work_dir=work_dir, member_path=member_path,
                        device=str(dev), progress=False,
                        strategy=DataParallel(rank, world, dev))  # fmt: skip
