"""The one training loop: epochs, validation, selection, weight averaging, checkpoints, resume.

Every model this project trains goes through :func:`fit`: a GemNet-T member or baseline on one
device (:func:`tracer.training.trainer.train_member`), a member on several processes
(:func:`tracer.training.distributed.train_ddp`, whose :class:`Strategy` sums the epoch's loss
over the ranks, lets rank 0 alone write and waits for all ranks after each epoch) and ALIGNN
(:func:`tracer.training.alignn.train_alignn`, an adapter with its own graphs, batches and
shuffling state). What differs between them comes in as callables: ``run_epoch`` trains one
epoch and returns its summed loss and structure count; ``validate`` returns the validation MAE
(eV/atom) of the model that is kept (the weight average when there is one). What is the same is
written here once:

* **Selection on validation only**: the best epoch is the one with the lowest validation MAE;
  its weights (the average's, with ``ema``) are kept; ``patience`` epochs without improvement
  stop the run early.
* **Checkpoint after every epoch** (``last.pt``): model, optimiser, schedule, training state,
  best weights, the weight average and the adapter's ``extra_state``, with the run's
  ``identity``. :func:`restore` reads it back before the loop (so that a step captured in a CUDA
  graph sees restored weights); a run started again with the same identity goes on from it and,
  on CPU, ends with the identical result; a finished checkpoint or one of another identity is
  not resumed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tracer.training.checkpoints import _atomic_save, _optimizer_state_cpu, load_optimizer_state
from tracer.training.settings import CHECKPOINT_VERSION, TrainConfig, TrainState
from tracer.training.steps import WeightAverage

log = logging.getLogger(__name__)

Weights = dict[str, torch.Tensor]


class Strategy:
    """How one run is spread over processes; this base class is one process. A data-parallel
    strategy (:class:`tracer.training.distributed.DataParallel`) overrides the hooks: the loop's
    (sums, writing, waiting, history) and the GemNet-T trainer's (batches, model wrapping)."""

    rank: int = 0
    world: int = 1
    #: history rows also hold the epoch's two parts, steps (``train_s``) and validation
    #: (``val_s``), as the scale-out record reads them
    epoch_parts: bool = False

    @property
    def writes(self) -> bool:
        """Whether this process writes the checkpoint and the history (rank 0)."""
        return self.rank == 0

    def sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (float64) summed over the processes; one process: unchanged."""
        return values

    def after_epoch(self) -> None:
        """Called by every process after each epoch's checkpoint (DDP: a barrier)."""

    def history_fields(self) -> dict[str, Any]:
        """Extra fields of every history row and of the summary (DDP: the process count)."""
        return {}

    def identity_fields(self) -> dict[str, Any]:
        """Extra fields of the run's identity (DDP: that it is one, whatever the count)."""
        return {}

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process."""
        return value

    def share_batches(self, batches: list[np.ndarray], num_edges: np.ndarray) -> list[np.ndarray]:
        """This process's part of each of the epoch's batches; one process: all of them."""
        return batches

    def wrap(
        self, model: nn.Module, config: TrainConfig, graphed: bool
    ) -> tuple[nn.Module, TrainConfig, int]:
        """The module the step runs, the settings it runs with, and the eager steps before a
        CUDA-graph capture; one process: ``model`` itself, ``config``, 3."""
        return model, config, 3


ONE_PROCESS = Strategy()


@dataclass
class Resumed:
    """What :func:`restore` read back besides the model, optimiser and schedule states."""

    state: TrainState
    best_weights: Weights | None
    ema: dict[str, Any] | None
    extra: dict[str, Any] | None


def restore(
    path: str | Path,
    identity: Any,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    device: torch.device,
    graphed: bool = False,
) -> Resumed | None:
    """Load the checkpoint at ``path`` into ``model``, ``optimizer`` and ``schedule`` when it is
    an unfinished run of this ``identity``; return the rest of it, or None (no checkpoint, a
    finished one, or another run's: this run starts afresh and overwrites it at its first
    epoch)."""
    path = Path(path)
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("identity") != identity or ckpt.get("finished"):
        log.warning("starting %s afresh (its checkpoint is finished or another run's)", path)
        return None
    model.load_state_dict(ckpt["model"])
    load_optimizer_state(optimizer, ckpt["optimizer"], graphed=graphed, device=device)
    schedule.load_state_dict(ckpt["schedule"])
    return Resumed(TrainState(**ckpt["state"]), ckpt["best_weights"], ckpt.get("ema"),
                   ckpt.get("extra"))  # fmt: skip


def weight_average(
    model: nn.Module, decay: float | None, resumed: Resumed | None
) -> WeightAverage | None:
    """The weight average of ``model`` (None without ``decay``), restored from ``resumed``."""
    if decay is None:
        return None
    ema = WeightAverage(model, decay)
    if resumed is not None and resumed.ema is not None:
        ema.load_state_dict(resumed.ema)
    return ema


def fit(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    run_epoch: Callable[[int], tuple[torch.Tensor | float, int]],
    validate: Callable[[nn.Module], float],
    max_epochs: int,
    patience: int | None,
    checkpoint: str | Path,
    identity: Any,
    resumed: Resumed | None = None,
    ema: WeightAverage | None = None,
    strategy: Strategy = ONE_PROCESS,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    history_path: str | Path | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[TrainState, Weights]:
    """Train until ``max_epochs`` (or ``patience`` epochs without a better validation MAE);
    return the training state and the best epoch's weights.

    Args:
        model: the model whose weights are stepped (unwrapped: its state is checkpointed).
        run_epoch: trains epoch ``e`` and returns (sum over structures of the loss, structure
            count) on this process.
        validate: validation MAE (eV/atom) of the model it is given, the same on every process.
        checkpoint, identity: ``last.pt`` and what makes it this run's (see :func:`restore`).
        resumed: what :func:`restore` returned (None: a fresh run).
        ema: the weight average (:func:`weight_average`, restored before any step is
            captured), validated and kept instead of ``model``.
        strategy: one process (default) or data-parallel processes.
        extra_state: the adapter's own resumable state (e.g. a shuffling generator), saved in
            the checkpoint under ``extra``.
        history_path: where the per-epoch history is written as JSON after each epoch.
        on_epoch_end: ``(epoch, history row)`` after each epoch's checkpoint.
    """
    state = TrainState() if resumed is None else resumed.state
    best = None if resumed is None else resumed.best_weights
    kept = model if ema is None else ema.model
    checkpoint = Path(checkpoint)
    if strategy.writes:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    while state.epoch < max_epochs and not state.stopped_early:
        t0 = time.perf_counter()
        total, count = run_epoch(state.epoch)
        sums = torch.tensor([float(total), float(count)], dtype=torch.float64)
        total, count = strategy.sum_over_processes(sums).tolist()
        t_val = time.perf_counter()
        val_mae = validate(kept)
        t_end = time.perf_counter()
        state.train_time_s += t_end - t0
        if val_mae < state.best_val_mae:
            state.best_val_mae, state.best_epoch, state.bad_epochs = val_mae, state.epoch, 0
            best = {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()}
        else:
            state.bad_epochs += 1
        row = {"epoch": state.epoch, "train_loss": total / max(count, 1), "val_mae": val_mae,
               "lr": float(optimizer.param_groups[0]["lr"]), "epoch_time_s": t_end - t0}
        if strategy.epoch_parts:
            row.update(train_s=t_val - t0, val_s=t_end - t_val)
        row.update(wall_time_s=state.train_time_s, **strategy.history_fields())
        state.history.append(row)
        state.epoch += 1
        state.stopped_early = patience is not None and state.bad_epochs >= patience
        if strategy.writes:
            _atomic_save({"version": CHECKPOINT_VERSION, "identity": identity,
                          "finished": state.epoch >= max_epochs or state.stopped_early,
                          "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                          "optimizer": _optimizer_state_cpu(optimizer),
                          "schedule": schedule.state_dict(), "state": asdict(state),
                          "best_weights": best,
                          "ema": None if ema is None else ema.state_dict(),
                          "extra": None if extra_state is None else extra_state()},
                         checkpoint)  # fmt: skip
            if history_path is not None:
                Path(history_path).write_text(json.dumps(state.history, indent=1))
        strategy.after_epoch()
        if on_epoch_end is not None:
            on_epoch_end(row["epoch"], row)
    if best is None:
        raise RuntimeError("training ran no epoch")
    return state, best
