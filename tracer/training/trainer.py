"""Training one ensemble member: resumable, deterministic on CPU, selected on validation only.

:func:`train_member` trains GemNet-T on the training ids of a split, with targets standardised
by training statistics (:class:`tracer.training.normalization.TargetScaler`). After every epoch it
writes
a complete checkpoint (model, optimiser, schedule, early-stopping state, history) to
``work_dir/last.pt``; started again with the same arguments, it resumes from there, and on CPU
ends with the identical final checkpoint. The best epoch is chosen on validation MAE alone; the
test ids are never read. The member file (``member_<seed>.pt``) holds the best weights, the
hyperparameters, the target statistics, the graph settings and a training summary.

This module imports neither pymatgen nor DVC: it runs wherever torch is installed (the GPU
machine included), reading the graph dataset written by the ``graphs`` stage.
"""

from __future__ import annotations

import json
import logging
import time
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
from tracer.training.checkpoints import (
    _atomic_save,
    _file_sha256,
    _initial_weights,
    _optimizer_state_cpu,
    load_optimizer_state,
    run_identity,
    write_member,
)
from tracer.training.normalization import TargetScaler
from tracer.training.optim import make_optimizer, make_schedule
from tracer.training.settings import CHECKPOINT_VERSION, TrainConfig, TrainState
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
    """Model outputs (standardised units) for the given structures, in order."""
    model.eval()
    out = []
    num_edges = data.num_edges().cpu().numpy()
    for batch_idx in batches_by_size(indices, num_edges, batch_size=batch_size, shuffle=False):
        out.append(model(data.collate(batch_idx).to(device)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


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
    work_dir, member_path = Path(work_dir), Path(member_path)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_idx = data.index_of(split["train"])
    val_idx = data.index_of(split["val"])
    targets = dict(zip(data.ids, data.target.tolist(), strict=True))
    scaler = TargetScaler.fit(targets, list(split["train"]))
    y_val = data.target[torch.as_tensor(val_idx)].numpy()
    num_edges = data.num_edges().numpy()

    def batches_of(epoch: int) -> list[np.ndarray]:
        return epoch_batches(train_idx, num_edges, batch_size=train_config.batch_size,
                             max_edges=train_config.max_edges_per_batch, seed=seed,
                             epoch=epoch)  # fmt: skip

    torch.manual_seed(seed)
    if train_config.graphed_on(dev) and not model_config.kind.startswith("gemnet_t"):
        # padded batches: CGCNN's batch norm would see the padding atoms
        raise ValueError(f"CUDA-graph training is for GemNet-T only, not {model_config.kind}")
    model = build_model(model_config).to(dev)
    n_batches = len(batches_of(0))
    graphed = train_config.graphed_on(dev)
    optimizer = make_optimizer(model, train_config, dev)
    schedule = make_schedule(optimizer, train_config, n_batches)
    state = TrainState()
    best_weights: dict[str, torch.Tensor] | None = None
    last = work_dir / "last.pt"
    init_sha = None if init_from is None else _file_sha256(Path(init_from))
    identity = run_identity(seed, model_config, train_config, data, split, init_from=init_sha)
    ckpt = torch.load(last, map_location="cpu", weights_only=False) if last.exists() else None
    if ckpt is not None and (ckpt["identity"] != identity or ckpt.get("finished")):
        # a finished run, or one of other settings or data: this is no interrupted run of ours
        log.warning("starting %s afresh (previous checkpoint finished or differs)", work_dir)
        last.unlink()
        ckpt = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"], graphed=graphed, device=dev)
        schedule.load_state_dict(ckpt["schedule"])
        state = TrainState(**ckpt["state"])
        best_weights = ckpt["best_weights"]
    if ckpt is None and init_from is not None:
        model.load_state_dict(_initial_weights(init_from, model_config))
    data_dev = data.to(dev)  # batches are cut on the device
    if ckpt is None and init_from is None and isinstance(model, GemNetT | DomainGemNetT):
        fit = scale_fit_batches(train_idx, num_edges, batch_size=train_config.batch_size,
                                seed=seed, count=train_config.scale_fit_batches)  # fmt: skip
        fit_scale_factors(model, [data_dev.collate(b) for b in fit])
    ema = None
    if train_config.ema_decay is not None:
        ema = WeightAverage(model, train_config.ema_decay)
        if ckpt is not None:
            ema.load_state_dict(ckpt["ema"])
    eval_model = model if ema is None else ema.model
    step = make_step(model, optimizer, train_config, dev, ema)
    shapes, batcher = None, None
    if graphed:  # a few shapes that together hold every batch of every epoch
        shapes = plan_static_shapes(
            data,
            (b for e in range(train_config.max_epochs) for b in batches_of(e)),
            buckets=train_config.shape_buckets,
        )
        batcher = PaddedBatcher(data_dev, shapes) if train_config.loader_workers <= 0 else None

    while state.epoch < train_config.max_epochs and not state.stopped_early:
        epoch = state.epoch
        t0 = time.perf_counter()
        if train_config.position_noise_angstrom > 0:
            seed_position_noise(seed, epoch)
        model.train()
        batches = batches_of(epoch)
        total = torch.zeros((), dtype=torch.float64, device=dev)  # no per-step host sync
        count = 0
        stream = batch_stream(
            data,
            data_dev,
            batches,
            workers=train_config.loader_workers,
            device=dev,
            shapes=shapes,
            batcher=batcher,
        )
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
        total = float(total)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        pred_val = scaler.inverse(
            predict_normalised(
                eval_model, data_dev, val_idx, batch_size=train_config.eval_batch_size, device=dev
            )
        )
        val_mae = float(np.mean(np.abs(pred_val - y_val)))
        epoch_time = time.perf_counter() - t0
        state.train_time_s += epoch_time
        improved = val_mae < state.best_val_mae
        if improved:
            state.best_val_mae, state.best_epoch, state.bad_epochs = val_mae, epoch, 0
            best_weights = {k: v.detach().cpu().clone() for k, v in eval_model.state_dict().items()}
        else:
            state.bad_epochs += 1
        metrics = {
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            "val_mae": val_mae,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "epoch_time_s": epoch_time,
            "wall_time_s": state.train_time_s,
        }
        state.history.append(metrics)
        state.epoch += 1
        state.stopped_early = state.bad_epochs >= train_config.patience
        finished = state.epoch >= train_config.max_epochs or state.stopped_early
        _atomic_save(
            {
                "version": CHECKPOINT_VERSION,
                "identity": identity,
                "finished": finished,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": _optimizer_state_cpu(optimizer),
                "schedule": schedule.state_dict(),
                "state": asdict(state),
                "best_weights": best_weights,
                "ema": None if ema is None else ema.state_dict(),
            },
            last,
        )
        (work_dir / "history.json").write_text(json.dumps(state.history, indent=1))
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)

    if best_weights is None:
        raise RuntimeError("training ran no epoch")
    return write_member(
        member_path,
        seed=seed,
        state=state,
        best_weights=best_weights,
        model=model,
        model_config=model_config,
        train_config=train_config,
        scaler=scaler,
        data=data,
        device=dev,
        cuda_graphs=graphed,
        static_shapes=None if shapes is None else [asdict(s) for s in shapes],
    )


