"""Training one ensemble member: resumable, deterministic on CPU, selected on validation only.

:func:`train_member` trains GemNet-T on the training ids of a split, with targets standardised
by training statistics (:class:`tracer.normalization.TargetScaler`). After every epoch it writes
a complete checkpoint (model, optimiser, schedule, early-stopping state, history) to
``work_dir/last.pt``; started again with the same arguments, it resumes from there, and on CPU
ends with the identical final checkpoint. The best epoch is chosen on validation MAE alone; the
test ids are never read. The member file (``member_<seed>.pt``) holds the best weights, the
hyperparameters, the target statistics, the graph settings and a training summary.

This module imports neither pymatgen nor DVC: it runs wherever torch is installed (the GPU
machine included), reading the graph dataset written by the ``graphs`` stage.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tracer import __version__
from tracer.dataset import (
    GraphDataset,
    PaddedBatcher,
    Shapes,
    batches_by_size,
    epoch_batches,
    plan_static_shapes,
    scale_fit_batches,
)
from tracer.models.baselines import CONFIGS, ModelConfig, build_model, config_from_dict
from tracer.models.domain import DomainGemNetT
from tracer.models.gemnet import GemNetT, check_atomic_numbers, fit_scale_factors
from tracer.normalization import TargetScaler
from tracer.steps import (
    CudaGraphStep,
    EagerStep,
    WeightAverage,
    compiled,
    seed_position_noise,
    weighted_loss,
)

CHECKPOINT_VERSION = 1
log = logging.getLogger(__name__)


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
        loss: ``l1`` (MAE) or ``mse`` on standardised targets.
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
            replay each step from that shape's CUDA graph (:class:`tracer.steps.CudaGraphStep`);
            ignored on the CPU.
        shape_buckets: how many static shapes (and graphs) the batches of a CUDA-graph run are
            padded to (:func:`tracer.dataset.plan_static_shapes`); more buckets, less padding.
        compile: train through ``torch.compile`` of the forward pass (dynamic shapes, one
            compilation; :func:`tracer.steps.compiled`): fused kernels, fewer launches. The
            compilation (tens of seconds) counts in the training time.
        position_noise_angstrom: σ (Å) of the Gaussian displacement given to every atom at
            each training step (:class:`tracer.steps.EagerStep`; a regulariser against
            memorising a few thousand relaxed structures; validation and prediction never
            jitter); the noise is seeded per (seed, epoch), so a resumed run draws the same.
            0: none.
    """

    max_epochs: int = 100
    batch_size: int = 32
    max_edges_per_batch: int | None = None
    lr: float = 5e-4
    weight_decay: float = 1e-5
    warmup_epochs: int = 2
    final_lr_factor: float = 0.01
    grad_clip: float = 10.0
    loss: Literal["l1", "mse"] = "l1"
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

    def apply_precision(self) -> None:
        """Set this process's CUDA matmul/cuDNN TF32 switches to ``precision``."""
        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

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


def data_fingerprint(data: GraphDataset, split: dict[str, Sequence[str]]) -> str:
    """Hash of the training and validation ids, their targets and the graph settings."""
    digest = hashlib.sha256()
    for name in ("train", "val"):
        idx = data.index_of(split[name])
        digest.update(json.dumps(list(split[name])).encode())
        digest.update(data.target[torch.as_tensor(idx)].numpy().tobytes())
    digest.update(f"{data.cutoff}/{data.max_neighbors}/{int(data.edge_ptr[-1])}".encode())
    if data.domain is not None:  # a multi-domain set: the domains are data too
        digest.update(data.domain.cpu().numpy().tobytes())
    return digest.hexdigest()


class _CollateWithTargets:
    """Picklable collate for DataLoader workers: ``(batch, targets, weights)`` of a list of
    indices, padded to the first of ``shapes`` that holds them when given (else ``weights`` is
    None)."""

    def __init__(self, data: GraphDataset, shapes: Shapes | None = None) -> None:
        self.data, self.shapes = data, shapes

    def __call__(self, indices: np.ndarray) -> tuple[Any, torch.Tensor, torch.Tensor | None]:
        if self.shapes is not None:
            return self.data.collate_padded(indices, self.shapes)
        return self.data.collate(indices), self.data.targets(indices), None


def batch_stream(
    data: GraphDataset,
    data_dev: GraphDataset,
    batches: Sequence[np.ndarray],
    *,
    workers: int,
    device: torch.device,
    shapes: Shapes | None = None,
    batcher: PaddedBatcher | None = None,
) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor | None]]:
    """``(GraphBatch, targets, weights)`` on ``device`` for each index array, in order.

    With ``shapes``, batches are padded to them (:func:`tracer.dataset.pad_batch`) and ``weights``
    marks the real structures; else ``weights`` is None. With ``workers`` > 0 the batches are
    cut from the CPU copy ``data`` in DataLoader processes and copied asynchronously from
    pinned memory; else they are cut from ``data_dev`` here (by ``batcher`` when given, which
    must pad to ``shapes``).
    """
    if workers <= 0:
        cut = batcher or _CollateWithTargets(data_dev, shapes)
        for b in batches:
            yield cut(b)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        list(batches),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_CollateWithTargets(data, shapes),
        pin_memory=device.type == "cuda",
        prefetch_factor=4,
    )
    for batch, y, w in loader:
        yield (
            batch.to(device, non_blocking=True),
            y.to(device, non_blocking=True),
            None if w is None else w.to(device, non_blocking=True),
        )


def pick_device(requested: str = "auto") -> torch.device:
    """``cuda`` when available (or requested), else ``cpu``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, final: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``final`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(
    model: nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA). For CUDA graphs it is capturable, with the learning rate a device
    tensor that schedules update in place; its base rate stays a float, so a schedule never
    reads the device."""
    graphed = config.graphed_on(device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=torch.tensor(config.lr, device=device) if graphed else config.lr,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
        capturable=graphed,
    )
    for group in optimizer.param_groups:
        group["initial_lr"] = config.lr
    return optimizer


def make_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule, stepped once per optimiser step: linear warm-up over
    ``warmup_epochs``, then cosine decay to ``lr * final_lr_factor`` at ``max_epochs``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step,
            warmup_steps=config.warmup_epochs * steps_per_epoch,
            total_steps=config.max_epochs * steps_per_epoch,
            final=config.final_lr_factor,
        ),
    )


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
    :func:`tracer.steps.compiled`, unless ``precompiled`` says that ``model`` already wraps a
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


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    graphed: bool,
    device: torch.device,
) -> None:
    """Restore a checkpointed optimiser state (it follows the parameters' device); a graphed
    optimiser gets its learning rate back as a device tensor."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, device=device) if graphed else lr


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
    from tqdm.auto import tqdm

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


def run_identity(
    seed: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: GraphDataset,
    split: dict[str, Sequence[str]],
    **extra: Any,
) -> dict[str, Any]:
    """What makes a checkpoint this run's own: seed, model and training settings, the data's
    fingerprint, the code version, and ``extra`` (e.g. the starting weights' sha256)."""
    return {
        "seed": seed,
        "model": {"kind": model_config.kind, **model_config.to_dict()},
        "train": asdict(train_config),
        "data": data_fingerprint(data, split),
        "tracer_version": __version__,
        **extra,
    }


def write_member(
    member_path: str | Path,
    *,
    seed: int,
    state: TrainState,
    best_weights: dict[str, torch.Tensor],
    model: nn.Module,
    model_config: ModelConfig,
    train_config: TrainConfig,
    scaler: TargetScaler,
    data: GraphDataset,
    device: torch.device,
    **extra: Any,
) -> dict[str, Any]:
    """Write the member file (best weights, settings, target scaler, history and a summary with
    ``extra`` appended) that prediction and the ensemble code read; return the summary."""
    summary = {
        "seed": seed,
        "best_epoch": state.best_epoch,
        "best_val_mae": state.best_val_mae,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "train_time_s": state.train_time_s,
        "device": _device_name(device),
        "num_params": sum(p.numel() for p in model.parameters()),
        "ema_decay": train_config.ema_decay,
        "compiled": train_config.compile,
        **extra,
    }
    member = {
        "version": CHECKPOINT_VERSION,
        "tracer_version": __version__,
        "kind": model_config.kind,
        "model_config": model_config.to_dict(),
        "train_config": asdict(train_config),
        "scaler": scaler.to_dict(),
        "state_dict": best_weights,
        "summary": summary,
        "history": state.history,
        "graph": {"cutoff": data.cutoff, "max_neighbors": data.max_neighbors},
        "target_unit": data.unit,
    }
    member_path = Path(member_path)
    member_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(member, member_path)
    return summary


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _initial_weights(path: str | Path, model_config: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of a model file to fine-tune from, checked to fit ``model_config``."""
    record = torch.load(Path(path), map_location="cpu", weights_only=False)
    if record.get("kind") != model_config.kind or record.get("model_config") != (
        model_config.to_dict()
    ):
        raise ValueError(
            f"{path}: a {record.get('kind')!r} model of another configuration cannot start "
            f"this {model_config.kind!r} run"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()}


def load_member(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TargetScaler, dict[str, Any]]:
    """Load a member (or baseline) file: the model (eval mode), its target scaler and the
    whole record."""
    record = torch.load(Path(path), map_location="cpu", weights_only=False)
    if record.get("kind") not in CONFIGS:
        raise ValueError(f"{path} is not a TRACER model file (kind {record.get('kind')!r})")
    model = build_model(config_from_dict(record["kind"], record["model_config"]))
    model.load_state_dict(record["state_dict"])
    model.to(device).eval()
    s = record["scaler"]
    return model, TargetScaler(mean=s["mean"], std=s["std"], n_train=s["n_train"]), record


def _optimizer_state_cpu(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    sd = copy.deepcopy(optimizer.state_dict())
    for st in sd["state"].values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                st[k] = v.cpu()
    for group in sd["param_groups"]:
        group["lr"] = float(group["lr"])
    return sd


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
