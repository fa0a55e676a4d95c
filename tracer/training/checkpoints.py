"""Member files and checkpoints: written atomically, identified by the run's settings and data,
read back with their model, normalisation and optimiser state."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tracer import __version__
from tracer.graphs.dataset import GraphDataset
from tracer.models.registry import CONFIGS, ModelConfig, build_model, config_from_dict
from tracer.training.normalization import TargetScaler
from tracer.training.settings import CHECKPOINT_VERSION, TrainConfig, TrainState


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
    # every weight comes from the file (a strict load), so none is initialised first
    model = build_model(config_from_dict(record["kind"], record["model_config"]), initialise=False)
    model.load_state_dict(record["state_dict"], strict=True)
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
