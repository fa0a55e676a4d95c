"""TRACER: reliability-first GemNet-T screening of crystal formation energies.

Reproducibility artifact of Datta, Sharif & Banad, "TRACER: a reliability-first GemNet
baseline for trustworthy computational materials discovery", Sci. Rep. 16, 14962 (2026),
doi:10.1038/s41598-026-45279-6.

Energies are eV/atom unless a name or docstring says otherwise; lengths are Å.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
