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
