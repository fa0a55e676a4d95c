"""CGCNN element features: the shipped table, and GemNet-T's atom embedding built on it."""

from dataclasses import replace

import pytest
import torch
from test_train import CFG as SMALL

from tracer.models import element_features as ef
from tracer.models.gemnet import GemNetT


def test_table_is_92_bits_for_elements_1_to_100():
    f = ef.cgcnn_features()
    assert f.shape == (100, ef.NUM_CGCNN_FEATURES)
    assert set(f.unique().tolist()) == {0.0, 1.0}
    assert f.sum(1).min() >= 6  # every element has its properties binned
    assert len(torch.unique(f, dim=0)) > 90  # nearly all elements distinct
    assert ef.cgcnn_features(10).equal(f[:10])
    with pytest.raises(ValueError, match=r"1\.\.100"):
        ef.cgcnn_features(101)


def test_table_matches_jarvis_tools():
    pytest.importorskip("jarvis.core.specie")
    from jarvis.core.specie import get_node_attributes
    from pymatgen.core import Element

    f = ef.cgcnn_features()
    for z in (1, 8, 26, 55, 79, 92, 100):
        expected = get_node_attributes(Element.from_Z(z).symbol, atom_features="cgcnn")
        assert f[z - 1].tolist() == [float(v) for v in expected], z
    assert ef.from_jarvis() == ef._bits()


def test_broken_table_is_named(tmp_path, monkeypatch):
    bad = tmp_path / "t.json"
    bad.write_text('{"bits": {"1": "0101"}}')
    monkeypatch.setattr(ef, "TABLE", bad)
    ef._bits.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"elements 1\.\.1"):
            ef.cgcnn_features()
    finally:
        ef._bits.cache_clear()


def test_cgcnn_embedding_starts_from_the_element_properties():
    torch.manual_seed(0)
    model = GemNetT(replace(SMALL, atom_features="cgcnn"))
    z = torch.tensor([1, 8, 26, 26])
    h = model.embed_atoms(z)
    feats = ef.cgcnn_features()[z - 1]
    # the learned residual starts at zero: the embedding is the projection of the bits
    torch.testing.assert_close(h, feats @ model.element_proj.weight.T)
    assert h[2].equal(h[3]) and not h[0].equal(h[1])
    assert 0.3 < h.std().item() < 3  # about unit scale at the start
    # the residual is a parameter that training moves
    h.sum().backward()
    assert model.atom_emb.weight.grad[25].abs().sum() > 0
    assert model.num_params == GemNetT(SMALL).num_params + 92 * SMALL.emb_size_atom


def test_unknown_atom_features_rejected():
    with pytest.raises(ValueError, match="atom_features"):
        GemNetT(replace(SMALL, atom_features="magpie"))
