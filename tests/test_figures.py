import numpy as np
import pandas as pd

from tracer.figures import save_figure, save_table, target_distribution


def test_target_distribution_writes_png_and_pdf_reproducibly(tmp_path):
    rng = np.random.default_rng(0)
    data = {"train": rng.normal(size=200), "val": rng.normal(size=30), "test": rng.normal(size=30)}
    fig = target_distribution(data)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["train (n=200)", "val (n=30)", "test (n=30)"]
    png, pdf = save_figure(fig, "dist", tmp_path)
    first = (png.read_bytes(), pdf.read_bytes())
    save_figure(target_distribution(data), "dist", tmp_path)
    assert (png.read_bytes(), pdf.read_bytes()) == first


def test_save_table(tmp_path):
    csv, md = save_table(pd.DataFrame({"model": ["dummy"], "MAE": [0.87]}), "t", tmp_path)
    assert "| dummy" in md.read_text() and csv.read_text().startswith("model,MAE")


def test_parity_reports_mae(tmp_path):
    from tracer.figures import parity

    y = np.array([0.0, 1.0, 2.0])
    fig = parity(y, y + np.array([0.1, -0.1, 0.4]), sigma=np.array([0.1, 0.2, 0.3]))
    text = fig.axes[0].texts[0].get_text()
    assert "MAE 0.200" in text and "n = 3" in text
    assert len(fig.axes) == 2  # colour bar for σ
    save_figure(fig, "parity", tmp_path)
    assert (tmp_path / "parity.png").exists()


def test_learning_curves_draws_one_line_per_run():
    from tracer.figures import learning_curves

    runs = {
        "gemnet_t seed 0": pd.DataFrame({"wall_time_s": [1.0, 2.0], "val_mae": [0.5, 0.2]}),
        "schnet": pd.DataFrame({"wall_time_s": [0.5, 1.0], "val_mae": [0.6, 0.4]}),
    }
    fig = learning_curves(runs)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == list(runs)
    assert list(ax.get_lines()[1].get_ydata()) == [0.6, 0.4]
    assert ax.get_xscale() == "log" and "wall time" in ax.get_xlabel()
