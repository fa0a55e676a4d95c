"""Training one ensemble member: resumable, deterministic on CPU, selected on validation only.

:func:`train_member` trains GemNet-T on the training ids of a split, with targets standardised
by training statistics (:class:`tracer.training.normalization.TargetScaler`), on one device or,
given a data-parallel strategy, on several processes. Its epochs run in the one training loop,
:func:`tracer.training.loop.fit`: a complete checkpoint after every epoch in ``work_dir/last.pt``;
started again with the same arguments, it resumes from there, and on CPU ends with the identical
final checkpoint. The best epoch is chosen on validation MAE alone; the test ids are never
read. The member file (``member_<seed>.pt``) holds the best weights, the
hyperparameters, the target statistics, the graph settings and a training summary.

This module imports neither pymatgen nor DVC: it runs wherever torch is installed (the GPU
machine included), reading the graph dataset written by the ``graphs`` stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tracer.graphs.dataset import GraphDataset, batches_by_size, epoch_batches, scale_fit_batches
from tracer.graphs.padding import PaddedBatcher, plan_static_shapes
from tracer.models.domain import DomainGemNetT
from tracer.models.gemnet import GemNetT, check_atomic_numbers, fit_scale_factors
from tracer.models.registry import ModelConfig, build_model
from tracer.training.batches import batch_stream
from tracer.training.checkpoints import _file_sha256, _initial_weights, run_identity, write_member
from tracer.training.loop import ONE_PROCESS, Strategy, fit, restore, weight_average
from tracer.training.normalization import TargetScaler
from tracer.training.optim import make_optimizer, make_schedule
from tracer.training.settings import TrainConfig
from tracer.training.steps import (
    CudaGraphStep,
    EagerStep,
    WeightAverage,
    compiled,
    seed_position_noise,
    weighted_loss,
)

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    """``cuda`` when available (or requested), else ``cpu``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    ema: WeightAverage | None = None,
    *,
    warmup: int = 3,
    precompiled: bool = False,
) -> EagerStep:
    """The training step the trainer uses: replayed from a CUDA graph when ``cuda_graphs`` is
    set and ``device`` is CUDA (batches must then be padded; the first ``warmup`` steps are
    eager), else eager. With ``compile``, the step runs ``model`` through
    :func:`tracer.training.steps.compiled`, unless ``precompiled`` says that ``model`` already
    wraps a
    compiled module (DDP around one)."""
    loss = weighted_loss(config.loss)
    forward = compiled(model) if config.compile and not precompiled else model
    common = {"grad_clip": config.grad_clip, "ema": ema, "forward": forward,
              "position_noise": config.position_noise_angstrom}  # fmt: skip
    if config.graphed_on(device):
        return CudaGraphStep(
            model, optimizer, loss, warmup=warmup, compiled=config.compile, **common
        )
    return EagerStep(model, optimizer, loss, **common)


@torch.no_grad()
def predict_normalised(
    model: nn.Module,
    data: GraphDataset,
    indices: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Model outputs (standardised units) for the given structures, in order: ``[n]``, or
    ``[n, 2]`` from a variance head (mean and raw variance,
    :func:`tracer.models.gemnet.mean_and_variance`)."""
    model.eval()
    out = []
    num_edges = data.num_edges().cpu().numpy()
    for batch_idx in batches_by_size(indices, num_edges, batch_size=batch_size, shuffle=False):
        out.append(model(data.collate(batch_idx).to(device)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def sharded_val_mae(
    model: nn.Module,
    data_dev: GraphDataset,
    val_idx: np.ndarray,
    y_val: np.ndarray,
    scaler: TargetScaler,
    *,
    strategy: Strategy = ONE_PROCESS,
    batch_size: int,
    device: torch.device,
) -> float:
    """Validation MAE (eV/atom) with the structures shared out: process ``r`` of ``W``
    predicts ``val_idx[r::W]``, and the absolute errors' sum and count are summed over the
    processes (float64), so every process returns the MAE over all of ``val_idx`` (``y_val``
    in its order). One process predicts them all."""
    mine = np.arange(strategy.rank, len(val_idx), strategy.world)
    err = torch.zeros(2, dtype=torch.float64)
    if len(mine):
        out = predict_normalised(model, data_dev, val_idx[mine], batch_size=batch_size,
                                 device=device)  # fmt: skip
        pred = scaler.inverse(out if out.ndim == 1 else out[:, 0])  # a variance head: its mean
        err[0] = float(np.abs(pred - y_val[mine]).sum())
        err[1] = len(mine)
    err = strategy.sum_over_processes(err)
    return float(err[0] / err[1])


def train_member(
    *,
    data: GraphDataset,
    split: dict[str, Sequence[str]],
    seed: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    work_dir: str | Path,
    member_path: str | Path,
    device: str = "auto",
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    init_from: str | Path | None = None,
    strategy: Strategy = ONE_PROCESS,
) -> dict[str, Any]:
    """Train (or resume) one model (an ensemble member, or a baseline of another ``kind``);
    write ``member_path``; return its summary.

    Args:
        data: graph dataset of all structures (targets in eV/atom).
        split: ``{"train": ids, "val": ids, ...}``; only train and val are read.
        seed: member seed (initialisation and batch order).
        model_config, train_config: hyperparameters.
        work_dir: folder for ``last.pt`` (resume point) and ``history.json``.
        member_path: where the final member file goes.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: show tqdm progress bars.
        on_epoch_end: callback ``(epoch, metrics)`` after each epoch's checkpoint is written
            (used for dvclive logging, and by tests to interrupt a run).
        init_from: a trained model file of the same kind and configuration to start from
            (fine-tuning): its weights, not its scale-factor fit; the target scaler is fitted
            on this run's training targets as always.
        strategy: one process (default), or the processes of a data-parallel run
            (:class:`tracer.training.distributed.DataParallel`): each trains on its share of
            every batch and validates its share of the validation set; rank 0 writes.
    """

    if model_config.cutoff != data.cutoff or model_config.max_neighbors != data.max_neighbors:
        raise ValueError(
            f"graph dataset was built with cutoff {data.cutoff} Å / max_neighbors "
            f"{data.max_neighbors}, model expects {model_config.cutoff} / "
            f"{model_config.max_neighbors}"
        )
    check_atomic_numbers(data.z, model_config.num_elements)
    dev = pick_device(device)
    if dev.type == "cuda":  # streams and CUDA graphs belong to the current device
        torch.cuda.set_device(dev if dev.index is not None else torch.cuda.current_device())
    train_config.apply_precision()
    train_config.apply_threads(dev)
    work_dir, member_path = Path(work_dir), Path(member_path)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_idx = data.index_of(split["train"])
    val_idx = data.index_of(split["val"])
    targets = dict(zip(data.ids, data.target.tolist(), strict=True))
    scaler = TargetScaler.fit(targets, list(split["train"]))
    y_val = data.target[torch.as_tensor(val_idx)].numpy()
    num_edges = data.num_edges().numpy()

    def batches_of(epoch: int) -> list[np.ndarray]:
        return strategy.share_batches(
            epoch_batches(train_idx, num_edges, batch_size=train_config.batch_size,
                          max_edges=train_config.max_edges_per_batch, seed=seed, epoch=epoch),
            num_edges,
        )  # fmt: skip

    torch.manual_seed(seed)
    if train_config.graphed_on(dev) and not model_config.kind.startswith("gemnet_t"):
        # padded batches: CGCNN's batch norm would see the padding atoms
        raise ValueError(f"CUDA-graph training is for GemNet-T only, not {model_config.kind}")
    model = build_model(model_config).to(dev)
    graphed = train_config.graphed_on(dev)
    optimizer = make_optimizer(model, train_config, dev)
    schedule = make_schedule(optimizer, train_config, len(batches_of(0)))
    init_sha = None if init_from is None else _file_sha256(Path(init_from))
    identity = run_identity(seed, model_config, train_config, data, split, init_from=init_sha,
                            **strategy.identity_fields())  # fmt: skip
    last = work_dir / "last.pt"
    resumed = restore(last, identity, model=model, optimizer=optimizer, schedule=schedule,
                      device=dev, graphed=graphed)  # fmt: skip
    if resumed is None and init_from is not None:
        model.load_state_dict(_initial_weights(init_from, model_config))
    data_dev = data.to(dev)  # batches are cut on the device
    if resumed is None and init_from is None and isinstance(model, GemNetT | DomainGemNetT):
        fitting = scale_fit_batches(train_idx, num_edges, batch_size=train_config.batch_size,
                                    seed=seed, count=train_config.scale_fit_batches)  # fmt: skip
        fit_scale_factors(model, [data_dev.collate(b) for b in fitting])
    ema = weight_average(model, train_config.ema_decay, resumed)
    wrapped, step_config, warmup = strategy.wrap(model, train_config, graphed)
    step = make_step(wrapped, optimizer, step_config, dev, ema, warmup=warmup,
                     precompiled=wrapped is not model)  # fmt: skip
    # batches cut in loader processes only by a single process
    workers = train_config.loader_workers if strategy.world == 1 else 0
    shapes, batcher = None, None
    if graphed:  # a few shapes that together hold every batch of every epoch
        shapes = plan_static_shapes(
            data,
            (b for e in range(train_config.max_epochs) for b in batches_of(e)),
            buckets=train_config.shape_buckets,
        )
        batcher = PaddedBatcher(data_dev, shapes) if workers <= 0 else None

    def run_epoch(epoch: int) -> tuple[torch.Tensor, int]:
        if train_config.position_noise_angstrom > 0:  # each process its own noise
            seed_position_noise(seed, epoch, strategy.rank)
        model.train()
        batches = batches_of(epoch)
        total = torch.zeros((), dtype=torch.float64, device=dev)  # no per-step host sync
        count = 0
        stream = batch_stream(data, data_dev, batches, workers=workers, device=dev,
                              shapes=shapes, batcher=batcher)  # fmt: skip
        for b, (batch, y_raw, weight) in tqdm(
            zip(batches, stream, strict=True),
            total=len(batches),
            desc=f"member {seed} epoch {epoch}",
            leave=False,
            disable=not progress,
        ):
            y = ((y_raw - scaler.mean) / scaler.std).to(torch.float32)
            loss = step(batch, y, None if weight is None else weight.to(torch.float32))
            schedule.step()
            total += loss.double() * len(b)
            count += len(b)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return total, count

    def validate(kept: nn.Module) -> float:
        return sharded_val_mae(kept, data_dev, val_idx, y_val, scaler, strategy=strategy,
                               batch_size=train_config.eval_batch_size, device=dev)  # fmt: skip

    state, best_weights = fit(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        run_epoch=run_epoch,
        validate=validate,
        max_epochs=train_config.max_epochs,
        patience=train_config.patience,
        checkpoint=last,
        identity=identity,
        resumed=resumed,
        ema=ema,
        strategy=strategy,
        history_path=work_dir / "history.json",
        on_epoch_end=on_epoch_end,
    )
    summary: dict[str, Any] = {}
    if strategy.writes:
        summary = write_member(
            member_path,
            seed=seed,
            state=state,
            best_weights=best_weights,
            model=model,
            model_config=model_config,
            train_config=step_config,
            scaler=scaler,
            data=data,
            device=dev,
            cuda_graphs=graphed,
            **strategy.history_fields(),
            static_shapes=None if shapes is None else [asdict(s) for s in shapes],
        )
    return strategy.broadcast(summary)
