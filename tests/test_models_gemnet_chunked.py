"""The chunked triplet interaction gives the model's own numbers, and a large supercell is
predicted as its primitive cell."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from tracer.graphs.cell_lists import graph_dataset
from tracer.graphs.dataset import structure_tensors, structures_to_graphs
from tracer.models.gemnet import GemNetT, GemNetTConfig
from tracer.models.gemnet_chunked import ChunkedTripletInteraction, chunk_triplets


def test_chunked_equals_unchunked_on_real_crystals(flla_structures):
    torch.manual_seed(0)
    model = GemNetT(GemNetTConfig(num_blocks=2, emb_size_atom=16, emb_size_edge=16,
                                  emb_size_trip=8, emb_size_bil_trip=8, num_radial=8,
                                  cutoff=6.0, max_neighbors=12)).eval()  # fmt: skip
    data = structures_to_graphs([str(k) for k in range(len(flla_structures))], flla_structures,
                                None, cutoff=6.0, max_neighbors=12)  # fmt: skip
    batch = data.collate(np.arange(len(data)))
    with torch.inference_mode():
        ref = model(batch)
        chunk_triplets(model, chunk_edges=7)  # far smaller than one structure's edges
        assert all(isinstance(b.triplet, ChunkedTripletInteraction) for b in model.int_blocks)
        got = model(batch)
        chunk_triplets(model, chunk_edges=10**9)  # one chunk: the module itself
        again = model(batch)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(again, ref, rtol=0, atol=0)


def test_refuses_to_fit_scale_factors():
    model = chunk_triplets(GemNetT(GemNetTConfig(num_blocks=1)), chunk_edges=4)
    s = Structure(Lattice.cubic(3.0), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (2, 2, 2)
    data = structures_to_graphs(["x"], [s], None, cutoff=6.0, max_neighbors=12)
    model.int_blocks[0].triplet.inner.scale_cbf_sum.start()
    with pytest.raises(RuntimeError, match="fitted models only"):
        model(data.collate([0]))


def test_shipped_member_predicts_a_supercell_as_its_primitive_cell():
    """1,728 atoms (6x6x6 rock salt), through cell lists and chunks, within 1e-4 eV/atom of the
    8-atom cell (the 13,824-atom case and its memory: benchmarks/large_cell.py)."""
    from tracer.inference.predict import Ensemble

    ens = Ensemble.load()
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip
    arrays = [structure_tensors(nacl), structure_tensors(nacl * (6, 6, 6))]
    data = graph_dataset(["p", "s"], arrays, cutoff=ens.cutoff, max_neighbors=ens.max_neighbors)
    out = ens.predict_arrays(["p", "s"], arrays, device="cpu", data=data, batch_size=1)
    np.testing.assert_allclose(out["members"][1], out["members"][0], atol=1e-4)
