"""Unit handling and the zero-shot summary of the perovskite transfer, by hand."""

import numpy as np
import pytest

from tracer.analysis.transfer import zero_shot_summary
from tracer.data.units import to_ev_per_atom, unit_check


def test_to_ev_per_atom():
    np.testing.assert_allclose(to_ev_per_atom([5.0, -2.5], "eV/cell", [5, 5]), [1.0, -0.5])
    np.testing.assert_allclose(to_ev_per_atom([1.0], "eV/atom", [5]), [1.0])
    with pytest.raises(ValueError, match="unit"):
        to_ev_per_atom([1.0], "kJ/mol", [5])
    with pytest.raises(ValueError, match="positive"):
        to_ev_per_atom([1.0], "eV/cell", [0])


def test_unit_check_reads_the_unit_from_the_data():
    cells = np.array([-0.3, 1.0, 2.5, 4.4, 3.0, 1.5, 0.5, 2.2, 0.9, 1.8])  # Castelli-like, eV/cell
    n = [5] * 10
    ok = unit_check("eV/cell", cells, n)
    assert ok["verdict"] == "consistent"
    assert ok["fraction_outside_if_ev_per_atom"] == 0.4  # 2.5, 4.4, 3.0, 2.2 exceed 2 eV/atom
    assert ok["fraction_outside_if_ev_per_cell"] == 0.0
    assert unit_check("eV/atom", cells, n)["verdict"] == "contradicted"
    per_atom = np.array([-1.2, -0.4, 0.1, -2.5])  # per-atom data cannot contradict per cell
    assert unit_check("eV/atom", per_atom, [4] * 4)["verdict"] == "undecided"
    pred = cells / 5 + 0.1
    extra = unit_check("eV/cell", cells, n, prediction_ev_per_atom=pred)
    assert extra["model_mae_if_ev_per_cell"] == pytest.approx(0.1)


def test_zero_shot_summary_in_both_units_and_sigma_shift():
    y = np.array([0.1, 0.3])
    mean = np.array([0.2, 0.1])
    out = zero_shot_summary(y, mean, [0.5, 0.05], [5, 5], in_domain_sigma=np.linspace(0, 0.1, 101))
    assert out["mae_ev_per_atom"] == pytest.approx(0.15)
    assert out["mae_ev_per_cell"] == pytest.approx(0.75)
    assert out["in_domain_sigma_p95"] == pytest.approx(0.095)
    assert out["fraction_above_in_domain_p95"] == 0.5
    assert out["median_sigma"] == pytest.approx(0.275)


def _write_castelli(folder, structures, targets):
    import csv

    folder.mkdir(parents=True)
    with open(folder / "test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "material_id", "cif", "formula", "heat_all", "heat_ref"])
        for i, (s, t) in enumerate(zip(structures, targets, strict=True)):
            w.writerow([i, 100 + i, s.to(fmt="cif"), s.formula, round(t, 2), t])


def test_transfer_stages_run_zero_shot_and_fine_tuning_or_say_not_run(tmp_path, flla_table):
    import dataclasses
    import json

    from test_train import train_small_members

    from tracer.data.validation import ValidationConfig
    from tracer.inference.ensemble import ensemble_predictions
    from tracer.pipeline.paths import Paths
    from tracer.pipeline.study_stages import run_perovskites_stage, run_transfer_stage
    from tracer.training.settings import TrainConfig

    data, split, members = train_small_members(tmp_path / "train", flla_table, 24, (0, 1))
    paths = Paths("flla", tmp_path)
    paths.models.mkdir(parents=True)
    for m in members:
        (paths.models / m.name).write_bytes(m.read_bytes())
    paths.results.mkdir(parents=True)
    ensemble_predictions(members, data, split).to_parquet(paths.predictions("gemnet_t"))
    structures = list(flla_table.structure.iloc[30:50])
    cells = [1.0 + 0.1 * i for i in range(20)]  # eV per cell
    _write_castelli(tmp_path / "perov", structures, cells)
    fine_tune = {"train_limit": None, "sizes": [4], "min_steps": 2, "val_size": None,
                 "train": {"warmup_epochs": 0}}  # fmt: skip
    settings = {"source": "castelli_local", "path": "perov", "fractions": [0.5, 0.25, 0.25],
                "seed": 42, "fine_tune": fine_tune}  # fmt: skip
    train = dataclasses.asdict(TrainConfig(max_epochs=1, batch_size=8, scale_fit_batches=1))
    params = {"dataset": {"raw_dir": "data/raw"}, "train": train, "transfer": settings}
    status = run_perovskites_stage(params=params, transfer=settings, validation=ValidationConfig(),
                                   root=tmp_path)  # fmt: skip
    assert status["status"] == "RUN" and status["split_sizes"] == {"train": 10, "val": 5, "test": 5}
    assert status["unit"] == "eV/cell" and status["unit_check"]["verdict"] == "consistent"
    common = {"params": params, "dataset_name": "flla", "device": "cpu", "root": tmp_path}
    out = run_transfer_stage(transfer=settings, **common)
    assert out["status"] == "RUN" and out["unit_check"]["declared"] == "eV/cell"
    z, f = out["zero_shot"], out["fine_tuned"]
    assert z["n"] == 5 and z["mae_ev_per_cell"] > z["mae_ev_per_atom"] > 0
    assert f["n_members"] == 2 and f["mae_ev_per_cell"] > f["mae_ev_per_atom"] > 0
    assert [row["n_train"] for row in out["learning_curve"]] == [4, 10]
    written = json.loads((tmp_path / "metrics" / "transfer.json").read_text())
    assert written["zero_shot"]["n"] == 5 and written["fine_tuned"]["n_members"] == 2
    for name in ("transfer_zero_shot", "transfer_fine_tuned", "transfer_learning_curve"):
        assert (tmp_path / "paper_figures" / "transfer" / f"{name}.png").exists()
    gone = {**settings, "path": "nowhere"}
    assert run_perovskites_stage(params=params, transfer=gone, validation=ValidationConfig(),
                                 root=tmp_path)["status"].startswith("NOT RUN")  # fmt: skip
    missing = run_transfer_stage(transfer=gone, **common)
    assert missing["status"].startswith("NOT RUN") and "nowhere" in missing["status"]
    assert missing["zero_shot"] is None and missing["fine_tuned"] == missing["status"]
    assert (tmp_path / "models" / "transfer" / "NOT_RUN.txt").read_text().startswith("NOT RUN")
