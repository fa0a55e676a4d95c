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

The checkpoint (``work_dir/last.pt``) holds the unwrapped model, optimiser, schedule and
training state, identical on every rank and written by rank 0: a run resumes from it with any
number of processes. Validation is shared out too: each rank predicts every ``W``-th validation
structure and the absolute errors' sum and count are all-reduced, so every rank gets the same MAE
and takes the same early-stopping and best-epoch decisions. Each epoch's history row holds the
epoch time and its two parts, the steps (``train_s``) and validation (``val_s``). With CUDA graphs
on more than one process the forward pass runs uncompiled whatever ``train.compile`` says: the
compiled module inside captured DDP steps hung on two H100s (docs/performance.md § Data-parallel
training); the member records that it ran uncompiled. The member file has the format of
:func:`tracer.training.trainer.train_member`'s, so prediction and the ensemble code read it
unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tracer.graphs.dataset import GraphDataset, epoch_batches, scale_fit_batches
from tracer.graphs.padding import PaddedBatcher, plan_static_shapes
from tracer.models.gemnet import fit_scale_factors
from tracer.models.registry import ModelConfig, build_model
from tracer.training.batches import batch_stream
from tracer.training.checkpoints import (
    _atomic_save,
    _optimizer_state_cpu,
    load_optimizer_state,
    run_identity,
    write_member,
)
from tracer.training.normalization import TargetScaler
from tracer.training.optim import make_optimizer, make_schedule
from tracer.training.settings import CHECKPOINT_VERSION, TrainConfig, TrainState
from tracer.training.steps import WeightAverage, compiled, seed_position_noise
from tracer.training.trainer import make_step, predict_normalised

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
    mine = []
    for batch in epoch_batches(train_idx, num_edges, batch_size=batch_size, max_edges=max_edges,
                               seed=seed, epoch=epoch):  # fmt: skip
        if world == 1:  # the one-process batch as it is, order included
            mine.append(batch)
            continue
        ranked = batch[np.argsort(-num_edges[batch], kind="stable")]
        fill = (-len(ranked)) % world
        ranked = np.concatenate([ranked, np.resize(ranked[::-1], fill)])
        rounds = ranked.reshape(-1, world)
        rounds[1::2] = rounds[1::2, ::-1]  # snake order
        mine.append(rounds[:, rank].copy())
    return mine


def _broadcast(value: Any, world: int) -> Any:
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sharded_val_mae(
    model: torch.nn.Module,
    data_dev: GraphDataset,
    val_idx: np.ndarray,
    y_val: np.ndarray,
    scaler: TargetScaler,
    *,
    rank: int,
    world: int,
    batch_size: int,
    device: torch.device,
) -> float:
    """Validation MAE (eV/atom) with the structures shared out: rank ``r`` predicts
    ``val_idx[r::world]``, and the absolute errors' sum and count are all-reduced (float64), so
    every rank returns the MAE over all of ``val_idx`` (``y_val`` in its order)."""
    mine = np.arange(rank, len(val_idx), world)
    err = torch.zeros(2, dtype=torch.float64, device=device)
    if len(mine):
        pred = scaler.inverse(predict_normalised(model, data_dev, val_idx[mine],
                                                 batch_size=batch_size, device=device))  # fmt: skip
        err[0] = float(np.abs(pred - y_val[mine]).sum())
        err[1] = len(mine)
    if world > 1:
        dist.all_reduce(err)
    return float(err[0] / err[1])


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
    graphed = train_config.graphed_on(dev)
    train_config.apply_precision()
    work_dir, member_path = Path(work_dir), Path(member_path)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_idx = data.index_of(split["train"])
    val_idx = data.index_of(split["val"])
    scaler = TargetScaler.fit(dict(zip(data.ids, data.target.tolist(), strict=True)),
                              list(split["train"]))  # fmt: skip
    y_val = data.target[torch.as_tensor(val_idx)].numpy()
    num_edges = data.num_edges().numpy()

    def batches(epoch: int) -> list[np.ndarray]:
        return rank_batches(train_idx, num_edges, batch_size=train_config.batch_size, rank=rank,
                            world=world, seed=seed, epoch=epoch,
                            max_edges=train_config.max_edges_per_batch)  # fmt: skip

    torch.manual_seed(seed)
    model = build_model(model_config).to(dev)
    n_steps = len(batches(0))
    optimizer = make_optimizer(model, train_config, dev)
    schedule = make_schedule(optimizer, train_config, n_steps)
    # no process count in the identity: a run resumes with any number of processes
    identity = run_identity(seed, model_config, train_config, data, split, ddp=True)
    last = work_dir / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False) if last.exists() else None
    if ckpt is not None and (ckpt["identity"] != identity or ckpt.get("finished")):
        ckpt = None
    state, best_weights = TrainState(), None
    data_dev = data.to(dev)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"], graphed=graphed, device=dev)
        schedule.load_state_dict(ckpt["schedule"])
        state, best_weights = TrainState(**ckpt["state"]), ckpt["best_weights"]
    else:
        fit = scale_fit_batches(train_idx, num_edges, batch_size=train_config.batch_size,
                                seed=seed, count=train_config.scale_fit_batches)  # fmt: skip
        fit_scale_factors(model, [data_dev.collate(b) for b in fit])
    ema = None
    if train_config.ema_decay is not None:
        ema = WeightAverage(model, train_config.ema_decay)
        if ckpt is not None:
            ema.load_state_dict(ckpt["ema"])
    wrapped: torch.nn.Module = model
    if train_config.compile and world > 1 and graphed:
        log.warning("train.compile is ignored under DDP with CUDA graphs (hung on two H100s: "
                    "docs/performance.md § Data-parallel training); the forward pass runs "
                    "uncompiled")  # fmt: skip
        train_config = replace(train_config, compile=False)
    # DDP wraps the compiled module: its gradient hooks sit on the same parameters
    inner = compiled(model) if train_config.compile and world > 1 else model
    if world > 1 and graphed:  # for CUDA-graph capture DDP is built on a side stream
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            wrapped = DistributedDataParallel(inner)
        torch.cuda.current_stream().wait_stream(side)
    elif world > 1:
        wrapped = DistributedDataParallel(inner)
    warmup = DDP_GRAPH_WARMUP if world > 1 else 3
    step = make_step(wrapped, optimizer, train_config, dev, ema, warmup=warmup,
                     precompiled=world > 1)  # fmt: skip
    eval_model = model if ema is None else ema.model
    shapes = batcher = None
    if graphed:  # this rank's few static shapes, holding every batch it will cut
        shapes = plan_static_shapes(
            data,
            (b for e in range(train_config.max_epochs) for b in batches(e)),
            buckets=train_config.shape_buckets,
        )
        batcher = PaddedBatcher(data_dev, shapes)
    while state.epoch < train_config.max_epochs and not state.stopped_early:
        t0 = time.perf_counter()
        if train_config.position_noise_angstrom > 0:  # each rank its own noise
            seed_position_noise(seed, state.epoch, rank)
        model.train()
        total, count = torch.zeros((), dtype=torch.float64, device=dev), 0
        plan = batches(state.epoch)
        stream = batch_stream(data, data_dev, plan, workers=0, device=dev, shapes=shapes,
                              batcher=batcher)  # fmt: skip
        for b, (batch, y_raw, weight) in zip(plan, stream, strict=True):
            y = ((y_raw - scaler.mean) / scaler.std).to(torch.float32)
            loss = step(batch, y, None if weight is None else weight.to(torch.float32))
            total += loss.double() * len(b)
            count += len(b)
            schedule.step()
        if world > 1:
            sums = torch.stack([total, torch.tensor(float(count), dtype=torch.float64,
                                                    device=dev)])  # fmt: skip
            dist.all_reduce(sums)
            total, count = sums[0], int(sums[1])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t_val = time.perf_counter()
        val_mae = sharded_val_mae(eval_model, data_dev, val_idx, y_val, scaler, rank=rank,
                                  world=world, batch_size=train_config.eval_batch_size,
                                  device=dev)  # fmt: skip
        t_end = time.perf_counter()
        epoch_time = t_end - t0
        state.train_time_s += epoch_time
        if val_mae < state.best_val_mae:
            state.best_val_mae, state.best_epoch, state.bad_epochs = val_mae, state.epoch, 0
            best_weights = {k: v.detach().cpu().clone() for k, v in eval_model.state_dict().items()}
        else:
            state.bad_epochs += 1
        state.history.append({"epoch": state.epoch, "train_loss": float(total) / max(count, 1),
                              "val_mae": val_mae, "lr": float(optimizer.param_groups[0]["lr"]),
                              "epoch_time_s": epoch_time, "train_s": t_val - t0,
                              "val_s": t_end - t_val, "wall_time_s": state.train_time_s,
                              "processes": world})  # fmt: skip
        state.epoch += 1
        state.stopped_early = state.bad_epochs >= train_config.patience
        finished = state.epoch >= train_config.max_epochs or state.stopped_early
        if rank == 0:
            _atomic_save({"version": CHECKPOINT_VERSION, "identity": identity,
                          "finished": finished,
                          "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                          "optimizer": _optimizer_state_cpu(optimizer),
                          "schedule": schedule.state_dict(),
                          "state": asdict(state), "best_weights": best_weights,
                          "ema": None if ema is None else ema.state_dict()}, last)  # fmt: skip
            (work_dir / "history.json").write_text(json.dumps(state.history, indent=1))
        if world > 1:
            dist.barrier()
    summary: dict[str, Any] = {}
    if rank == 0:
        summary = write_member(member_path, seed=seed, state=state, best_weights=best_weights,
                               model=model, model_config=model_config,
                               train_config=train_config, scaler=scaler, data=data, device=dev,
                               cuda_graphs=graphed, processes=world,
                               static_shapes=None if shapes is None
                               else [asdict(s) for s in shapes])  # fmt: skip
    return _broadcast(summary, world)
