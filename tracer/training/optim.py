"""The optimiser and learning-rate schedule of every trainer: AdamW, linear warm-up, cosine decay
to a final fraction."""

from __future__ import annotations

import math

import torch
from torch import nn

from tracer.training.settings import TrainConfig


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
