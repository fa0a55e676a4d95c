"""Run tests/test_models_gemnet_references.py with one defect planted in GemNet-T's angle path
(patched before collection, no file edited); exit status 0 means the tests did NOT catch it.

Usage: python tests/planted/run_with_defect.py DEFECT  (see DEFECTS)."""

import sys

import pytest
import torch

import tracer.models.gemnet as g

DEFECTS = ("cos_sign", "angles_zero", "reverse_ignored", "l2_sign", "bessel_freq", "envelope")


def plant(which: str) -> None:
    """Patch the defect ``which`` into :mod:`tracer.models.gemnet`."""
    if which == "cos_sign":  # the cosine's sign flipped where the model uses it
        real = g.triplet_cosines
        g.triplet_cosines = lambda v, t, eps=1e-12: -real(v, t, eps)
    elif which == "angles_zero":  # every angle 90 degrees
        real = g.triplet_cosines
        g.triplet_cosines = lambda v, t, eps=1e-12: real(v, t, eps) * 0
    elif which == "reverse_ignored":  # the reverse-edge index ignored in the triplet interaction
        real_fwd = g.TripletInteraction.forward

        def fwd(self, m, rbf3, cbf3, trip, k_max, reverse):
            return real_fwd(self, m, rbf3, cbf3, trip, k_max, torch.arange(m.shape[0]))

        g.TripletInteraction.forward = fwd
    elif which == "l2_sign":  # the sign of the l = 2 angular term flipped
        real_sh = g.spherical_harmonics_m0

        def sh(c, n):
            out = real_sh(c, n).clone()
            out[:, 2] = -out[:, 2]
            return out

        g.spherical_harmonics_m0 = sh
    elif which == "bessel_freq":  # spherical Bessel frequencies shifted by half a period
        real_rb = g.RadialBasis.forward

        def rb(self, d):
            if self.kind != "spherical_bessel":
                return real_rb(self, d)
            ds = d * self.inv_cutoff
            wave = torch.sin((self.freq + 0.5) * ds[:, None]) / ds[:, None]
            return self.envelope(ds)[:, None] * self.norm * wave

        g.RadialBasis.forward = rb
    elif which == "envelope":  # the envelope off by 1% at the cutoff
        real_env = g.PolynomialEnvelope.forward
        g.PolynomialEnvelope.forward = lambda self, d: real_env(self, d) * (1 + 0.01 * d)
    else:
        raise SystemExit(f"unknown defect {which!r}; known: {', '.join(DEFECTS)}")


if __name__ == "__main__":
    plant(sys.argv[1])
    sys.exit(pytest.main(["-q", "-x", "-p", "no:cacheprovider",
                          "tests/test_models_gemnet_references.py"]))  # fmt: skip
