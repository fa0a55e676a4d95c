import numpy as np
import pandas as pd

from tracer.analysis.figures import save_figure, save_table, target_distribution


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
    from tracer.analysis.figures import parity

    y = np.array([0.0, 1.0, 2.0])
    fig = parity(y, y + np.array([0.1, -0.1, 0.4]), sigma=np.array([0.1, 0.2, 0.3]))
    text = fig.axes[0].texts[0].get_text()
    assert "MAE 0.200" in text and "n = 3" in text
    assert len(fig.axes) == 2  # colour bar for σ
    save_figure(fig, "parity", tmp_path)
    assert (tmp_path / "parity.png").exists()


def test_learning_curves_draws_one_line_per_run():
    from tracer.analysis.figures import learning_curves

    runs = {
        "gemnet_t seed 0": pd.DataFrame({"wall_time_s": [1.0, 2.0], "val_mae": [0.5, 0.2]}),
        "schnet": pd.DataFrame({"wall_time_s": [0.5, 1.0], "val_mae": [0.6, 0.4]}),
    }
    fig = learning_curves(runs)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == list(runs)
    assert list(ax.get_lines()[1].get_ydata()) == [0.6, 0.4]
    assert ax.get_xscale() == "log" and "wall time" in ax.get_xlabel()


def test_every_figure_function_draws_in_the_artifact_style():
    import inspect

    from matplotlib.figure import Figure

    import tracer.analysis.figures as figures

    drawers = [
        fn
        for name, fn in inspect.getmembers(figures, inspect.isfunction)
        if fn.__module__ == figures.__name__
        and inspect.signature(fn).return_annotation in (Figure, "Figure")
    ]
    assert len(drawers) >= 8
    unstyled = [fn.__name__ for fn in drawers if "set_style()" not in inspect.getsource(fn)]
    assert not unstyled, f"figure functions without set_style(): {unstyled}"


def test_training_history_is_shown_inline_as_png():
    from tracer.analysis.figures import as_image, training_history

    h = pd.DataFrame(
        {"epoch": [0, 1, 2], "train_loss": [1.0, 0.5, 0.2], "val_mae": [0.9, 0.6, 0.5]}
    )
    fig = training_history(h, title="member 0")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 2
    assert ax.get_title() == "member 0"
    # the colour-blind palette of the style, not matplotlib's default cycle
    import seaborn as sns
    from matplotlib.colors import to_hex

    assert to_hex(ax.lines[0].get_color()) == sns.color_palette("colorblind").as_hex()[0]
    image = as_image(fig)
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n"
