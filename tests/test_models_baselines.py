"""SchNet, CGCNN and ALIGNN baselines: invariances on real crystals, one training step each,
and the trainer's round trip through a model file."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from tracer.data.validation import validate
from tracer.graphs.dataset import structures_to_graphs
from tracer.models.baselines import CGCNN, CGCNNConfig, SchNet, SchNetConfig
from tracer.models.gemnet import GemNetTConfig
from tracer.models.registry import build_model, config_from_dict
from tracer.training.checkpoints import load_member
from tracer.training.settings import TrainConfig
from tracer.training.trainer import train_member

SMALL = {
    "schnet": SchNetConfig(hidden_channels=16, num_filters=16, num_interactions=2,
                           num_gaussians=12, cutoff=5.0, max_neighbors=12),
    "cgcnn": CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=16, cutoff=6.0, max_neighbors=12),
}  # fmt: skip


def _graphs(structures, cfg, targets=None):
    ids = [str(i) for i in range(len(structures))]
    return structures_to_graphs(
        ids, structures, targets, cutoff=cfg.cutoff, max_neighbors=cfg.max_neighbors
    )


def _predict(model, structures):
    ds = _graphs(structures, model.config)
    with torch.no_grad():
        return model(ds.collate(np.arange(len(structures)))).numpy()


@pytest.fixture(scope="module", params=sorted(SMALL))
def model(request):
    torch.manual_seed(0)
    m = build_model(SMALL[request.param]).double()
    if request.param == "cgcnn":  # batch norm with non-trivial running statistics
        for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm1d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_invariances_and_cell_choice(model, flla_structures):
    rng = np.random.default_rng(0)
    for s in flla_structures[1:5]:
        base = _predict(model, [s])[0]
        rot = Rotation.random(random_state=2).as_matrix()
        rotated = Structure(
            Lattice(s.lattice.matrix @ rot.T), s.species, s.cart_coords @ rot.T,
            coords_are_cartesian=True,
        )  # fmt: skip
        perm = rng.permutation(len(s))
        permuted = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
        unwrapped = Structure(
            s.lattice, s.species, s.frac_coords + rng.integers(-3, 4, size=(len(s), 3))
        )
        supercell = s.copy()
        supercell.make_supercell([2, 1, 1])
        out = _predict(model, [rotated, permuted, unwrapped, supercell])
        np.testing.assert_allclose(out, base, atol=1e-8, rtol=0)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_one_training_step_changes_every_parameter_group(kind, flla_structures):
    cfg = SMALL[kind]
    torch.manual_seed(0)
    model = build_model(cfg).double().train()
    data = _graphs(flla_structures[:6], cfg, targets=[-1.0, 0.5, -0.2, 0.1, -2.0, 0.3])
    batch, y = data.collate(np.arange(6)), data.targets(np.arange(6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = (model(batch) - y).abs().mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert set(changed) >= {k for k, _ in model.named_parameters()}


def test_config_registry():
    assert config_from_dict("schnet", SMALL["schnet"].to_dict()) == SMALL["schnet"]
    assert isinstance(build_model(config_from_dict("cgcnn", {})), CGCNN)
    assert isinstance(build_model(SchNetConfig()), SchNet)
    assert config_from_dict("gemnet_t", {}) == GemNetTConfig()
    with pytest.raises(ValueError, match="unknown model kind"):
        config_from_dict("megnet", {})


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_trainer_round_trip(kind, tmp_path, flla_table):
    cfg = SMALL[kind]
    clean = validate(flla_table.iloc[:20]).clean
    data = structures_to_graphs(
        list(clean.id), list(clean.structure), list(clean.target),
        cutoff=cfg.cutoff, max_neighbors=cfg.max_neighbors,
    )  # fmt: skip
    ids = list(clean.id)
    split = {"train": ids[:12], "val": ids[12:16], "test": ids[16:]}
    path = tmp_path / f"{kind}.pt"
    summary = train_member(
        data=data, split=split, seed=0, model_config=cfg,
        train_config=TrainConfig(max_epochs=2, batch_size=4), work_dir=tmp_path / "w",
        member_path=path, device="cpu", progress=False,
    )  # fmt: skip
    assert summary["epochs_run"] == 2 and np.isfinite(summary["best_val_mae"])
    model, scaler, record = load_member(path)
    assert record["kind"] == kind and model.config == cfg
    with pytest.raises(ValueError, match="graph dataset"):
        train_member(
            data=data, split=split, seed=0, model_config=SchNetConfig(cutoff=cfg.cutoff + 1),
            train_config=TrainConfig(max_epochs=1), work_dir=tmp_path / "w2",
            member_path=tmp_path / "x.pt", device="cpu", progress=False,
        )  # fmt: skip


def test_alignn_wrapper_takes_one_step(flla_structures):
    """ALIGNN through the ``alignn`` package (pure torch) at its published size: graphs from
    TRACER's tensors, one optimisation step on three real crystals."""
    pytest.importorskip("alignn")
    from tracer.graphs.dataset import structure_tensors
    from tracer.models.alignn import alignn_batch, alignn_graph, make_alignn

    torch.manual_seed(0)
    pairs, cells = [], []
    for s in flla_structures[:3]:
        z, pos, cell = structure_tensors(s)
        pairs.append(alignn_graph(z, pos, cell, cutoff=8.0, three_body_cutoff=3.5,
                                  max_neighbors=12))  # fmt: skip
        cells.append(cell.float())
    model = make_alignn()
    assert sum(p.numel() for p in model.parameters()) > 4_000_000  # the full published size
    batch = alignn_batch(pairs, torch.stack(cells))
    y = torch.tensor([-1.0, 0.2, -0.5])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(batch)["out"]
    assert out.shape == (3,)
    loss = (out - y).abs().mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(model(batch)["out"], out)


def test_without_subnormals_zeroes_exactly_the_subnormal_entries():
    from tracer.models.baselines import without_subnormals

    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([0.0, 1e-39, -1e-40, tiny, -tiny, 1.0, -5e-39, -2e-38])
    expected = torch.tensor([0.0, 0.0, 0.0, tiny, -tiny, 1.0, 0.0, -2e-38])
    assert torch.equal(without_subnormals(x), expected)
    # in a float32 product of normal terms the zeroed entries change nothing
    gen = torch.Generator().manual_seed(0)
    d = torch.rand(500, generator=gen) * 7 + 1
    rbf = torch.exp(-((d[:, None] - torch.linspace(0, 8, 41)) ** 2) / 0.04)
    assert ((rbf != 0) & (rbf < tiny)).any()  # the expansion does underflow
    g = torch.randn(500, 64, generator=gen)
    assert torch.equal(g.t() @ without_subnormals(rbf), g.t() @ rbf)
