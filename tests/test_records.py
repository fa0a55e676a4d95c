import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import train_small_members

from tracer.inference.ensemble import predict_members
from tracer.pipeline.records import (
    baseline_results,
    keep_run_records,
    rescore_alignn,
    times_to_alignn_best,
)
from tracer.pipeline.release import half_precision_member
from tracer.pipeline.speed_records import speed_models_for_profile, summaries_from_histories


def test_half_precision_member_loads_and_predicts_close(tmp_path, flla_table):
    data, split, (full,) = train_small_members(tmp_path, flla_table, 24, (0,))
    half = half_precision_member(full, tmp_path / "half" / "member_0.pt")
    record = torch.load(half, weights_only=False)
    floats = [v for v in record["state_dict"].values() if v.is_floating_point() and v.dim()]
    matrices = [v for v in floats if v.dim() >= 2]
    assert matrices and all(v.dtype == torch.float16 for v in matrices)
    assert all(v.dtype == torch.float32 for v in floats if v.dim() == 1)  # vectors kept
    idx = np.arange(len(data))
    a = predict_members([full], data, idx, device="cpu")["mean"].to_numpy()
    b = predict_members([half], data, idx, device="cpu")["mean"].to_numpy()
    assert 0 < np.abs(a - b).max() < 0.05  # rounded, not identical, and close


def test_training_summaries_rebuilt_from_histories(tmp_path, flla_table):
    _, _, (member,) = train_small_members(tmp_path, flla_table, 24, (0,), epochs=2)
    history = torch.load(member, weights_only=False)["history"]
    (tmp_path / "history_0.json").write_text(json.dumps(history))
    shifted = [{**h, "val_mae": h["val_mae"] + (1.0 if h["epoch"] == 0 else 0.0)} for h in history]
    (tmp_path / "history_7.json").write_text(json.dumps(shifted))
    out = summaries_from_histories(tmp_path, wall_time_s=12.5, parallel=2)
    assert out["wall_time_s"] == 12.5 and out["parallel"] == 2
    summary = torch.load(member, weights_only=False)["summary"]
    rebuilt = out["members"]["0"]
    for key in ("best_epoch", "best_val_mae", "epochs_run", "device", "num_params"):
        assert rebuilt[key] == summary[key], key
    assert out["members"]["7"]["best_epoch"] == 1  # epoch 0 made worse: epoch 1 is the best
    with pytest.raises(FileNotFoundError, match="history"):
        summaries_from_histories(tmp_path / "nothing", wall_time_s=1.0, parallel=1)


def test_speed_record_keys_the_profile_timing_as_gemnet_t():
    def timing(nb, bs, prec, graphed, n_shapes):
        shapes = [{"atoms": i} for i in range(n_shapes)] if graphed else None
        settings = {"max_neighbors": nb, "batch_size": bs, "precision": prec}
        return {**settings, "cuda_graphs": graphed, "static_shapes": shapes, "s_per_epoch": nb / 10}

    raw = {
        "gemnet_t": timing(30, 32, "fp32", True, 4),
        "gemnet_t_eager": timing(30, 32, "fp32", False, 0),
        "gemnet_t_nb12_tf32": timing(12, 32, "tf32", True, 4),
        "gemnet_t_learned": timing(12, 32, "tf32", True, 4),  # same settings, other model
        "alignn": {"batch_size": 64, "s_per_epoch": 1.5},
    }
    params = {
        "graph": {"max_neighbors": 12},
        "train": {"batch_size": 32, "precision": "tf32", "cuda_graphs": True, "shape_buckets": 4},
    }
    out = speed_models_for_profile(raw, params)
    assert out["gemnet_t"]["timed_as"] == "gemnet_t_nb12_tf32"
    assert out["gemnet_t"]["s_per_epoch"] == 1.2
    assert out["gemnet_t_nb30_b32_fp32_graphs4"]["timed_as"] == "gemnet_t"
    assert out["gemnet_t_nb30_b32_fp32_eager"]["timed_as"] == "gemnet_t_eager"
    assert out["gemnet_t_learned"]["timed_as"] == "gemnet_t_learned"
    assert out["alignn"] == raw["alignn"]
    # a compiled timing is the profile's only when the profile compiles
    raw["gemnet_t_compiled"] = {**timing(12, 32, "tf32", True, 4), "compiled": True}
    out = speed_models_for_profile(raw, params)
    assert out["gemnet_t"]["timed_as"] == "gemnet_t_nb12_tf32"
    assert out["gemnet_t_nb12_b32_tf32_graphs4_compiled"]["timed_as"] == "gemnet_t_compiled"
    out = speed_models_for_profile(raw, {**params, "train": {**params["train"], "compile": True}})
    assert out["gemnet_t"]["timed_as"] == "gemnet_t_compiled"
    assert out["gemnet_t_nb12_b32_tf32_graphs4"]["timed_as"] == "gemnet_t_nb12_tf32"
    params["train"]["shape_buckets"] = 8
    with pytest.raises(ValueError, match="profile's settings"):
        speed_models_for_profile(raw, params)


def test_training_record_says_whether_members_were_compiled():
    from tracer.pipeline.speed_records import _compiled_note

    assert _compiled_note({"0": {"compiled": True}, "1": {"compiled": True}}) == "yes"
    assert _compiled_note({"0": {"compiled": False}}) == "no"
    assert _compiled_note({"0": {}}).startswith("no: trained before train.compile existed")
    assert _compiled_note({"0": {"compiled": True}, "1": {}}).startswith("mixed")


def _predictions(path, ids, y, pred):
    sets = ["val"] * 2 + ["test"] * (len(ids) - 2)
    frame = pd.DataFrame({"id": ids, "set": sets, "y_true": y, "y_pred": pred})
    frame.to_parquet(path, index=False)


def test_baselines_of_a_gpu_run_are_scored_and_alignn_recipe_chosen_on_validation(tmp_path):
    ids = [f"m{i}" for i in range(6)]
    y = np.array([0.0, 1.0, -1.0, -2.0, 0.5, 1.5])
    _predictions(tmp_path / "schnet.parquet", ids, y, y + 0.1)
    # the paper recipe is better on validation, worse on test: validation decides
    for recipe, val_mae, err in (("defaults", 0.3, 0.05), ("paper", 0.2, 0.4)):
        _predictions(tmp_path / f"alignn_{recipe}.parquet", ids, y, y + err)
        history = [{"epoch": 0, "val_mae": 0.5, "wall_time_s": 10.0},
                   {"epoch": 1, "val_mae": val_mae, "wall_time_s": 20.0}]  # fmt: skip
        summary = {"best_val_mae": val_mae, "best_epoch": 1, "history": history}
        (tmp_path / f"alignn_{recipe}.json").write_text(json.dumps(summary))
    results, alignn = baseline_results(tmp_path, ids[2:], n_resamples=20)
    assert set(results) == {"schnet", "alignn"}
    assert results["schnet"]["mae"] == pytest.approx(0.1)
    assert results["alignn"]["recipe"] == "paper" and results["alignn"]["mae"] == pytest.approx(0.4)
    assert results["alignn"]["recipes"]["defaults"]["test_mae"] == pytest.approx(0.05)
    for seed, curve in (("0", [0.4, 0.19]), ("1", [0.3, 0.25])):
        work = tmp_path / "work" / f"member_{seed}"
        work.mkdir(parents=True)
        rows = [{"val_mae": v, "wall_time_s": 3.0 * (k + 1)} for k, v in enumerate(curve)]
        (work / "history.json").write_text(json.dumps(rows))
    reach = times_to_alignn_best(tmp_path, alignn)
    assert reach["alignn"] == 20.0 and reach["alignn_best_val_mae"] == 0.2
    assert reach["gemnet_t_members"] == {"0": 6.0, "1": None}
    assert reach["gemnet_t"] is None  # not every member reached it
    assert reach["gemnet_t_members_best_val_mae"] == {"0": 0.19, "1": 0.25}
    assert baseline_results(tmp_path / "none", ids, n_resamples=5) == ({}, None)
    kept = keep_run_records(tmp_path, tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out" / "runs").as_posix() for p in kept)
    assert names == ["alignn_defaults.parquet", "alignn_paper.parquet",
                     "histories/alignn_defaults.json", "histories/alignn_paper.json",
                     "histories/gemnet_t_seed0.json", "histories/gemnet_t_seed1.json",
                     "schnet.parquet"]  # fmt: skip
    kept_history = json.loads((tmp_path / "out/runs/histories/alignn_paper.json").read_text())
    assert kept_history[1]["val_mae"] == 0.2


def test_a_recipe_trained_later_is_chosen_on_validation_and_only_alignn_changes(tmp_path):
    ids = [f"m{i}" for i in range(6)]
    y = np.array([0.0, 1.0, -1.0, -2.0, 0.5, 1.5])
    runs = tmp_path / "runs"
    (runs / "histories").mkdir(parents=True)
    for recipe, val_mae, err in (("defaults", 0.3, 0.05), ("authors", 0.25, 0.2)):
        _predictions(runs / f"alignn_{recipe}.parquet", ids, y, y + err)
        history = [{"epoch": 0, "val_mae": 0.9}, {"epoch": 1, "val_mae": val_mae}]
        (runs / "histories" / f"alignn_{recipe}.json").write_text(json.dumps(history))
    schnet = {"mae": 0.123, "rmse": 0.2, "r2": 0.9, "n": 4}
    acc = {"dataset": "flla", "n_test": 4,
           "models": {"schnet": schnet, "alignn": {"mae": 0.05, "recipe": "defaults"}},
           "provenance": {"git_commit": "abc"}}  # fmt: skip
    (tmp_path / "accuracy.json").write_text(json.dumps(acc))
    assert rescore_alignn(tmp_path, n_bootstrap=20) == "authors"
    out = json.loads((tmp_path / "accuracy.json").read_text())
    assert out["models"]["schnet"] == schnet and out["provenance"]["git_commit"] == "abc"
    assert out["models"]["alignn"]["mae"] == pytest.approx(0.2)
    assert out["models"]["alignn"]["recipes"]["defaults"] == {
        "best_val_mae": 0.3,
        "test_mae": pytest.approx(0.05),
    }
    assert "alignn_rescored" in out["provenance"]
    assert "| alignn" in (tmp_path / "table1_accuracy.md").read_text()
    acc["n_test"] = 5  # a prediction file of another test set is refused
    (tmp_path / "accuracy.json").write_text(json.dumps(acc))
    with pytest.raises(ValueError, match=r"alignn_authors\.parquet: its test set"):
        rescore_alignn(tmp_path, n_bootstrap=20)


def _records(folder, *, mae=0.08, fail_mae=0.08, n_test=395, unc_n_test=395):
    folder.mkdir(parents=True, exist_ok=True)
    acc = {"n_test": n_test, "models": {"gemnet_t_ensemble": {"mae": mae}}}
    (folder / "accuracy.json").write_text(json.dumps(acc))
    (folder / "failures.json").write_text(json.dumps({"mae": fail_mae}))
    (folder / "uncertainty.json").write_text(json.dumps({"n_test": unc_n_test}))


def test_reliability_records_of_another_ensemble_are_stale(tmp_path):
    from tracer.pipeline.release import ship_pretrained, stale_records

    _records(tmp_path / "same")
    assert stale_records(tmp_path / "same") is None
    _records(tmp_path / "other", fail_mae=0.094)  # the run_of_record stage not run since
    reason = stale_records(tmp_path / "other")
    assert "another ensemble" in reason and "0.09400" in reason
    _records(tmp_path / "size", unc_n_test=394)
    assert stale_records(tmp_path / "size") is not None
    (tmp_path / "gone").mkdir()
    assert "missing" in stale_records(tmp_path / "gone")
    with pytest.raises(ValueError, match="dvc repro run_of_record"):
        ship_pretrained(tmp_path / "ship", tmp_path / "other", {}, derived_dir=tmp_path / "other")


def test_shipped_folder_is_finished_from_its_own_run(tmp_path):
    """The committed records and shipped members: `tracer release` gives a copy of the shipped
    folder a calibration equal to the run's, a model card and a manifest that loads; the
    package's own folder is what a release writes now."""
    import shutil

    from tracer.inference.predict import PRETRAINED_DIR, Ensemble
    from tracer.pipeline.config import load_params
    from tracer.pipeline.release import release, release_status, release_texts, stale_records

    if stale_records("results/flla_full", "metrics/run_of_record") is not None:
        pytest.fail("results/flla_full: reliability records are not the recorded ensemble's")
    folder = tmp_path / "flla_gemnet_t"
    shutil.copytree(PRETRAINED_DIR, folder)
    for name in ("calibration.json", "MODEL_CARD.md", "MANIFEST.json"):
        (folder / name).unlink()
    params = load_params("profiles/full.yaml")
    # the run's check names the package folder, not this copy: refused with the reason
    with pytest.raises(ValueError, match="does not hold"):
        release(folder, "results/flla_full", params)
    results = tmp_path / "results"
    shutil.copytree("results/flla_full", results, ignore=shutil.ignore_patterns("studies", "runs"))
    check = json.loads((results / "half_precision_check.json").read_text())
    check["shipped_to"] = str(folder)
    (results / "half_precision_check.json").write_text(json.dumps(check))
    release(folder, results, params)
    recal = json.loads((folder / "calibration.json").read_text())
    unc = json.loads(Path("metrics/run_of_record/uncertainty.json").read_text())
    assert recal["sigma_scale"] == unc["sigma_scale"]
    # the shipped interval is the split-conformal one, with its measured test coverage
    assert recal["scale_or_quantile"] == unc["conformal_quantile"]
    assert recal["test_coverage95"] == unc["conformal_coverage95"]
    assert 0.93 <= recal["test_coverage95"] <= 0.97
    assert Ensemble.load(folder).interval.factor == unc["conformal_quantile"]
    text = (folder / "MODEL_CARD.md").read_text()
    assert f"covers {unc['conformal_coverage95']:.3f}" in text
    assert "Intended use" in text
    # the domain measured out of fold is quoted where a record of its design exists, and only
    # there (the shipped domain: split-tails at the default budget, seed 11's folds)
    oof_path = Path("results/flla_cv5_seed11/cv_domain.json")
    oof = json.loads(oof_path.read_text())["flagged"]
    assert f"flags {oof['fraction']:.1%} [{oof['ci95'][0]:.1%}, {oof['ci95'][1]:.1%}]" in text
    assert f"`{oof_path.as_posix()}`" in text
    bare = release_texts(folder, results, params, cv_domain=None)["MODEL_CARD.md"]
    assert "Refitted on each of" not in bare
    noise = params["train"].get("position_noise_angstrom", 0.0)
    assert (f"Gaussian noise of σ = {noise} Å" in text) == bool(noise)  # how it was trained
    ens = Ensemble.load(folder)
    assert len(ens.members) == 5 and ens.sigma_scale == recal["sigma_scale"]
    # the package's own folder is the one the committed records finished (the copy's
    # recalibration names its own results folder as the source)
    card = "MODEL_CARD.md"
    assert (folder / card).read_bytes() == (PRETRAINED_DIR / card).read_bytes()
    shipped = json.loads((PRETRAINED_DIR / "calibration.json").read_text())
    assert shipped["source"] == "metrics/run_of_record/uncertainty.json"
    assert {**shipped, "source": None} == {**recal, "source": None}
    assert release_status(PRETRAINED_DIR, "results/flla_full", params) is None
    (folder / card).write_text(text + "edited\n")
    assert "MODEL_CARD.md differ" in release_status(folder, results, params)


def test_the_card_says_whether_fit_domain_accepts_the_domain():
    from tracer.pipeline.release import acceptance_line

    shares = {"strained": 0.944, "vacuum": 0.98}
    record = {"n_val": 394,
              "shift_detection": {k: {"flagged_fraction_val": v} for k, v in shares.items()}}
    line = acceptance_line(record)
    assert line.startswith("Accepted") and "(strained, 94.4% flagged)" in line
    assert "the 93.0% an accepted fit needs" in line and "over 394 validation" in line
    record["shift_detection"]["vacuum"]["flagged_fraction_val"] = 0.90
    assert acceptance_line(record).startswith("**Not accepted**")
    assert "(vacuum, 90.0% flagged)" in acceptance_line(record)


def test_the_card_names_the_strain_tails_of_either_design():
    from tracer.pipeline.release import strain_tails

    tied = {"strain_quantile": 0.01}
    assert strain_tails(tied) == "1.00% for the median bond deviation"
    split = {"strain_quantile": 0.015, "strain_low_quantile": 0.005}
    assert strain_tails(split).startswith("1.50% above and 0.50% below for the median bond")
    assert "slab bounded above only" in strain_tails(split)
    assert strain_tails({**split, "strain_low_quantile": None}) == (
        "1.50% for the median bond deviation")


def test_the_card_quotes_the_out_of_fold_record_of_its_own_design_and_budget(tmp_path):
    from tracer.pipeline.release import matching_cv_domain

    old, split, smaller = (tmp_path / f"{n}.json" for n in ("old", "split", "smaller"))
    old.write_text(json.dumps({"flagged": {}}))  # written before design and budget were kept
    split.write_text(json.dumps({"design": "split-tails", "max_val_flagged": 0.04}))
    smaller.write_text(json.dumps({"design": "split-tails", "max_val_flagged": 0.035}))
    every = [tmp_path / "absent.json", old, split, smaller]
    assert matching_cv_domain({"design": "tied"}, every) == old
    assert matching_cv_domain({}, every) is None  # no domain shipped: nothing to quote
    assert matching_cv_domain({"design": "split-tails", "max_val_flagged": 0.04}, every) == split
    assert matching_cv_domain({"design": "split-tails", "max_val_flagged": 0.035},
                              every) == smaller  # fmt: skip
    assert matching_cv_domain({"design": "split-tails", "max_val_flagged": 0.03}, every) is None
    assert matching_cv_domain({"design": "tied"}, [split, smaller]) is None
