"""Training steps: padded and unpadded batches train alike; the CUDA graph replays the eager step;
the weight average follows its formula."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from tracer.graphs.dataset import graphs_from_arrays
from tracer.graphs.padding import plan_static_shapes
from tracer.models.gemnet import GemNetT, GemNetTConfig, fit_scale_factors
from tracer.training.steps import (
    CudaGraphStep,
    EagerStep,
    WeightAverage,
    compiled,
    seed_position_noise,
    weighted_loss,
)

CFG = GemNetTConfig(
    num_radial=8, num_blocks=1, emb_size_atom=16, emb_size_edge=16, emb_size_trip=8,
    emb_size_bil_trip=8, emb_size_cbf=8, emb_size_rbf=8, num_atom=1, cutoff=5.0, max_neighbors=8,
)  # fmt: skip
PLANS = [np.array([0, 3, 5]), np.array([1, 2, 4, 6]), np.array([6, 0]), np.array([2, 5])]


@pytest.fixture(scope="module")
def data():
    """Seven small jittered crystals of 1 to 8 atoms (tensors only: this module also runs on a
    GPU machine without pymatgen, ``pytest --noconftest tests/test_steps.py``)."""
    rng = np.random.default_rng(0)
    arrays = []
    for n in (1, 2, 3, 4, 5, 6, 8):
        side = 2.6 * n ** (1 / 3) + 0.5
        cell = np.diag([side, side * 1.1, side * 0.95]) + rng.normal(0, 0.1, (3, 3))
        grid = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(2)])[:n]
        frac = (grid + 0.25 + rng.normal(0, 0.03, (n, 3))) / 2.0
        z = torch.as_tensor(rng.integers(1, 40, n))
        arrays.append((z, torch.as_tensor(frac @ cell), torch.as_tensor(cell)))
    ids = [f"s{i}" for i in range(len(arrays))]
    targets = [float(-0.3 * i) for i in range(len(ids))]
    return graphs_from_arrays(ids, arrays, targets, cutoff=5.0, max_neighbors=8)


def _model(data, device="cpu", dtype=torch.float64, config=CFG):
    torch.manual_seed(0)
    model = GemNetT(config).to(device=device, dtype=dtype)
    fit_scale_factors(model, [data.to(device).collate(PLANS[0])])
    return model


def _optimizer(model, **kw):
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-5, **kw)


def test_weighted_loss_matches_plain_loss():
    pred, y = torch.tensor([1.0, 2.0, 5.0]), torch.tensor([0.0, 4.0, 0.0])
    w = torch.tensor([1.0, 1.0, 0.0])
    assert weighted_loss("l1")(pred, y, None) == pytest.approx(8 / 3)
    assert weighted_loss("l1")(pred, y, w) == pytest.approx(1.5)
    assert weighted_loss("mse")(pred, y, w) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="unknown loss"):
        weighted_loss("huber")


def test_gaussian_nll_loss_against_scipy_and_its_refusals():
    """½ (log σ² + (y − μ)² / σ²) = −log N(y; μ, σ²) − ½ log 2π, σ² = softplus(raw) + 1e-6,
    averaged over the structures of weight 1; a one-output model cannot train on it and a
    variance head cannot train on l1."""
    from scipy.stats import norm

    from tracer.models.gemnet import MIN_VARIANCE

    pred = torch.tensor([[0.5, -1.0], [2.0, 0.3], [-1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64)
    var = np.log1p(np.exp(pred[:, 1].numpy())) + MIN_VARIANCE
    nll = -norm.logpdf(y.numpy(), pred[:, 0].numpy(), np.sqrt(var)) - 0.5 * np.log(2 * np.pi)
    loss = weighted_loss("gaussian_nll")
    assert float(loss(pred, y, None)) == pytest.approx(nll.mean(), rel=1e-12)
    w = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    assert float(loss(pred, y, w)) == pytest.approx(nll[:2].mean(), rel=1e-12)
    with pytest.raises(ValueError, match="needs a model with a variance head"):
        loss(pred[:, 0], y, None)
    with pytest.raises(ValueError, match="one output per structure"):
        weighted_loss("l1")(pred, y, None)


def test_weight_average_follows_its_formula():
    model = torch.nn.Linear(2, 1)
    ema = WeightAverage(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()  # n = 0: decay min(0.9, 1/10) = 0.1
    torch.testing.assert_close(ema.model.weight, 0.1 * start + 0.9 * (start + 1.0))
    for _ in range(20):
        ema.update()
    assert float(ema.num_updates) == 21
    state = ema.state_dict()
    other = WeightAverage(model, decay=0.9)
    other.load_state_dict(state)
    torch.testing.assert_close(other.model.weight, ema.model.weight)
    assert float(other.num_updates) == 21
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


@pytest.mark.parametrize("loss", ["l1", "gaussian_nll"])
def test_padded_steps_train_like_unpadded_steps(data, loss):
    """Padding structures (weight 0) leave the loss, the gradients and the weight average
    unchanged, for the L1 loss and for the Gaussian NLL of a variance head."""
    shape = plan_static_shapes(data, PLANS, buckets=2, round_to=8)
    runs = []
    for padded in (False, True):
        model = _model(data, config=replace(CFG, variance_head=loss == "gaussian_nll"))
        ema = WeightAverage(model, 0.99)
        step = EagerStep(model, _optimizer(model), weighted_loss(loss), grad_clip=1.0, ema=ema)
        losses = []
        for plan in PLANS:
            if padded:
                batch, y, w = data.collate_padded(plan, shape)
                losses.append(float(step(batch, y, w)))
            else:
                losses.append(float(step(data.collate(plan), data.targets(plan))))
        runs.append((losses, model.state_dict(), ema.model.state_dict()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-9)
    for a, b in ((runs[0][1], runs[1][1]), (runs[0][2], runs[1][2])):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-8, atol=1e-10)


def test_compiled_steps_train_like_eager_steps(data):
    """``train.compile``: the same losses and weights as the eager step, batch shapes varying
    (one dynamic-shape compilation; recompiling per shape would fail ``recompile_limit``)."""
    import torch._dynamo

    runs = []
    for use_compile in (False, True):
        torch._dynamo.reset()
        model = _model(data)
        fwd = compiled(model) if use_compile else None
        step = EagerStep(model, _optimizer(model), weighted_loss("l1"), grad_clip=1.0, forward=fwd)
        with torch._dynamo.config.patch(recompile_limit=2):
            losses = [float(step(data.collate(p), data.targets(p))) for p in PLANS]
        runs.append((losses, model.state_dict()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-9)
    for k, v in runs[0][1].items():
        torch.testing.assert_close(v, runs[1][1][k], rtol=1e-8, atol=1e-10)


def _seen_positions(data, noise: float, plan, seed: tuple[int, ...] = (0, 0)):
    """(batch positions, positions the forward pass saw) of one eager step, the noise seeded by
    ``seed_position_noise(*seed)`` after the model is built (which seeds torch itself)."""
    model = _model(data)
    seen = []

    def forward(batch):
        seen.append(batch.pos.clone())
        return model(batch)

    step = EagerStep(model, _optimizer(model), weighted_loss("l1"), grad_clip=1.0,
                     forward=forward, position_noise=noise)  # fmt: skip
    batch = data.collate(plan)
    before = batch.pos.clone()
    seed_position_noise(*seed)
    step(batch, data.targets(plan))
    assert torch.equal(batch.pos, before)  # the batch itself is never jittered
    return before, seen[0]


def test_position_noise_displaces_atoms_by_sigma_and_is_seeded():
    rng = np.random.default_rng(1)
    arrays = []
    for _ in range(12):  # enough atoms (12 x 8) to estimate σ
        cell = np.eye(3) * 5.2 + rng.normal(0, 0.05, (3, 3))
        grid = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(2)])
        frac = (grid + 0.25 + rng.normal(0, 0.02, (8, 3))) / 2.0
        arrays.append((torch.as_tensor(rng.integers(1, 30, 8)), torch.as_tensor(frac @ cell),
                       torch.as_tensor(cell)))  # fmt: skip
    data = graphs_from_arrays([f"c{i}" for i in range(12)], arrays, [0.0] * 12, cutoff=5.0,
                              max_neighbors=8)  # fmt: skip
    plan = np.arange(12)
    before, seen = _seen_positions(data, 0.0, plan)
    assert torch.equal(seen, before)
    before, seen = _seen_positions(data, 0.05, plan, (7, 3))
    shift = (seen - before).flatten()
    assert 0.04 < float(shift.std()) < 0.06 and abs(float(shift.mean())) < 0.015
    assert torch.equal(_seen_positions(data, 0.05, plan, (7, 3))[1], seen)  # same (seed, epoch)
    assert not torch.equal(_seen_positions(data, 0.05, plan, (7, 4))[1], seen)  # next epoch
    assert not torch.equal(_seen_positions(data, 0.05, plan, (7, 3, 1))[1], seen)  # other rank
    with pytest.raises(ValueError, match="noise"):
        EagerStep(torch.nn.Linear(1, 1), None, weighted_loss("l1"), grad_clip=1.0,
                  position_noise=-0.1)  # fmt: skip


def test_cuda_graph_step_needs_a_capturable_optimiser(data):
    model = _model(data, dtype=torch.float32)
    with pytest.raises(ValueError, match="capturable"):
        CudaGraphStep(model, _optimizer(model), weighted_loss("l1"), grad_clip=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("use_compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("loss", ["l1", "gaussian_nll"])
def test_cuda_graph_replay_matches_eager_steps(data, use_compile, loss):
    dev = torch.device("cuda")
    shape = plan_static_shapes(data, PLANS, buckets=3, round_to=8)  # one graph per shape
    data_dev = data.to(dev)
    plans = PLANS * 3  # warm-up, capture, then replays
    results = []
    for graphed in (False, True):
        config = replace(CFG, variance_head=loss == "gaussian_nll")
        model = _model(data, dev, dtype=torch.float32, config=config)  # fused AdamW, as trained
        ema = WeightAverage(model, 0.99)
        lr = torch.tensor(1e-2, device=dev) if graphed else 1e-2
        opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=True, capturable=graphed)
        extra = {"forward": compiled(model), "compiled": True} if graphed and use_compile else {}
        kind = CudaGraphStep if graphed else EagerStep
        step = kind(model, opt, weighted_loss(loss), grad_clip=1.0, ema=ema, **extra)
        losses = []
        for i, plan in enumerate(plans):
            for g in opt.param_groups:  # a schedule changes the rate between replays
                if graphed:
                    g["lr"].fill_(1e-2 / (1 + i))
                else:
                    g["lr"] = 1e-2 / (1 + i)
            batch, y, w = data_dev.collate_padded(plan, shape)
            losses.append(float(step(batch, y, w)))
        results.append((losses, copy.deepcopy(model.state_dict()), ema.model.state_dict()))
    assert len(step.graphs) == len(shape) > 1
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    for a, b in ((results[0][1], results[1][1]), (results[0][2], results[1][2])):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replays_draw_fresh_seeded_position_noise(data):
    """A recorded step draws new noise at each replay, and the same noise after reseeding."""
    dev = torch.device("cuda")
    shape = plan_static_shapes(data, PLANS[:1], buckets=1, round_to=8)
    model = _model(data, dev, dtype=torch.float32)
    lr = torch.tensor(0.0, device=dev)  # weights fixed: a loss changes with the noise only
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=True, capturable=True)
    step = CudaGraphStep(model, opt, weighted_loss("l1"), grad_clip=1.0, position_noise=0.05)
    batch, y, w = data.to(dev).collate_padded(PLANS[0], shape)
    for _ in range(5):  # warm-up steps, then the capture
        step(batch, y, w)
    assert len(step.graphs) == 1
    runs = []
    for _ in range(2):
        seed_position_noise(0, 1)
        runs.append([float(step(batch, y, w)) for _ in range(4)])
    # the same noise again (the scatter-adds' atomic sums differ in the last bits only)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)
    gaps = np.abs(np.diff(runs[0])) / np.abs(runs[0][1:])
    assert gaps.min() > 1e-4  # and new noise at every replay
