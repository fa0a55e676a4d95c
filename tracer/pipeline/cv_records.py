"""Scoring a cross-validation run's folder into its records (keys: docs/METRICS.md), with
provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.analysis.cross_validation import (
    BASELINE_SETTINGS,
    baseline_oof,
    cv_accuracy,
    cv_uncertainty,
    out_of_fold,
    read_folds,
    write_json,
)
from tracer.analysis.domain_cv import pooled_domain
from tracer.analysis.failures import failure_report
from tracer.analysis.flags import flag_report
from tracer.analysis.sigma_candidates import variance_head_study
from tracer.analysis.triage import PAPER_BUDGETS, PAPER_TABLE, PAPER_THRESHOLDS_EV, triage_rows
from tracer.pipeline.provenance import provenance

VARIANCE_HEAD = "variance_head"
"""A cross-validation folder's sub-folder for the σ study's members with a variance head
(``tracer train-cv --variance-head``): ``fold_<f>/predictions.parquet``, ``training.json``,
``histories/``."""


def cv_variance_head(run_dir: str | Path, frame: pd.DataFrame, k: int, *,
                     n_resamples: int = 2000) -> dict[str, Any]:  # fmt: skip
    """``cv_variance_head.json``: the σ study
    (:func:`tracer.analysis.sigma_candidates.variance_head_study`) on every fold, the
    variance-head members of ``<run_dir>/variance_head/`` beside the paper's members of the same
    folds (``frame``: their validation and test rows, :func:`read_folds`), with the members'
    training summaries."""
    folder = Path(run_dir) / VARIANCE_HEAD
    nll = read_folds(folder, k)
    report = variance_head_study(frame, nll, n_resamples=n_resamples)
    training = {}
    for f in range(k):
        members = json.loads((folder / f"fold_{f}" / "training.json").read_text())["members"]
        training[str(f)] = {seed: {key: m[key] for key in ("best_epoch", "best_val_mae",
                                                          "epochs_run", "train_time_s", "device")}
                            for seed, m in members.items()}  # fmt: skip
    report["training"] = training
    report["design"] = ("the rule chooses on all folds' validation rows together; scores on "
                        "all out-of-fold test rows; conformal quantile per fold; paired "
                        "bootstrap over structures")
    return report


DOMAIN = "domain"
"""A cross-validation folder's sub-folder for the applicability domain measured out of fold:
per fold the members' ``predictions.parquet``, ``training.json``, ``histories/`` (``tracer
train-cv``, weights kept) and ``ood.json`` (``tracer fit-domain --fold``)."""


def cv_domain(run_dir: str | Path, k: int, *, n_resamples: int = 2000) -> dict[str, Any]:
    """``cv_domain.json``: each fold's domain record and predictions of
    ``<run_dir>/domain/`` pooled (:func:`tracer.analysis.domain_cv.pooled_domain`)."""
    folder = Path(run_dir) / DOMAIN
    missing = [f for f in range(k) if not (folder / f"fold_{f}" / "ood.json").exists()]
    if missing:
        raise FileNotFoundError(f"{folder}: folds {missing} have no ood.json yet")
    frame = read_folds(folder, k)
    folds = [(json.loads((folder / f"fold_{f}" / "ood.json").read_text()),
              frame[frame["fold"] == f]) for f in range(k)]  # fmt: skip
    return pooled_domain(folds, n_resamples=n_resamples)


def cv_provenance(folds: dict[str, Any], params: dict[str, Any], *, device: str,
                  folds_path: str | Path) -> dict[str, Any]:
    """The provenance block of a cross-validated run's records (fold file ``folds``, read from
    ``folds_path``; ``device``: the card the members trained on)."""
    return provenance(params=params, dataset_sha256=folds["dataset_sha256"],
                      split_sha256=folds["cv_sha256"], wall_time_s=0.0, device=device,
                      extra={"folds": Path(folds_path).as_posix(), "n_folds": folds["k"],
                             "scored_on": "cpu"})  # fmt: skip


def record_cv_domain(run_dir: str | Path, folds: dict[str, Any], params: dict[str, Any], *,
                     device: str, folds_path: str | Path, out_dir: str | Path,
                     n_resamples: int = 2000) -> dict[str, Any]:  # fmt: skip
    """Only ``cv_domain.json`` (:func:`cv_domain`) of a run whose folds hold ``domain/`` alone
    (a domain measured on its own fold file), into ``out_dir``."""
    record = cv_domain(run_dir, folds["k"], n_resamples=n_resamples)
    prov = cv_provenance(folds, params, device=device, folds_path=folds_path)
    write_json(Path(out_dir) / "cv_domain.json", {**record, "provenance": prov})
    return record


def record_cv(
    run_dir: str | Path,
    folds: dict[str, Any],
    table: pd.DataFrame,
    params: dict[str, Any],
    *,
    device: str,
    n_resamples: int = 2000,
    out_dir: str | Path | None = None,
    folds_path: str | Path = "data/splits/flla_cv5.json",
) -> dict[str, dict[str, Any]]:
    """Score a cross-validation folder: ``cv_accuracy.json``, ``cv_uncertainty.json``,
    ``cv_failures.json``, ``cv_triage.json``, ``cv_flags.json`` (and ``cv_variance_head.json``,
    ``cv_domain.json`` when their sub-folders exist) into ``run_dir`` (keys:
    docs/METRICS.md) and ``oof_gemnet_t.parquet`` (id, fold, y_true, member_<seed>…, mean, std,
    and the per-fold training-mean prediction ``dummy``). ``device``: the card the members
    trained on (for provenance). ``out_dir`` (default ``run_dir``): where the records go, when
    the fold folders are read from elsewhere (a committed run's archive, extracted);
    ``folds_path``: the fold file ``folds`` was read from (for provenance)."""
    from pymatgen.core import Composition


    run_dir = Path(run_dir)
    out_dir = run_dir if out_dir is None else Path(out_dir)
    frame = read_folds(run_dir, folds["k"])
    ids = list(table["id"])
    oof = out_of_fold(frame, ids)
    target = table.set_index("id")["target"]
    oof["dummy"] = [float(target.loc[folds["folds"][f]["train"]].mean()) for f in oof["fold"]]
    oof["formula"] = list(table.set_index("id").loc[ids, "formula"])
    members = sorted(c for c in oof.columns if c.startswith("member_"))
    oof.to_parquet(out_dir / "oof_gemnet_t.parquet", index=False)
    models = {"gemnet_t_ensemble": oof["mean"], "gemnet_t_single": oof[members[0]],
              "dummy": oof["dummy"]}  # fmt: skip
    pairs = [("gemnet_t_ensemble", "gemnet_t_single"), ("gemnet_t_single", "dummy")]
    baselines = baseline_oof(run_dir, folds["k"], oof, out_dir)
    for name, pred in baselines.items():
        models[name] = pred
        pairs += [("gemnet_t_single", name), ("gemnet_t_ensemble", name)]
    acc = cv_accuracy(oof, models, pairs, n_resamples=n_resamples)
    y = oof["y_true"].to_numpy(float)
    acc["models"]["gemnet_t_single"]["which"] = f"{members[0]} (chosen before scoring)"
    acc["members_mae"] = {m: float(np.abs(oof[m] - y).mean()) for m in members}
    acc["members_mae_mean"] = float(np.mean(list(acc["members_mae"].values())))
    acc["members_mae_std"] = float(np.std(list(acc["members_mae"].values()), ddof=1))
    acc["dataset"] = folds["dataset"]
    acc["settings_tried"] = {
        "gemnet_t": "profile of record (full): chosen on the seed-42 split's validation among "
        "about twenty seed-0 probes (results/flla_full/README.md)",
        "dummy": "none (training mean of each fold)",
        **{name: BASELINE_SETTINGS[name] for name in baselines},
    }
    acc["not_run"] = {name: "not trained on these folds yet" for name in BASELINE_SETTINGS
                      if name not in baselines}  # fmt: skip

    err = np.abs(oof["mean"] - oof["y_true"]).to_numpy()
    comp = [Composition(f) for f in table.set_index("id").loc[ids, "formula"]]
    fractions = [{str(e): float(x) for e, x in c.fractional_composition.items()} for c in comp]
    fail_frame = oof.assign(formula=[c.reduced_formula for c in comp],
                            n_atoms=table.set_index("id").loc[ids, "n_atoms"].to_numpy(),
                            composition=fractions)  # fmt: skip
    failures = failure_report(fail_frame, n_worst=20)
    tri = triage_rows(err, oof["std"].to_numpy(), list(PAPER_BUDGETS), list(PAPER_THRESHOLDS_EV),
                      n_trials=2000, seed=0)  # fmt: skip
    for row in tri:
        paper = PAPER_TABLE.get((row["budget"], row["threshold"]))
        row["paper_uncertainty_yield"] = paper[0] if paper else None
        row["paper_random_yield_mean"] = paper[1] if paper else None
    triage = {"n": len(oof), "budgets": "absolute, as the paper's (its test set: 3,604)",
              "rows": tri,
              "beats_random_by_3_std_everywhere": all(
                  r["margin_in_random_std"] is not None and r["margin_in_random_std"] >= 3
                  for r in tri)}  # fmt: skip
    flags = flag_report(err, oof["std"].to_numpy(), oof["mean"].to_numpy(),
                        [{str(e) for e in c.elements} for c in comp], k_fraction=0.075,
                        n_trials=2000, seed=0)  # fmt: skip
    unc = cv_uncertainty(frame, oof)
    prov = cv_provenance(folds, params, device=device, folds_path=folds_path)
    records = {"cv_accuracy": acc, "cv_uncertainty": unc, "cv_failures": failures,
               "cv_triage": triage, "cv_flags": flags}  # fmt: skip
    if (run_dir / VARIANCE_HEAD).is_dir():
        records["cv_variance_head"] = cv_variance_head(run_dir, frame, folds["k"],
                                                       n_resamples=n_resamples)  # fmt: skip
    if (run_dir / DOMAIN).is_dir():
        records["cv_domain"] = cv_domain(run_dir, folds["k"], n_resamples=n_resamples)
    for name, payload in records.items():
        write_json(out_dir / f"{name}.json", {**payload, "provenance": prov})
    return records
