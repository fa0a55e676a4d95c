"""Figures in one style (seaborn paper context, colour-blind-safe palette), saved as PNG + PDF.

Every figure function takes data and returns a :class:`matplotlib.figure.Figure`; notebooks call
:func:`save_figure` to write ``paper_figures/<stem>.png`` and ``.pdf``. Files are written without
timestamps so that reruns on the same data give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

PALETTE = "colorblind"
SET_ORDER = ("train", "val", "test")


def set_style() -> None:
    """Apply the artifact's figure style."""
    sns.set_theme(context="paper", style="ticks", palette=PALETTE, font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "tracer",
            "pdf.fonttype": 42,
        }
    )


def save_figure(fig: Figure, stem: str, out_dir: str | Path = "paper_figures") -> list[Path]:
    """Write ``<out_dir>/<stem>.png`` and ``.pdf`` (no creation dates) and close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return paths


def save_table(
    table: pd.DataFrame, stem: str, out_dir: str | Path = "paper_figures", floatfmt: str = ".4f"
) -> list[Path]:
    """Write a table as ``<stem>.csv`` and ``<stem>.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    table.to_csv(csv_path, index=False)
    md_path.write_text(table.to_markdown(index=False, floatfmt=floatfmt) + "\n")
    return [csv_path, md_path]


def target_distribution(
    targets: Mapping[str, np.ndarray], *, unit: str = "eV/atom", title: str | None = None
) -> Figure:
    """Histogram (density) of the target per split set, with the set sizes in the legend."""
    set_style()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    values = np.concatenate([np.asarray(v, dtype=float) for v in targets.values()])
    bins = np.histogram_bin_edges(values, bins=50)
    for name in [s for s in SET_ORDER if s in targets] + [s for s in targets if s not in SET_ORDER]:
        y = np.asarray(targets[name], dtype=float)
        ax.hist(
            y,
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.6,
            label=f"{name} (n={y.size:,})",
        )
    ax.set_xlabel(f"formation energy ({unit})")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return fig
