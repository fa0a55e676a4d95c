"""TRACER: reliability-first GemNet-T screening of crystal formation energies.

Reproducibility artifact of Datta, Sharif & Banad, "TRACER: a reliability-first GemNet
baseline for trustworthy computational materials discovery", Sci. Rep. 16, 14962 (2026),
doi:10.1038/s41598-026-45279-6.

Energies are eV/atom unless a name or docstring says otherwise; lengths are Å.
"""

import os
from pathlib import Path

# Reproducible CPU arithmetic: MKL/OpenMP must not change their thread counts with the machine's
# load (that changes summation order, and a resumed run would then differ in the last bits).
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")

__version__ = "0.1.0"

#: the shipped ensemble (``tracer release``): here, not in tracer.inference, so that the command
#: line names it without importing torch
PRETRAINED_DIR = Path(__file__).parent / "pretrained" / "flla_gemnet_t"

__all__ = ["PRETRAINED_DIR", "__version__"]
