"""The reproduction report: every number of this run's records beside the committed reference.

After ``dvc repro`` on a fresh checkout the working tree holds this machine's records and git
holds the committed ones. :func:`compare_records` sets them side by side key by key and
:func:`verdict` says whether the run reproduced the reference:

- counts, sizes, seeds, hashes and other exact values must be equal;
- an error in eV/atom (a key naming ``mae`` or ``rmse``) may move by at most the tolerance
  measured between retrainings of one member (:func:`measured_tolerance`: the largest test-MAE
  difference in ``results/flla_full/run_to_run.json``), because CPU training is deterministic on
  one machine but another CPU may round differently in the last bits;
- any other number must be equal to 1e-9 (relative): no variation of it was measured;
- wall times, dates, versions and the provenance block are machine facts, listed apart and
  not judged.

Nothing here is asserted: the verdict is computed from the rows.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

from tracer.pipeline.paths import RUN_OF_RECORD

RUN_TO_RUN = f"{RUN_OF_RECORD}/run_to_run.json"
EXACT = 1e-9
"""Relative tolerance of a number without a measured variation."""
NOT_JUDGED = re.compile(r"(^|\.)(provenance|wall_time_s|.*_time_s|s_per_epoch|.*_per_s|"
                        r"timestamp|date|versions?)(\.|$)")  # fmt: skip
ERROR_KEY = re.compile(r"(^|[._])(mae|rmse)([._]|$)")


def flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a JSON record under its dotted key (list items by index)."""
    if isinstance(record, dict):
        out: dict[str, Any] = {}
        for key, value in record.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(record, list):
        out = {}
        for i, value in enumerate(record):
            out.update(flatten(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): record}


def measured_tolerance(root: str | Path = ".") -> float:
    """The largest test-MAE difference (eV/atom) between retrainings of one member with the same
    seed, data and settings (``run_to_run.json``)."""
    record = json.loads((Path(root) / RUN_TO_RUN).read_text())
    return max(abs(p["test_mae_diff"]) for p in record["pairs"])


def compare_value(key: str, ours: Any, reference: Any, mae_tolerance: float) -> tuple[str, str]:
    """``(verdict, tolerance)`` of one key: ``identical``, ``within tolerance``, ``differs``,
    ``missing`` or ``new`` (absent on one side), or ``not judged`` (a machine fact)."""
    if NOT_JUDGED.search(key):
        return "not judged", "machine fact"
    if reference is _ABSENT:
        return "new", "-"
    if ours is _ABSENT:
        return "missing", "-"
    if ours == reference:
        return "identical", "-"
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool)
                  for v in (ours, reference))  # fmt: skip
    if not numbers:
        return "differs", "equal"
    if ERROR_KEY.search(key.lower()):
        ok = abs(ours - reference) <= mae_tolerance
        return ("within tolerance" if ok else "differs"), f"±{mae_tolerance:.4f} eV/atom"
    if isinstance(ours, float) and isinstance(reference, float) and math.isfinite(reference):
        ok = abs(ours - reference) <= EXACT * max(abs(reference), 1.0)
        return ("within tolerance" if ok else "differs"), "1e-9 relative"
    return "differs", "equal"


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def compare_records(
    ours: dict[str, Any], reference: dict[str, Any], *, mae_tolerance: float
) -> list[dict[str, Any]]:
    """One row per key of either record: ``key``, ``ours``, ``reference``, ``verdict``,
    ``tolerance`` (see :func:`compare_value`)."""
    a, b = flatten(ours), flatten(reference)
    rows = []
    for key in sorted(set(a) | set(b)):
        mine, theirs = a.get(key, _ABSENT), b.get(key, _ABSENT)
        verdict, tolerance = compare_value(key, mine, theirs, mae_tolerance)
        rows.append({"key": key, "ours": mine, "reference": theirs, "verdict": verdict,
                     "tolerance": tolerance})  # fmt: skip
    return rows


def verdict(rows_by_file: dict[str, list[dict[str, Any]]]) -> str:
    """``REPRODUCED`` when every judged key is identical or within its tolerance (and no key is
    missing), else ``NOT REPRODUCED``."""
    bad = [r for rows in rows_by_file.values() for r in rows
           if r["verdict"] in ("differs", "missing")]  # fmt: skip
    return "NOT REPRODUCED" if bad else "REPRODUCED"


def committed(path: str, ref: str, root: str | Path = ".") -> dict[str, Any] | None:
    """The record ``path`` as committed at ``ref`` (None when it was not committed there)."""
    out = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True,
                         text=True)  # fmt: skip
    return json.loads(out.stdout) if out.returncode == 0 else None


def reproduction_report(root: str | Path = ".", ref: str = "HEAD") -> dict[str, Any]:
    """Every record of the default run that ``records.lock.json`` names under ``metrics/``,
    this checkout's against the one committed at ``ref``: rows per file, counts and the
    verdict."""
    root = Path(root)
    lock = json.loads((root / "records.lock.json").read_text())["records"]
    tolerance = measured_tolerance(root)
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(p for p in lock if p.startswith("metrics/")):
        reference = committed(path, ref, root)
        ours = json.loads((root / path).read_text()) if (root / path).exists() else None
        if reference is None or ours is None:
            files[path] = [{"key": "(file)", "ours": ours is not None,
                            "reference": reference is not None, "tolerance": "-",
                            "verdict": "missing" if ours is None else "new"}]  # fmt: skip
            continue
        files[path] = compare_records(ours, reference, mae_tolerance=tolerance)
    counts: dict[str, int] = {}
    for rows in files.values():
        for r in rows:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return {"reference": ref, "mae_tolerance_ev_per_atom": tolerance, "counts": counts,
            "verdict": verdict(files), "files": files}  # fmt: skip


def write_report(report: dict[str, Any], out: str | Path) -> Path:
    """``out`` (Markdown): the verdict, the counts, then every key that is not identical."""
    lines = [
        "# Reproduction report",
        "",
        f"This checkout's records against those committed at `{report['reference']}`. "
        f"Errors (MAE, RMSE) may move by ±{report['mae_tolerance_ev_per_atom']:.4f} eV/atom, the "
        f"largest difference measured between retrainings of one member ({RUN_TO_RUN}); other "
        "numbers must agree to 1e-9; exact values must be equal; wall times and provenance are "
        "machine facts, not judged.",
        "",
        f"**Verdict: {report['verdict']}** — "
        + ", ".join(f"{n} {v}" for v, n in sorted(report["counts"].items())),
        "",
        "| file | key | this run | committed | tolerance | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for path, rows in report["files"].items():
        for r in rows:
            if r["verdict"] in ("identical", "not judged"):
                continue
            lines.append(f"| {path} | {r['key']} | {r['ours']} | {r['reference']} | "
                         f"{r['tolerance']} | {r['verdict']} |")  # fmt: skip
    out = Path(out)
    out.write_text("\n".join(lines) + "\n")
    return out
