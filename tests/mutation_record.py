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
import fnmatch
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


def _line(path: str, diff: str) -> int | None:
    """Line (1-based) in ``path`` of the first line the mutant changes: the first removed line
    of its diff found in the file (None when the file or the line is not found)."""
    removed = next((part[1:].strip() for part in diff.split(" / ") if part.startswith("-")), None)
    source = Path(path)
    if removed is None or not source.exists():
        return None
    for number, text in enumerate(source.read_text().splitlines(), start=1):
        if text.strip() == removed:
            return number
    return None


def _why(name: str, diff: str, reasons: dict[str, Any]) -> str:
    if name in (reasons.get("mutants") or {}):
        return reasons["mutants"][name]
    for pattern, why in (reasons.get("patterns") or {}).items():
        if re.search(pattern, diff.split(" / +", 1)[-1]):
            return why
    return "not yet argued"


def module_of(name: str) -> str:
    """``tracer.models.gemnet.xǁRadialBasisǁforward__mutmut_3`` → ``tracer.models.gemnet``."""
    match = re.match(r"^(.*?)\.x[_ǁ]", name)
    if not match:
        raise ValueError(f"not a mutmut mutant name: {name}")
    return match.group(1)


def in_scope(name: str, scope: list[str]) -> bool:
    """Whether mutant ``name`` matches one of the ``scope`` patterns (fnmatch; none: all)."""
    return not scope or any(fnmatch.fnmatchcase(name, pattern) for pattern in scope)


def _tally(codes: list[int | None]) -> Counter:
    return Counter("killed" if c in KILLED else "survived" if c in SURVIVED
                   else "no_tests" if c in NO_TESTS else "not_run" if c is None else "other"
                   for c in codes)  # fmt: skip


def record(
    codes: dict[str, int | None],
    reasons: dict[str, Any],
    modules: list[str],
    *,
    scope: list[str] | None = None,
    previous: dict[str, Any] | None = None,
) -> dict:
    """The record of the metrics contract: tool, modules, killed, survived, score, survivors
    (mutant, file, line, mutation, why).

    Only mutants matching ``scope`` count. A module none of whose mutants ran here keeps its
    counts and survivors from ``previous`` (an earlier record with ``by_module``), marked in
    ``carried_over``."""
    scope = scope or []
    codes = {n: c for n, c in codes.items() if in_scope(n, scope)}
    by_module: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for module in sorted({module_of(n) for n in codes}):
        mine = {n: c for n, c in codes.items() if module_of(n) == module}
        tally = _tally(list(mine.values()))
        survivors = sorted(n for n, c in mine.items() if c in SURVIVED)
        mine_rows = [
            {
                "mutant": n,
                "file": module.replace(".", "/") + ".py",
                "line": _line(module.replace(".", "/") + ".py", diff),
                "mutation": diff,
                "why": _why(n, diff, reasons),
            }
            for n, diff in ((n, _diff(n)) for n in survivors)
        ]
        by_module[module] = {
            key: tally[key] for key in ("killed", "survived", "no_tests", "not_run", "other")
        } | {"equivalent": sum(r["why"].startswith("equivalent") for r in mine_rows)}
        rows += mine_rows
    carried = []
    for module, counts in ((previous or {}).get("by_module") or {}).items():
        path = module.replace(".", "/") + ".py"
        old_rows = [r for r in previous["survivors"] if r["file"] == path]
        ran = {n for n in codes if module_of(n) == module and codes[n] is not None}
        if ran - {r["mutant"] for r in old_rows}:
            continue  # run afresh here beyond the earlier survivors: this run's figures stand
        # the earlier figures, with those of its survivors run again here that are now killed
        again = [r for r in old_rows if codes.get(r["mutant"]) in KILLED]
        kept = [r | {"line": r.get("line") or _line(path, r["mutation"]),
                     "why": r["why"] if r["why"] != "not yet argued"
                     else _why(r["mutant"], r["mutation"], reasons)}
                for r in old_rows if codes.get(r["mutant"]) not in KILLED]  # fmt: skip
        rows = [x for x in rows if x["file"] != path] + kept
        by_module[module] = counts | {
            "killed": counts["killed"] + len(again),
            "survived": counts["survived"] - len(again),
            "equivalent": sum(r["why"].startswith("equivalent") for r in kept),
        }
        carried.append(module)
    total = Counter()
    for counts in by_module.values():
        total.update(counts)
    killed, survived, equivalent = total["killed"], total["survived"], total["equivalent"]
    return {
        "tool": "mutmut 3.8.1 (mutate_only_covered_lines; fast unit tests of pyproject's "
        "[tool.mutmut])",
        "modules": modules,
        "scope": scope,
        "n_mutants": sum(total[k] for k in ("killed", "survived", "no_tests", "not_run", "other")),
        "killed": killed,
        "survived": survived,
        "no_tests": total["no_tests"],
        "not_run": total["not_run"],
        "other": total["other"],
        "score": killed / (killed + survived) if killed + survived else None,
        "equivalent": equivalent,
        "score_without_equivalent": killed / (killed + survived - equivalent)
        if killed + survived - equivalent
        else None,
        "score_by_module": {m: _score(c) for m, c in sorted(by_module.items())},
        "by_module": dict(sorted(by_module.items())),
        "carried_over": sorted(carried),
        "survivors": sorted(rows, key=lambda r: r["mutant"]),
    }


def _score(counts: dict[str, int]) -> float | None:
    k, s = counts.get("killed", 0), counts.get("survived", 0)
    return k / (k + s) if k + s else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/mutation.json")
    parser.add_argument("--reasons", default="docs/mutation_survivors.yaml")
    parser.add_argument("--scope", nargs="*", default=[],
                        help="mutant-name patterns run (fnmatch; none: all)")  # fmt: skip
    parser.add_argument("--previous", default=None,
                        help="an earlier record: modules not run now keep its figures")  # fmt: skip
    args = parser.parse_args()
    modules = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    reasons_path = Path(args.reasons)
    reasons = yaml.safe_load(reasons_path.read_text()) if reasons_path.exists() else {}
    previous = json.loads(Path(args.previous).read_text()) if args.previous else None
    rec = record(outcomes(), reasons or {}, modules, scope=args.scope, previous=previous)
    Path(args.out).write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: rec[k] for k in ("n_mutants", "killed", "survived", "score")}))


if __name__ == "__main__":
    main()
