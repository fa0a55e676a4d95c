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


def parity(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    sigma: np.ndarray | None = None,
    unit: str = "eV/atom",
    title: str | None = None,
) -> Figure:
    """Predicted vs DFT target, coloured by the ensemble σ when given, with MAE in the corner."""
    set_style()
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    lo = float(min(y_true.min(), y_pred.min()))
    hi = float(max(y_true.max(), y_pred.max()))
    pad = 0.05 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", linewidth=1, zorder=0)
    if sigma is None:
        ax.scatter(y_true, y_pred, s=8, alpha=0.7)
    else:
        points = ax.scatter(
            y_true, y_pred, s=8, c=np.asarray(sigma, dtype=float), cmap="viridis", alpha=0.8
        )
        fig.colorbar(points, ax=ax, label=f"ensemble σ ({unit})")
    mae = float(np.mean(np.abs(y_pred - y_true)))
    ax.text(
        0.04, 0.95, f"MAE {mae:.3f} {unit}\nn = {y_true.size}", transform=ax.transAxes, va="top"
    )
    ax.set_xlabel(f"DFT formation energy ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    if title:
        ax.set_title(title)
    return fig


def learning_curves(
    histories: Mapping[str, pd.DataFrame], *, unit: str = "eV/atom", title: str | None = None
) -> Figure:
    """Validation MAE against training wall time (s), one line per run (``epoch``-ordered
    frames with ``wall_time_s`` and ``val_mae``); log–log axes."""
    set_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, h in histories.items():
        ax.plot(h["wall_time_s"], h["val_mae"], label=name, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel(f"validation MAE ({unit})")
    ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    return fig
