"""The authors' reproducibility checklist and the audit notes as yes/no findings computed from
the records (each a quantity for the rule ``holds``, with its evidence as the text).

Findings that read model files and ``dvc.lock`` exist for the CPU default run only (the GPU runs
commit predictions and records, not their checkpoints); the rest read each run's records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import yaml

from tracer.audit import default_run as checklist
from tracer.audit.rules import Measurement, NotRunError, NotTestableError
from tracer.audit.runs import Context
from tracer.pipeline.config import resolved_stages


def _yes(ok: bool, text: str, n: int | None = None) -> Measurement:
    return Measurement(bool(ok), None, n, text)


def _legacy(function: str, index: int) -> Callable[[Context], Measurement]:
    """A row of :mod:`tracer.audit.default_run`'s checks of the CPU run's split, models and lock."""

    def quantity(ctx: Context) -> Measurement:
        if ctx.run.name != "cpu_default":
            raise NotRunError("read from the CPU default run's model files and dvc.lock")
        try:
            row = getattr(checklist, function)(checklist.Records(ctx.root, ctx.dataset))[index]
        except checklist.MissingRecordError as err:
            raise NotRunError(str(err)) from None
        if row.verdict.startswith("NOT RUN"):
            raise NotTestableError(row.verdict.split(":", 1)[1].strip())
        return _yes(row.verdict == "PASS", f"{row.our_value} ({row.source})")

    quantity.__name__ = f"{function}_{index}"
    return quantity


def seeds_fixed(ctx: Context) -> Measurement:
    """The split's recorded seed is the params' seed and the ensemble's members are exactly the
    params' seeds (read from the prediction columns)."""
    p = ctx.params
    cols = [c for c in ctx.test("gemnet_t").columns if c.startswith("member_")]
    seeds = sorted(int(c.removeprefix("member_")) for c in cols)
    split_seed = ctx.json(f"data/splits/{ctx.dataset}.json")["seed"]
    want = sorted(p["ensemble"]["seeds"])
    ok = split_seed == p["seed"] and seeds == want
    return _yes(
        ok, f"split seed {split_seed} (params {p['seed']}); member seeds {seeds} (params {want})"
    )


def de_normalised(ctx: Context) -> Measurement:
    """Predictions are in the target's unit and scale: mean within 0.1 eV/atom of the targets'
    and spread within a factor 2 of theirs."""
    t = ctx.test("gemnet_t")
    y, p = t["y_true"].to_numpy(float), t["mean"].to_numpy(float)
    shift, ratio = abs(p.mean() - y.mean()), p.std() / y.std()
    return _yes(
        shift < 0.1 and 0.5 < ratio < 2.0,
        f"mean shift {shift:.3f} eV/atom, spread ratio {ratio:.2f} (n = {len(y)})",
    )


def metrics_from_logs(ctx: Context) -> Measurement:
    """The accuracy record's ensemble MAE equals the MAE recomputed from the prediction file."""
    acc = ctx.record("accuracy.json")
    t = ctx.test("gemnet_t")
    recomputed = float(np.mean(np.abs(t["mean"] - t["y_true"])))
    recorded = float(acc["models"]["gemnet_t_ensemble"]["mae"])
    return _yes(
        abs(recomputed - recorded) < 1e-9,
        f"recorded {recorded:.6f}, recomputed {recomputed:.6f} eV/atom",
    )


def test_size_confirmed(ctx: Context) -> Measurement:
    acc = ctx.record("accuracy.json")
    n_rec = acc.get("n_test") or acc.get("n")
    n_pred = len(ctx.test("gemnet_t"))
    if ctx.run.name == "cv":
        n_split = sum(len(f["test"]) for f in ctx.json("data/splits/flla_cv5.json")["folds"])
    else:
        n_split = len(ctx.json(f"data/splits/{ctx.dataset}.json")["test"])
    return _yes(
        n_rec == n_pred == n_split, f"record {n_rec}, predictions {n_pred}, split {n_split}"
    )


def single_model_headline(ctx: Context) -> Measurement:
    models = ctx.record("accuracy.json")["models"]
    ok = "gemnet_t_single" in models and "gemnet_t_ensemble" in models
    return _yes(
        ok,
        "single-member rows beside the ensemble's; the paper's comparison is "
        "audited single vs single"
        if ok
        else f"rows: {sorted(models)}",
    )


def same_metrics_for_alignn(ctx: Context) -> Measurement:
    models = ctx.record("accuracy.json")["models"]
    if "alignn" not in models:
        raise NotRunError("ALIGNN was not trained in this run")
    metrics = {"mae", "rmse", "r2", "mae_ci95", "rmse_ci95", "r2_ci95"}
    missing = sorted(metrics & set(models["gemnet_t_single"]) - set(models["alignn"]))
    return _yes(
        not missing,
        "ALIGNN's row has every metric of GemNet-T's" if not missing else f"ALIGNN lacks {missing}",
    )


def ablation_complete(ctx: Context) -> Measurement:
    if ctx.run.name == "cv":
        raise NotRunError("the domain study was not cross-validated")
    v = ctx.record("domain.json").get("variants", {})
    have = sorted(k for k, x in v.items() if x.get("mae") is not None)
    need = ["baseline", "domain_embedding", "film"]
    return _yes(set(need) <= set(have), f"variants with a test MAE: {have}")


def negative_results_reported(ctx: Context) -> Measurement:
    """Both negative results have numbers for both arms (not just a file)."""
    f = ctx.record("flags.json")
    arms = [f.get("variance_only_mean_abs_error"), f.get("hybrid_mean_abs_error")]
    if ctx.run.name == "cv":
        domain: list[Any] = ["not cross-validated"]
    else:
        v = ctx.record("domain.json").get("variants", {})
        domain = [v.get(k, {}).get("mae") for k in ("baseline", "film")]
    numbers = [x for x in arms + domain if isinstance(x, int | float) and np.isfinite(x)]
    ok = len(numbers) == 4 or (ctx.run.name == "cv" and len(numbers) == 2)
    return _yes(ok, f"flags: variance-only and hybrid {arms}; domain: baseline and FiLM {domain}")


def no_cherry_picking(ctx: Context) -> Measurement:
    """Every member the params name is scored, and the single-model figure is their mean (or a
    member fixed before scoring), not the best."""
    acc = ctx.record("accuracy.json")
    want = len(ctx.params["ensemble"]["seeds"])
    single = acc["models"]["gemnet_t_single"]
    members = acc.get("members_mae") or {}
    cols = [c for c in ctx.test("gemnet_t").columns if c.startswith("member_")]
    fixed = "chosen before scoring" in str(single.get("which", ""))
    best = min(members.values()) if members else None
    ok = len(cols) == want and (fixed or best is None or single["mae"] > best + 1e-12)
    return _yes(
        ok,
        f"{len(cols)} of {want} members scored; single-model MAE "
        f"{single['mae']:.4f} ({single.get('which', 'mean over members')})",
    )


def limitations_stated(ctx: Context) -> Measurement:
    text = ctx.path("docs/limitations.md").read_text()
    items = len(re.findall(r"^- ", text, flags=re.M))
    return _yes(items >= 3, f"docs/limitations.md lists {items} limitations")


def scripts_available(ctx: Context) -> Measurement:
    stages = yaml.safe_load(ctx.path("dvc.yaml").read_text())["stages"]
    cmds = [spec["cmd"] for spec in resolved_stages(stages).values()]
    notebooks = {w for c in cmds for w in str(c).split() if w.endswith(".ipynb")}
    missing = sorted(n for n in notebooks if not (ctx.root / n).exists())
    return _yes(
        not missing,
        f"{len(stages)} stages, {len(notebooks)} notebooks"
        + (f"; missing {missing}" if missing else ", all present"),
    )


def versions_recorded(ctx: Context) -> Measurement:
    folder = ctx.root / ctx.run.records
    files = sorted(folder.glob("*.json"))
    if not files:
        raise NotRunError(f"no records in {ctx.run.records}")
    ok = [bool(json.loads(f.read_text()).get("provenance", {}).get("packages")) for f in files]
    return _yes(
        all(ok), f"{sum(ok)} of {len(ok)} records in {ctx.run.records} list package versions"
    )


def gpu_named(ctx: Context) -> Measurement:
    if ctx.run.name == "cpu_default":
        raise NotTestableError("the CPU default run uses no GPU")
    device = ctx.record("accuracy.json")["provenance"]["device"]
    return _yes(device.lower() not in ("", "cpu"), f"records name {device}")


def perovskite_rules(ctx: Context) -> Measurement:
    if ctx.run.name != "cv":
        raise NotRunError("the 31k perovskite table is read by the matbench-fold run")
    d = ctx.json("results/perovskites_cv/data.json")
    units = {db: u["verdict"] for db, u in d["unit_checks"].items()}
    wild = [w["id"] for w in d["implausible_targets"]]
    ok = units.get("CMR") == "consistent" and "oqmd-4831941" in wild
    return _yes(
        ok,
        f"units {units}; {len(d['exact_duplicates'])} exact duplicates and "
        f"{len(wild)} implausible target(s) quarantined by rule: {wild}",
    )


CHECKS: dict[str, Callable[[Context], Measurement]] = {
    fn.__name__: fn
    for fn in (
        seeds_fixed,
        de_normalised,
        metrics_from_logs,
        test_size_confirmed,
        single_model_headline,
        same_metrics_for_alignn,
        ablation_complete,
        negative_results_reported,
        no_cherry_picking,
        limitations_stated,
        scripts_available,
        versions_recorded,
        gpu_named,
        perovskite_rules,
        _legacy("check_split", 1),
        _legacy("check_split", 2),
        _legacy("check_split", 3),
        _legacy("check_same_split_everywhere", 0),
        _legacy("check_normalisation", 0),
        _legacy("check_selection_on_validation", 0),
        _legacy("check_same_test_set", 0),
        _legacy("check_checkpoints", 0),
        _legacy("audit_model_has_angles", 0),
        _legacy("audit_alignn_epochs", 0),
        _legacy("audit_no_made_up_targets", 0),
    )
}
