"""The transfer cross-validation report on made-up prediction files whose answers are known:
a pure offset is removed by the offset baseline, a perfect fine-tune scores zero, the paired
difference against scratch is the planted one, and missing runs are reported as NOT RUN."""

import json

import numpy as np
import pandas as pd
import pytest

from tracer.analysis.transfer_cv import transfer_cv_report


def _folds(ids):
    half = len(ids) // 2
    parts = [(ids[:half], ids[half:]), (ids[half:], ids[:half])]
    return {"folds": [{"fold": f, "train": tr[:-4], "val": tr[-4:], "test": te}
                      for f, (tr, te) in enumerate(parts)]}  # fmt: skip


def _run(folder, name, ids, sets, y, delta):
    rows = pd.DataFrame({"id": ids, "set": sets, "y_true": y, "y_pred": y + delta})
    rows.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / f"{name}.json").write_text("{}")


@pytest.fixture
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"c{k}" for k in range(40)]
    y = rng.normal(0.3, 0.1, len(ids))
    folds = _folds(ids)
    # zero-shot: right up to +1 eV/atom everywhere, with a spread of 0.05
    pd.DataFrame({"id": ids, "y_true": y, "n_atoms": 5, "mean": y + 1.0,
                  "std": 0.05}).to_parquet(tmp_path / "zero_shot.parquet")  # fmt: skip
    truth = dict(zip(ids, y, strict=True))
    for fold in folds["folds"][:1]:  # only fold 0 has its fine-tuned runs
        d = tmp_path / "fold_0"
        d.mkdir()
        run_ids = fold["val"] + fold["test"]
        sets = ["val"] * len(fold["val"]) + ["test"] * len(fold["test"])
        yy = np.array([truth[i] for i in run_ids])
        _run(d, "finetune_all_member0", run_ids, sets, yy, -0.002)
        _run(d, "finetune_all_member1", run_ids, sets, yy, 0.002)
        _run(d, "scratch_all", run_ids, sets, yy, 0.01)
        _run(d, "finetune_n5", run_ids, sets, yy, -0.02)
        _run(d, "scratch_n5", run_ids, sets, yy, 0.03)
        (d / "histories").mkdir()
        (d / "histories" / "scratch_all.json").write_text(json.dumps(
            [{"epoch": 0, "val_mae": 0.02}, {"epoch": 1, "val_mae": 0.01}]))  # fmt: skip
    return folds, tmp_path


def test_known_answers(run_dir):
    folds, out = run_dir
    report = transfer_cv_report(folds, out, curve_folds=[0])
    zs = report["zero_shot"]
    assert zs["n_folds"] == 2
    assert zs["mae_ev_per_cell"]["zero_shot"]["mean"] == pytest.approx(5.0)
    assert zs["mae_ev_per_cell"]["zero_shot_plus_offset"]["mean"] == pytest.approx(0.0, abs=1e-9)
    ft = report["fine_tuned"]
    assert ft["n_folds"] == 1
    assert ft["mae_ev_per_cell"]["fine_tuned_ensemble"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert ft["mae_ev_per_cell"]["scratch"]["mean"] == pytest.approx(0.05)
    paired = ft["paired_ev_per_cell"]["fine_tuned_member0_minus_scratch"]
    assert paired["mae"]["diff"] == pytest.approx(0.01 - 0.05)
    assert paired["mae"]["ci95"][1] < 0
    assert ft["coverage_recalibrated"]["mean"] == pytest.approx(1.0)
    (curve,) = report["learning_curves"]["0"]
    assert curve["n_train"] == 5
    assert curve["pretrained_minus_scratch_ev_per_cell"]["diff"] == pytest.approx(0.1 - 0.15)
    assert report["validation"]["0"]["scratch_all"]["best_val_mae_ev_per_cell"] == pytest.approx(
        0.05
    )


def test_no_finished_fold_is_not_run(run_dir):
    folds, out = run_dir
    for path in (out / "fold_0").glob("scratch_all.*"):
        path.unlink()
    report = transfer_cv_report(folds, out)
    assert report["fine_tuned"]["n_folds"] == 0
    assert report["fine_tuned"]["status"].startswith("NOT RUN")


def test_matbench_record_has_the_contract_keys(run_dir):
    from tracer.analysis.transfer_cv import matbench_record

    folds, out = run_dir
    record = matbench_record(transfer_cv_report(folds, out), {**folds, "seed": 18012019})
    assert record["n"] == 40 and record["n_folds"] == 2 and record["random_state"] == 18012019
    assert record["models"]["zero_shot"]["per_fold_mae_ev_per_cell"] == pytest.approx([5.0, 5.0])
    assert record["models"]["fine_tuned_ensemble"]["n_folds"] == 1
    assert record["models"]["alignn_scratch"]["status"].startswith("NOT RUN")
    assert record["models"]["gemnet_t_scratch_ensemble"]["status"].startswith("NOT RUN")


def test_scratch_ensemble_is_compared_only_like_for_like(run_dir):
    folds, out = run_dir
    report = transfer_cv_report(folds, out)
    assert (
        "fine_tuned_ensemble_minus_scratch_ensemble"
        not in (report["fine_tuned"]["paired_ev_per_cell"])
    )  # one scratch model against two members
    d = out / "fold_0"
    frame = pd.read_parquet(d / "scratch_all.parquet")
    frame.assign(y_pred=frame.y_true + 0.03).to_parquet(d / "scratch_all_member1.parquet")
    ft = transfer_cv_report(folds, out)["fine_tuned"]
    assert ft["n_scratch_per_fold"] == [2]
    # scratch ensemble: +0.02 eV/atom everywhere = 0.1 eV per 5-atom cell; fine-tuned: exact
    assert ft["mae_ev_per_cell"]["scratch_ensemble"]["mean"] == pytest.approx(0.1)
    assert ft["mae_ev_per_cell"]["scratch_single_mean"]["mean"] == pytest.approx(0.1)
    pair = ft["paired_ev_per_cell"]["fine_tuned_ensemble_minus_scratch_ensemble"]
    assert pair["mae"]["diff"] == pytest.approx(-0.1) and pair["mae"]["ci95"][1] < 0


def test_alignn_peer_on_the_folds_it_ran(run_dir, tmp_path):
    """ALIGNN's per-cell MAE and its paired difference to GemNet-T from scratch are the planted
    ones (offsets 0.02 vs 0.01 eV/atom on 5-atom cells); a fold without ALIGNN is left out, and
    predictions of another fold's test cells are refused by name."""
    from tracer.analysis.transfer_cv import alignn_peer, matbench_record

    folds, out = run_dir
    zero = pd.read_parquet(out / "zero_shot.parquet").set_index("id")
    fold = folds["folds"][0]
    d = tmp_path / "alignn" / "fold_0"
    d.mkdir(parents=True)
    ids = fold["val"] + fold["test"]
    sets = ["val"] * len(fold["val"]) + ["test"] * len(fold["test"])
    _run(d, "alignn_authors", ids, sets, zero.loc[ids, "y_true"].to_numpy(), 0.02)
    summary = {"epochs_run": 14, "recipe": {"epochs": 50}, "best_epoch": 13, "train_time_s": 1.0}
    (d / "alignn_authors.json").write_text(json.dumps(summary))
    peer = alignn_peer(folds, out, tmp_path / "alignn")
    assert peer["n_folds"] == 1 and peer["n"] == len(fold["test"]) and peer["epochs_run"] == [14]
    assert peer["mae_ev_per_cell"]["mean"] == pytest.approx(0.10)
    diff = peer["paired_ev_per_cell"]["alignn_minus_gemnet_t_scratch"]["mae"]
    assert diff["diff"] == pytest.approx(0.10 - 0.05) and diff["ci95"][0] > 0
    report = {**transfer_cv_report(folds, out), "alignn_scratch": peer}
    model = matbench_record(report, folds)["models"]["alignn_scratch"]
    assert model["n_folds"] == 1 and "14 epochs of its 50" in model["note"]
    assert alignn_peer(folds, out, tmp_path / "nowhere")["status"].startswith("NOT RUN")
    other = pd.read_parquet(d / "alignn_authors.parquet")
    other["id"] = other["id"].map({i: f"x{i}" for i in other["id"]})
    other.to_parquet(d / "alignn_authors.parquet", index=False)
    with pytest.raises(ValueError, match="fold 0"):
        alignn_peer(folds, out, tmp_path / "alignn")
