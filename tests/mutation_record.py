"""Write ``docs/mutation.json`` from a finished ``mutmut run`` (``make mutation``).

Reads mutmut's own result files (``mutants/**/*.py.meta``: the exit code of the tests for every
mutant) and, for each survivor, ``mutmut show`` (the one-line change). Survivors without a reason
in ``docs/mutation_survivors.yaml`` (mutant name → why it survives: equivalent, or what a test
would need) get ``why: "not yet argued"``. Score = killed / (killed + survived), and without the
survivors argued equivalent; mutants no test reaches ("no tests") are counted apart.

    python tests/mutation_record.py --out docs/mutation.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}


def outcomes(mutants: Path = Path("mutants")) -> dict[str, int | None]:
    """Mutant name → exit code of its tests (None: not run yet)."""
    codes: dict[str, int | None] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def _diff(name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True,
                         text=True, check=False).stdout  # fmt: skip
    changed = [line for line in out.splitlines()
               if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]  # fmt: skip
    return " / ".join(line.strip() for line in changed)[:300]


def _why(name: str, diff: str, reasons: dict[str, Any]) -> str:
    if name in (reasons.get("mutants") or {}):
        return reasons["mutants"][name]
    for pattern, why in (reasons.get("patterns") or {}).items():
        if re.search(pattern, diff.split(" / +", 1)[-1]):
            return why
    return "not yet argued"


def record(codes: dict[str, int | None], reasons: dict[str, Any], modules: list[str]) -> dict:
    """The record of the metrics contract: tool, modules, killed, survived, score, survivors."""
    counts = Counter("killed" if c in KILLED else "survived" if c in SURVIVED
                     else "no_tests" if c in NO_TESTS else "not_run" if c is None else "other"
                     for c in codes.values())  # fmt: skip
    survivors = sorted(n for n, c in codes.items() if c in SURVIVED)
    killed, survived = counts["killed"], counts["survived"]
    rows = [
        {
            "mutant": n,
            "file": n.rsplit(".x_", 1)[0].replace(".", "/") + ".py",
            "mutation": diff,
            "why": _why(n, diff, reasons),
        }
        for n, diff in ((n, _diff(n)) for n in survivors)
    ]
    equivalent = sum(r["why"].startswith("equivalent") for r in rows)
    return {
        "tool": "mutmut 3.8.1 (mutate_only_covered_lines; fast unit tests of pyproject's "
        "[tool.mutmut])",
        "modules": modules,
        "n_mutants": len(codes),
        "killed": killed,
        "survived": survived,
        "no_tests": counts["no_tests"],
        "not_run": counts["not_run"],
        "other": counts["other"],
        "score": killed / (killed + survived) if killed + survived else None,
        "equivalent": equivalent,
        "score_without_equivalent": killed / (killed + survived - equivalent)
        if killed + survived - equivalent
        else None,
        "score_by_module": {
            m: _score(codes, m) for m in sorted({n.rsplit(".x_", 1)[0] for n in codes})
        },
        "survivors": rows,
    }


def _score(codes: dict[str, int | None], module: str) -> float | None:
    mine = [c for n, c in codes.items() if n.rsplit(".x_", 1)[0] == module]
    k = sum(c in KILLED for c in mine)
    s = sum(c in SURVIVED for c in mine)
    return k / (k + s) if k + s else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/mutation.json")
    parser.add_argument("--reasons", default="docs/mutation_survivors.yaml")
    args = parser.parse_args()
    modules = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    reasons_path = Path(args.reasons)
    reasons = yaml.safe_load(reasons_path.read_text()) if reasons_path.exists() else {}
    rec = record(outcomes(), reasons or {}, modules)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps({k: rec[k] for k in ("n_mutants", "killed", "survived", "score")}))


if __name__ == "__main__":
    main()
