"""The grids the applicability domain's thresholds are searched over on validation, and the
search designs (:func:`tracer.inference.applicability.choose_thresholds`; docs/screening.md)."""

from __future__ import annotations

from typing import Any

#: tail quantiles tried for the geometric ranges, most sensitive first (chosen on validation)
RANGE_QUANTILES = (0.005, 0.0025, 0.001, 0.0)
#: tail quantiles tried for the strain check (``bond_dev_median``), most sensitive first
STRAIN_QUANTILES = (0.02, 0.01, 0.005, 0.0025, 0.001, 0.0)
#: the strain check's upper tails tried by the ``split-tails`` design (:data:`DESIGNS`), finer
#: than :data:`STRAIN_QUANTILES` where the trade between detection and flags is steep
STRAIN_UPPER_QUANTILES = (0.03, 0.025, 0.02, 0.0175, 0.015, 0.0125, 0.01, 0.0075, 0.005, 0.0025,
                          0.001, 0.0)
#: quantiles of the validation kNN distances tried as the representation threshold
REPRESENTATION_QUANTILES = (0.98, 0.99, 0.995)
#: the most of the validation structures a chosen setting may flag (fraction)
MAX_VAL_FLAGGED = 0.04
#: how the thresholds are searched (keyword arguments of :func:`choose_thresholds`).
#: ``tied``: one tail for both sides of every range, the strain check's from
#: :data:`STRAIN_QUANTILES`. ``split-tails``: the strain check's upper tail (stretched cells) from
#: :data:`STRAIN_UPPER_QUANTILES` and its lower tail (squeezed cells) from
#: :data:`STRAIN_QUANTILES`, chosen separately; the widest empty slab bounded above only (a
#: narrow slab is no sign of a surface or a molecule). Chosen on validation (docs/screening.md).
DESIGNS: dict[str, dict[str, Any]] = {
    "tied": {},
    "split-tails": {"strain_quantiles": STRAIN_UPPER_QUANTILES,
                    "strain_low_quantiles": STRAIN_QUANTILES,
                    "upper_only": ("largest_gap",)},
}  # fmt: skip
