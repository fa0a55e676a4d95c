"""Training batches: the split's structures in a seeded order, cut in loader workers, with their
normalised targets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from tracer.graphs.dataset import GraphDataset
from tracer.graphs.padding import PaddedBatcher, Shapes


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

    With ``shapes``, batches are padded to them (:func:`tracer.graphs.padding.pad_batch`) and
    ``weights``
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
