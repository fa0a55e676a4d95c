"""GemNet-T's angle path against references that do not share its code: scipy's closed forms
for the bases, angles computed by hand at the model's own call site, an explicit loop over
triplets with the reverse edge found by search, and pairs of structures with equal distances and
different angles (GemNet-T must tell them apart, SchNet cannot).

Invariance tests (tests/test_models_gemnet.py) cannot see these defects: a flipped cosine, zeroed
angles, an ignored reverse-edge index or a sign error in a spherical harmonic leave the model
rotation-, translation-, permutation- and supercell-invariant."""

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy import special

import tracer.models.gemnet as gemnet
from tracer.graphs.dataset import structures_to_graphs
from tracer.models.gemnet import GemNetT, GemNetTConfig, RadialBasis, spherical_harmonics_m0
from tracer.models.registry import build_model, config_from_dict


def test_spherical_basis_is_scipy_legendre_times_its_norm():
    x = torch.linspace(-1, 1, 41, dtype=torch.float64)
    got = spherical_harmonics_m0(x, 7).numpy()
    for ell in range(7):
        ref = math.sqrt((2 * ell + 1) / (4 * math.pi)) * special.eval_legendre(ell, x.numpy())
        np.testing.assert_allclose(got[:, ell], ref, atol=1e-12, err_msg=f"l = {ell}")
    # and scipy's own real Y_l^0 at those polar angles (phi irrelevant for m = 0)
    theta = np.arccos(x.numpy())
    for ell in range(7):
        y = special.sph_harm_y(ell, 0, theta, 0.0).real
        np.testing.assert_allclose(got[:, ell], y, atol=1e-12)


def test_spherical_bessel_radial_basis_is_scipy_j0():
    """Within 1e-5 relative: the frequencies n·π are stored as float32 (a buffer made before any
    ``.double()``), which moves the basis by about 1e-6 relative."""
    cutoff = 6.0
    basis = RadialBasis(8, cutoff, "spherical_bessel", envelope_exponent=5).double()
    d = torch.linspace(0.3, 5.9, 25, dtype=torch.float64)
    got = basis(d).numpy()
    assert got.shape == (25, 8)
    env = basis.envelope(d / cutoff).numpy()
    for n in range(1, 9):
        x = n * math.pi * d.numpy() / cutoff
        ref = math.sqrt(2 / cutoff**3) * n * math.pi * special.spherical_jn(0, x) * env
        np.testing.assert_allclose(got[:, n - 1], ref, rtol=1e-5, atol=1e-7)


def test_gaussian_radial_basis_and_envelope_by_hand():
    basis = RadialBasis(5, 4.0, "gaussian", envelope_exponent=5).double()
    d = torch.tensor([0.0, 1.0, 2.5, 3.999, 4.0, 5.0], dtype=torch.float64)
    ds = d.numpy() / 4.0
    p = 5  # DimeNet's envelope: u(0) = 1, u(1) = u'(1) = u''(1) = 0
    a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
    env = 1 + a * ds**p + b * ds ** (p + 1) + c * ds ** (p + 2)
    env[ds >= 1] = 0.0
    width = 0.25  # offsets 0, 0.25, ..., 1 on r / cutoff
    ref = env[:, None] * np.exp(-0.5 * (ds[:, None] - np.linspace(0, 1, 5)) ** 2 / width**2)
    np.testing.assert_allclose(basis(d).numpy(), ref, atol=1e-12)
    # the envelope's defining properties, independent of its coefficients
    assert a + b + c == -1 and p * a + (p + 1) * b + (p + 2) * c == 0  # u(1) = u'(1) = 0
    u = basis.envelope
    assert float(u(torch.zeros(1, dtype=torch.float64))) == 1.0
    assert abs(float(u(torch.tensor([1 - 1e-4], dtype=torch.float64)))) < 1e-10


def _triatomic(angle_deg: float, bond: float = 1.0, box: float = 20.0) -> Structure:
    a = math.radians(angle_deg)
    centre = np.array([box / 2] * 3)
    pos = [centre, centre + bond * np.array([1, 0, 0]),
           centre + bond * np.array([math.cos(a), math.sin(a), 0])]  # fmt: skip
    return Structure(Lattice.cubic(box), ["O", "H", "H"], pos, coords_are_cartesian=True)


def _model(cutoff: float, seed: int = 0) -> GemNetT:
    torch.manual_seed(seed)
    cfg = GemNetTConfig(num_radial=8, num_blocks=2, emb_size_atom=16, emb_size_edge=16,
                        emb_size_trip=8, emb_size_bil_trip=8, emb_size_cbf=8, emb_size_rbf=8,
                        cutoff=cutoff, max_neighbors=12, atom_features="learned")  # fmt: skip
    m = GemNetT(cfg).double().eval()
    for i, f in enumerate(x for x in m.modules() if isinstance(x, gemnet.ScaleFactor)):
        f.scale.fill_(0.7 + 0.1 * i)
    return m


def test_angles_at_the_models_call_site_are_the_hand_angles(monkeypatch):
    """Every triplet's cosine as the model passes it to the spherical basis equals the cosine of
    the angle at the shared atom, computed here from the positions alone."""
    s = _triatomic(104.5)
    data = structures_to_graphs(["w"], [s], None, cutoff=3.0, max_neighbors=12)
    batch = data.collate([0])
    seen = []
    real = gemnet.spherical_harmonics_m0
    monkeypatch.setattr(gemnet, "spherical_harmonics_m0",
                        lambda c, n: seen.append(c.detach().clone()) or real(c, n))  # fmt: skip
    with torch.no_grad():
        _model(3.0)(batch)
    [cos] = seen
    pos = s.cart_coords
    src, tgt = batch.source.numpy(), batch.target.numpy()
    trip = batch.triplets
    assert trip.num_triplets == 6  # two at each of the three atoms
    for k in range(trip.num_triplets):
        e_in, e_out = int(trip.edge_in[k]), int(trip.edge_out[k])
        t = tgt[e_out]
        assert tgt[e_in] == t
        u, v = pos[src[e_in]] - pos[t], pos[src[e_out]] - pos[t]
        hand = float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
        assert float(cos[k]) == pytest.approx(hand, abs=1e-12)
    # the angle at O is 104.5 degrees, at each H the other two angles of the triangle
    angles = sorted(round(math.degrees(math.acos(float(c))), 6) for c in cos)
    assert angles[-1] == angles[-2] == pytest.approx(104.5)
    assert sum(angles) == pytest.approx(2 * 180.0)


def test_equal_distances_different_angles_gemnet_tells_apart_schnet_cannot():
    """With a 1.2 Å cutoff a bent triatomic's graph holds the two 1.0 Å bonds only: the same
    distances at 90 and 150 degrees. A distance-only model sees the same input; GemNet-T's
    triplets carry the angle."""
    shapes = [_triatomic(90.0), _triatomic(150.0)]
    g = structures_to_graphs(["a", "b"], shapes, None, cutoff=1.2, max_neighbors=12)
    assert g.num_edges().tolist() == [4, 4]
    model = _model(1.2)
    inner = []
    hook = model.int_blocks[0].triplet.register_forward_hook(
        lambda _m, _i, out: inner.append(out.detach()))  # fmt: skip
    with torch.no_grad():
        e = model(g.collate([0, 1])).numpy()
    hook.remove()
    [x] = inner  # the triplet interaction's edge messages: edges 0-3 of a, 4-7 of b
    rel = float((x[:4] - x[4:]).norm() / x[:4].norm())
    assert rel > 1e-2  # the angle moves the messages themselves by more than a percent
    with torch.no_grad():
        schnet = build_model(config_from_dict("schnet", {"hidden_channels": 16, "num_filters": 16,
                                                          "num_interactions": 2, "num_gaussians": 8,
                                                          "cutoff": 1.2}))  # fmt: skip
        s = schnet.double().eval()(g.collate([0, 1])).numpy()
    assert abs(e[0] - e[1]) > 1e-9  # float64: a million times the rounding noise
    assert abs(s[0] - s[1]) < 1e-13


def _reverse_by_search(src, tgt, off) -> np.ndarray:
    """Each edge's reverse found by looking for (t, s, -offset) in the edge list."""
    rev = np.full(len(src), -1)
    for e in range(len(src)):
        for f in range(len(src)):
            if src[f] == tgt[e] and tgt[f] == src[e] and (off[f] == -off[e]).all():
                rev[e] = f
                break
    assert (rev >= 0).all()
    return rev


def _geometry(model, g):
    """A one-structure batch's distances (Å), triplets, spherical and radial bases."""
    vec = g.edge_vectors(torch.float64)
    dist = torch.linalg.norm(vec, dim=-1)
    sph = spherical_harmonics_m0(gemnet.triplet_cosines(vec, g.triplets), 7)
    return dist, g.triplets, sph, model.radial(dist)


def test_triplet_interaction_equals_an_explicit_loop(flla_structures):
    """The efficient bilinear form, the scale factors and the reverse-edge swap against a loop
    over triplets written from the GemNet paper's equation, with each edge's reverse found by
    search rather than read from the graph."""
    model = _model(5.0, seed=3)
    block = model.int_blocks[0]
    data = structures_to_graphs(["x"], [flla_structures[2]], None, cutoff=5.0, max_neighbors=6)
    g = data.collate([0])
    src, tgt, off = g.source.numpy(), g.target.numpy(), g.offset.numpy()
    np.testing.assert_array_equal(g.reverse.numpy(), _reverse_by_search(src, tgt, off))
    with torch.no_grad():
        dist, trip, sph, rbf = _geometry(model, g)
        m = torch.randn(dist.numel(), 16, dtype=torch.float64)
        rbf3 = model.mlp_rbf3(rbf)
        cbf3 = model.mlp_cbf3(rbf, sph, trip, g.k_max)
        got = block.triplet(m, rbf3, cbf3, trip, g.k_max, g.reverse).numpy()

        t = block.triplet
        x_ba = _act(_lin(t.dense_ba, m))
        x_ba = x_ba * _lin(t.mlp_rbf, rbf3) * float(t.scale_rbf.scale)
        x_ba = _act(_lin(t.down, x_ba)).numpy()  # [E, trip]
        w_cbf = model.mlp_cbf3.weight.numpy()  # [S, R, C]
        w_bil = t.bilinear.weight.numpy()  # [trip, C, out]
        rbf_np, sph_np = rbf.numpy(), sph.numpy()
        n_e = dist.numel()
        x = np.zeros((n_e, w_bil.shape[2]))
        for k in range(trip.num_triplets):
            e_out, e_in = int(trip.edge_out[k]), int(trip.edge_in[k])
            # basis of the triplet: sum_s sph[k, s] * (rbf[e_out] @ W[s]) -> [C]
            basis = np.einsum("s,r,src->c", sph_np[k], rbf_np[e_out], w_cbf)
            x[e_out] += np.einsum("c,t,tco->o", basis, x_ba[e_in], w_bil)
        x = torch.from_numpy(x) * t.scale_cbf_sum.scale
        rev = _reverse_by_search(src, tgt, off)
        up_ac = _act(_lin(t.up_ac, x))
        ref = ((_act(_lin(t.up_ca, x)) + up_ac[torch.from_numpy(rev)]) / math.sqrt(2)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10)


def _act(x):
    """GemNet's scaled SiLU, written out: silu(x) / 0.6."""
    return x * torch.sigmoid(x) / 0.6


def _lin(dense, x):
    """A bias-free dense layer's matrix product, without its activation."""
    assert dense.linear.bias is None
    return x @ dense.linear.weight.T


def test_interaction_block_combines_its_parts_as_published(flla_structures):
    """The block's sums and 1/√2 scalings (GemNet-T: edge update from the triplet interaction,
    residual layers, skip connection, atom update, edge embedding from the new atoms), written
    out around its parts."""
    model = _model(5.0, seed=4)
    block = model.int_blocks[1]
    data = structures_to_graphs(["x"], [flla_structures[3]], None, cutoff=5.0, max_neighbors=6)
    g = data.collate([0])
    with torch.no_grad():
        dist, trip, sph, rbf = _geometry(model, g)
        h = torch.randn(g.num_atoms, 16, dtype=torch.float64)
        m = torch.randn(dist.numel(), 16, dtype=torch.float64)
        rbf3, rbf_h = model.mlp_rbf3(rbf), model.mlp_rbf_h(rbf)
        cbf3 = model.mlp_cbf3(rbf, sph, trip, g.k_max)
        got_h, got_m = block(h, m, rbf3, cbf3, trip, g.k_max, rbf_h, g)

        s = 2**-0.5
        x = (_act(_lin(block.dense_ca, m)) + block.triplet(m, rbf3, cbf3, trip, g.k_max,
                                                           g.reverse)) * s  # fmt: skip
        x = block.before_skip(x)
        m1 = block.after_skip((m + x) * s)
        h1 = (h + block.atom_update(m1, rbf_h, g.target, g.num_atoms)) * s
        m2 = block.residual_m(block.concat(h1, m1, g.source, g.target))
    np.testing.assert_allclose(got_h.numpy(), h1.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_m.numpy(), ((m1 + m2) * s).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("defect", ["cos_sign", "angles_zero", "reverse_ignored", "l2_sign",
                                    "bessel_freq", "envelope"])  # fmt: skip
def test_each_planted_defect_is_caught(defect):
    """The tests above fail with each defect patched into the model (tests/planted)."""
    import subprocess
    import sys

    from conftest import REPO

    out = subprocess.run([sys.executable, "tests/planted/run_with_defect.py", defect], cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 1, f"{defect} not caught:\n{out.stdout[-1500:]}"
