"""Scoring the four-database pooled study (:mod:`tracer.pipeline.pooled`): each variant's test
MAE per database, the separate per-database models beside them, and what the offset variant
learned against the energy differences of crystals present in two databases.

Run names: ``pooled_<variant>_seed<s>`` (one model on all databases, the database as its domain)
and ``separate_<database>_seed<s>`` (a model trained on one database's structures alone). The
per-database MAEs are means over seeds; a variant's gain over ``baseline`` (the pooled model
without a domain input) counts as one only where it exceeds twice the larger seed-to-seed
standard deviation of the two — the yardstick of negative result 2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.analysis.studies import test_predictions


def _per_database(folder: Path, name: str, database_of: dict[str, str]) -> dict[str, Any]:
    test = test_predictions(folder, name)
    err = (test["y_pred"] - test["y_true"]).abs()
    db = test.index.map(database_of)
    return {d: {"mae": float(err[db == d].mean()), "n": int((db == d).sum())}
            for d in sorted(set(db))}  # fmt: skip


def _summary(per_seed: list[dict[str, Any]], databases: Sequence[str]) -> dict[str, Any]:
    out = {}
    for d in databases:
        maes = [s[d]["mae"] for s in per_seed if d in s]
        if maes:
            out[d] = {"mae": float(np.mean(maes)), "mae_seeds": maes,
                      "seed_std": float(np.std(maes, ddof=1)) if len(maes) > 1 else None,
                      "n": per_seed[0][d]["n"]}  # fmt: skip
    return out


def matched_differences(matches: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per database pair ``<b>_minus_<a>``: the median and count of ``target_b − target_a``
    (eV/atom) over crystals matched between the two databases."""
    out = {}
    for (a, b), g in matches.groupby(["database_a", "database_b"], sort=True):
        diff = g["target_b"].to_numpy(float) - g["target_a"].to_numpy(float)
        out[f"{b}_minus_{a}"] = {"median": float(np.median(diff)), "n": int(diff.size),
                                 "iqr": [float(np.percentile(diff, 25)),
                                         float(np.percentile(diff, 75))]}  # fmt: skip
    return out


def pooled_report(
    folder: str | Path,
    database_of: dict[str, str],
    *,
    databases: Sequence[str],
    variants: Sequence[str],
    seeds: Sequence[int],
    matches: pd.DataFrame,
) -> dict[str, Any]:
    """``variants`` and ``separate`` per database (``mae``, ``mae_seeds``, ``seed_std``, ``n``;
    eV/atom), ``params`` and ``s_per_epoch`` per variant, each variant's ``gain_over_baseline``
    per database (negative: better) with whether it beats twice the seed spread, the offsets the
    ``offset`` variant learned (eV/atom, relative to the first database; from
    ``<run>.offsets.json``) beside :func:`matched_differences`, and ``best`` per database."""
    folder = Path(folder)
    out: dict[str, Any] = {"databases": list(databases), "seeds": list(seeds), "variants": {}}
    for v in variants:
        names = [f"pooled_{v}_seed{s}" for s in seeds]
        summaries = [json.loads((folder / f"{n}.json").read_text()) for n in names]
        out["variants"][v] = {
            "per_database": _summary([_per_database(folder, n, database_of) for n in names],
                                     databases),
            "params": int(summaries[0]["num_params"]),
            "s_per_epoch": float(np.median([s["s_per_epoch"] for s in summaries])),
            "epochs_run": [int(s["epochs_run"]) for s in summaries],
        }  # fmt: skip
    out["separate"] = {}
    for d in databases:
        names = [f"separate_{d}_seed{s}" for s in seeds]
        if all((folder / f"{n}.json").exists() for n in names):
            out["separate"][d] = _summary([_per_database(folder, n, database_of)
                                           for n in names], [d])[d]  # fmt: skip
    base = out["variants"].get("baseline", {}).get("per_database", {})
    rows: list[tuple[str, str, float]] = []
    for v, entry in out["variants"].items():
        gains = {}
        for d, cur in entry["per_database"].items():
            rows.append((d, v, cur["mae"]))
            if v == "baseline" or d not in base:
                continue
            spread = max(x for x in (cur["seed_std"], base[d]["seed_std"], 0.0) if x is not None)
            diff = cur["mae"] - base[d]["mae"]
            gains[d] = {"diff": diff, "beyond_twice_seed_spread": bool(diff < -2 * spread),
                        "twice_seed_spread": 2 * spread}  # fmt: skip
        entry["gain_over_baseline"] = gains
    rows += [(d, "separate", e["mae"]) for d, e in out["separate"].items()]
    out["best"] = {d: min((r for r in rows if r[0] == d), key=lambda r: r[2])[1]
                   for d in databases if any(r[0] == d for r in rows)}  # fmt: skip
    offsets = sorted(folder.glob("pooled_offset_seed*.offsets.json"))
    if offsets:
        learned = [json.loads(p.read_text()) for p in offsets]
        out["offsets"] = {
            "learned_ev_per_atom": {d: float(np.mean([o[d] - o[databases[0]] for o in learned]))
                                    for d in databases},
            "matched_differences": matched_differences(matches),
        }  # fmt: skip
    out["finding"] = finding(out)
    return out


def finding(report: dict[str, Any]) -> str:
    """One paragraph generated from the numbers of :func:`pooled_report`."""
    parts = []
    for v, entry in report["variants"].items():
        if v == "baseline":
            continue
        real = [d for d, g in entry["gain_over_baseline"].items() if g["beyond_twice_seed_spread"]]
        parts.append(f"{v} beats the pooled model without a domain input beyond twice the seed "
                     f"spread on {len(real)} of {len(entry['gain_over_baseline'])} databases"
                     + (f" ({', '.join(real)})" if real else ""))  # fmt: skip
    best = ", ".join(f"{d}: {v}" for d, v in report["best"].items())
    text = "; ".join(parts) + f". Lowest test MAE per database — {best}."
    if "offsets" in report:
        m = report["offsets"]["matched_differences"]
        learned = report["offsets"]["learned_ev_per_atom"]
        first = report["databases"][0]
        pairs = [f"{k}: matched median {v['median']:+.3f} (n = {v['n']})"
                 for k, v in m.items()]  # fmt: skip
        text += (" The offset variant learned, relative to " + first + ", "
                 + ", ".join(f"{d} {x:+.3f}" for d, x in learned.items() if d != first)
                 + " eV/atom; crystals in two databases differ by " + "; ".join(pairs) + ".")
    return text


def _gain_text(g: dict[str, Any]) -> str:
    where = "beyond" if g["beyond_twice_seed_spread"] else "inside"
    return f"{g['diff']:+.4f} ({where} twice the seed spread, {g['twice_seed_spread']:.4f})"


def record_tables(record: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The tables of a ``domains.json`` record (:func:`pooled_report` beside the one-database
    study) as the notebook shows them: ``single`` (one database, per variant), ``mae`` (test MAE
    per variant and database, eV/atom, with parameters and s/epoch; ``separate`` last),
    ``gains`` (each variant minus the pooled baseline per database, with the rule's verdict),
    ``learned_offsets`` (eV/atom, relative to the first database) and ``matched`` (the matched
    crystals' target differences, eV/atom)."""
    multi = record["multi_database"]
    variants = multi["variants"]
    rows = {v: {d: e["mae"] for d, e in entry["per_database"].items()}
            for v, entry in variants.items()}  # fmt: skip
    rows["separate"] = {d: e["mae"] for d, e in multi["separate"].items()}
    mae = pd.DataFrame(rows).T[multi["databases"]]
    mae["params"] = pd.Series({v: e["params"] for v, e in variants.items()})
    mae["s_per_epoch"] = pd.Series({v: e["s_per_epoch"] for v, e in variants.items()})
    gained = {v: g for v, e in variants.items() if (g := e.get("gain_over_baseline"))}
    gains = pd.DataFrame({v: {d: _gain_text(g) for d, g in by_db.items()}
                          for v, by_db in gained.items()}).T  # fmt: skip
    offsets = multi["offsets"]
    return {"single": pd.DataFrame(record["single_database"]["variants"]).T, "mae": mae,
            "gains": gains,
            "learned_offsets": pd.Series(offsets["learned_ev_per_atom"], name="eV/atom"),
            "matched": pd.DataFrame(offsets["matched_differences"]).T}  # fmt: skip
