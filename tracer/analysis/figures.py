"""Figures in one style (seaborn paper context, colour-blind-safe palette), saved as PNG + PDF.

Every figure function takes data and returns a :class:`matplotlib.figure.Figure`; notebooks call
:func:`save_figure` to write ``paper_figures/<stem>.png`` and ``.pdf``. Files are written without
timestamps so that reruns on the same data give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from io import BytesIO

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


def as_image(fig: Figure) -> Any:
    """The figure as an ``IPython.display.Image`` (PNG) for a notebook cell, then closed: this
    module draws with the Agg backend, which does not show figures inline."""

    from IPython.display import Image

    buffer = BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return Image(data=buffer.getvalue(), format="png")


def save_table(
    table: pd.DataFrame, stem: str, out_dir: str | Path = "paper_figures", floatfmt: str = ".4f"
) -> list[Path]:
    """Write a table as ``<stem>.csv`` and ``<stem>.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    table.to_csv(csv_path, index=False)
    md = table.astype(object).where(table.notna(), None)  # missing cells print as "—"
    md_path.write_text(md.to_markdown(index=False, floatfmt=floatfmt, missingval="—") + "\n")
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


def training_history(history: pd.DataFrame, *, title: str | None = None) -> Figure:
    """One run's training loss (standardised targets) and validation MAE (eV/atom) per epoch,
    log scale (a frame with ``epoch``, ``train_loss`` and ``val_mae``)."""
    set_style()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.plot(history["epoch"], history["train_loss"], label="training loss (standardised)")
    ax.plot(history["epoch"], history["val_mae"], label="validation MAE (eV/atom)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.legend(frameon=False, fontsize="small")
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


def uncertainty_panels(curves: Mapping[str, Mapping[str, list[float]]], *,
                       unit: str = "eV/atom", title: str | None = None) -> Figure:  # fmt: skip
    """Three panels from :func:`tracer.analysis.uncertainty.uncertainty_report`'s ``curves``: RMSE
    per
    equal-count σ bin against the bin's mean σ (a calibrated σ lies on the diagonal), the
    sparsification curve with its oracle, and the calibration (reliability) curve of the
    central intervals before and after recalibration."""
    set_style()
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6))
    b = curves["binned"]
    ax = axes[0]
    top = max(max(b["rmse"]), max(b["mean_sigma"])) * 1.05
    ax.plot([0, top], [0, top], color="0.6", linewidth=1)
    ax.plot(b["mean_sigma"], b["rmse"], "o-", label="RMSE per σ bin")
    ax.plot(b["mean_sigma"], b["mae"], "s--", label="MAE per σ bin")
    ax.set_xlabel(f"mean ensemble σ in bin ({unit})")
    ax.set_ylabel(f"error ({unit})")
    ax.legend(frameon=False, fontsize="small")
    s = curves["sparsification"]
    ax = axes[1]
    ax.plot(s["fractions"], s["model"], label="remove largest σ first")
    ax.plot(s["fractions"], s["oracle"], label="oracle (largest error first)")
    ax.axhline(s["model"][0], color="0.6", linewidth=1, label="random (expected)")
    ax.set_xlabel("fraction removed")
    ax.set_ylabel(f"MAE of the rest ({unit})")
    ax.legend(frameon=False, fontsize="small")
    c = curves["calibration"]
    ax = axes[2]
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=1)
    ax.plot(c["expected"], c["observed"], "o-", markersize=3, label="ensemble σ")
    ax.plot(c["expected"], c["observed_recal"], "s-", markersize=3, label="σ recalibrated")
    ax.set_xlabel("expected proportion in interval")
    ax.set_ylabel("observed proportion")
    ax.legend(frameon=False, fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def failure_groups(report: Mapping[str, Mapping[str, Mapping[str, float | int | None]]], *,
                   unit: str = "eV/atom") -> Figure:  # fmt: skip
    """Test MAE beside mean ensemble σ for every group of :func:`tracer.analysis.failures.
    failure_report` (one panel per grouping; group sizes under the bars)."""
    set_style()
    groupings = ("by_natoms", "by_nelements", "by_energy", "by_chemistry")
    titles = ("atoms in the cell", "elements", f"formation energy ({unit})", "chemistry class")
    fig, axes = plt.subplots(1, 4, figsize=(15.0, 3.8), gridspec_kw={"width_ratios": [6, 5, 5, 5]})
    for ax, key, title in zip(axes, groupings, titles, strict=True):
        groups = {k: v for k, v in report[key].items() if v["n"]}
        x = np.arange(len(groups))
        ax.bar(x - 0.2, [g["mae"] for g in groups.values()], 0.4, label="MAE")
        ax.bar(x + 0.2, [g["mean_sigma"] for g in groups.values()], 0.4, label="mean σ")
        ax.set_xticks(x, [f"{k}\n(n={g['n']})" for k, g in groups.items()], fontsize="x-small",
                      rotation=30 if key == "by_chemistry" else 0, ha="right" if key ==
                      "by_chemistry" else "center")  # fmt: skip
        ax.set_title(title)
    axes[0].set_ylabel(unit)
    axes[0].legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def triage_curves(curves: Mapping[float, Mapping[str, np.ndarray]], *, n_test: int,
                  unit: str = "eV/atom") -> Figure:  # fmt: skip
    """Yield and recall against the fraction of the test set checked, per |error| threshold
    (:func:`tracer.analysis.triage.yield_curves`): σ-ranked (solid), oracle (dotted), random
    (dashed)."""
    set_style()
    fig, (ax_y, ax_r) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    colours = sns.color_palette(PALETTE, len(curves))
    for colour, (t, c) in zip(colours, curves.items(), strict=True):
        frac = np.asarray(c["budget"]) / n_test
        ax_y.plot(frac, c["uncertainty_yield"], color=colour, label=f"|error| > {t:g} {unit}")
        ax_y.plot(frac, c["oracle_yield"], color=colour, linestyle=":")
        ax_y.plot(frac, c["random_yield"], color=colour, linestyle="--")
        ax_r.plot(frac, c["uncertainty_recall"], color=colour)
        ax_r.plot(frac, c["oracle_recall"], color=colour, linestyle=":")
        ax_r.plot(frac, c["random_recall"], color=colour, linestyle="--")
    ax_y.set_xlabel("fraction of test set sent to DFT")
    ax_y.set_ylabel("yield (bad predictions per check)")
    ax_y.set_xscale("log")
    ax_y.legend(frameon=False, fontsize="small", loc="lower left", title="σ-ranked (solid), "
                "oracle (dotted), random (dashed)", title_fontsize="x-small")  # fmt: skip
    ax_r.set_xlabel("fraction of test set sent to DFT")
    ax_r.set_ylabel("recall (bad predictions caught)")
    fig.tight_layout()
    return fig


def transfer_learning_curve(
    curve: Sequence[Mapping[str, float]], *, title: str | None = None
) -> Figure:
    """Test MAE against the number of training structures of the new dataset, from pre-trained
    weights and from scratch (:func:`tracer.analysis.studies.transfer_report`'s
    ``learning_curve``), in
    eV/atom (left axis) and eV per cell (right axis); log–log."""
    set_style()
    frame = pd.DataFrame(list(curve))
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    for ax, unit, key in zip(
        axes, ("eV/atom", "eV/cell"), ("ev_per_atom", "ev_per_cell"), strict=True
    ):
        ax.plot(
            frame["n_train"],
            frame[f"pretrained_mae_{key}"],
            "o-",
            label="fine-tuned from FLLA members",
        )
        ax.plot(frame["n_train"], frame[f"scratch_mae_{key}"], "s--", label="from scratch")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.set_ylabel(f"test MAE ({unit})")
    axes[0].legend(frameon=False, fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def domain_variants(report: Mapping[str, Any]) -> Figure:
    """Negative result 2: test MAE of each domain variant (mean over seeds with the 95%
    interval across seeds, seeds as dots) and its s/epoch; with the multi-domain check, the
    MAE of each domain's test structures per variant."""
    set_style()
    multi = report.get("multi_domain", {})
    panels = 3 if multi.get("status") == "RUN" else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    variants = report["variants"]
    x = np.arange(len(variants))
    ax = axes[0]
    for k, v in enumerate(variants.values()):
        ci = v["mae_across_seeds"]["ci95"]
        if ci is not None:
            ax.plot([k, k], ci, color="0.3", linewidth=2)
        ax.scatter([k] * len(v["mae_seeds"]), list(v["mae_seeds"].values()), s=14, alpha=0.7)
        ax.plot([k - 0.2, k + 0.2], [v["mae"]] * 2, color="k")
    ax.set_xticks(x, list(variants), rotation=15)
    ax.set_ylabel("test MAE (eV/atom)")
    ax.set_title("one database (seeds, 95% CI)")
    ax = axes[1]
    ax.bar(x, [v["s_per_epoch"] for v in variants.values()])
    ax.set_xticks(
        x, [f"{k}\n{v['params']:,} params" for k, v in variants.items()], fontsize="x-small"
    )
    ax.set_ylabel("s/epoch (median)")
    ax.set_title(f"cost ({next(iter(variants.values()))['device']})", fontsize="small")
    if panels == 3:
        ax = axes[2]
        mv = multi["variants"]
        domains = multi["domains"]
        width = 0.8 / len(domains)
        for j, (d, name) in enumerate(domains.items()):
            maes = [v["mae_by_domain"][d] for v in mv.values()]
            ax.bar(np.arange(len(mv)) + j * width, maes, width, label=name)
        ax.set_xticks(np.arange(len(mv)) + width * (len(domains) - 1) / 2, list(mv))
        ax.set_ylabel("test MAE (eV/atom)")
        ax.set_title("two databases, source = domain")
        ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig
