"""GemNet-T's triplet interaction in chunks of edges, for predicting very large cells.

The triplet interaction holds two arrays of size triplets × ``emb_size_trip`` at once (the
gathered neighbour messages and their zero-padded ``[E, K_max, ·]`` form): about 2 GB for a
13,824-atom rock-salt supercell with the shipped model. Every edge's sum over its triplets is
independent of the other edges', so the same arithmetic done for a contiguous range of outgoing
edges at a time gives the same result in memory bounded by the chunk. :func:`chunk_triplets`
swaps this in for a loaded model's interaction modules (inference only: scale factors must be
fitted); predictions agree with the unchunked model to float32 rounding (tested).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tracer.graphs.periodic import Triplets
from tracer.models.gemnet import GemNetT, TripletInteraction

#: outgoing edges per chunk (a chunk's padded array: ``chunk × K_max × emb_size_trip`` floats)
DEFAULT_CHUNK_EDGES = 32_768


class ChunkedTripletInteraction(nn.Module):
    """:class:`tracer.models.gemnet.TripletInteraction` computed ``chunk_edges`` outgoing edges
    at a time, with the wrapped module's weights and fitted scale factors."""

    def __init__(self, inner: TripletInteraction, chunk_edges: int = DEFAULT_CHUNK_EDGES) -> None:
        super().__init__()
        if chunk_edges < 1:
            raise ValueError("chunk_edges must be positive")
        self.inner = inner
        self.chunk_edges = chunk_edges

    def forward(
        self,
        m: Tensor,
        rbf3: Tensor,
        cbf3: tuple[Tensor, Tensor],
        trip: Triplets,
        k_max: int,
        reverse: Tensor,
    ) -> Tensor:
        t = self.inner
        if m.shape[0] <= self.chunk_edges:  # one chunk: the module itself
            return t(m, rbf3, cbf3, trip, k_max, reverse)
        if t.scale_cbf_sum._fitting or t.scale_rbf._fitting:
            raise RuntimeError("chunked triplet interaction is for fitted models only")
        x_ba = t.dense_ba(m)
        x_ba = t.scale_rbf(x_ba * t.mlp_rbf(rbf3), ref=x_ba)
        x_ba = t.down(x_ba)  # [E, trip]; gathered per triplet chunk by chunk below
        rbf_w, sph = cbf3
        n_edges = m.shape[0]
        bounds = torch.searchsorted(
            trip.edge_out, torch.arange(0, n_edges + self.chunk_edges, self.chunk_edges,
                                        device=m.device).clamp(max=n_edges))  # fmt: skip
        parts = []
        for k in range(len(bounds) - 1):
            lo_e = k * self.chunk_edges
            hi_e = min(n_edges, lo_e + self.chunk_edges)
            if lo_e >= hi_e:
                break
            a, b = int(bounds[k]), int(bounds[k + 1])
            sub = Triplets(edge_in=trip.edge_in[a:b], edge_out=trip.edge_out[a:b] - lo_e,
                           slot=trip.slot[a:b])  # fmt: skip
            x_in = x_ba.index_select(0, sub.edge_in)
            parts.append(t.bilinear((rbf_w[lo_e:hi_e], sph[lo_e:hi_e]), x_in, sub, k_max))
        x = t.scale_cbf_sum(torch.cat(parts), ref=x_ba)
        return (t.up_ca(x) + t.up_ac(x).index_select(0, reverse)) * (1.0 / math.sqrt(2.0))


def chunk_triplets(model: GemNetT, chunk_edges: int = DEFAULT_CHUNK_EDGES) -> GemNetT:
    """``model`` with each interaction block's triplet interaction chunked (in place; returns
    the model). Calling it again changes only the chunk size."""
    for block in model.int_blocks:
        inner = block.triplet.inner if isinstance(block.triplet, ChunkedTripletInteraction) \
            else block.triplet  # fmt: skip
        block.triplet = ChunkedTripletInteraction(inner, chunk_edges)
    return model
