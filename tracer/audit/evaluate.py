"""Evaluate every declared claim (``claims.yaml``) against every run that has its quantity, and
write the audit: ``CHECKLIST.json`` (the metrics contract's layout) and ``CHECKLIST.md`` (the
deviations table, verdict totals per run — smoke-scale results left out of the totals — and one
row per claim with one column per run).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tracer.audit.checks import CHECKS
from tracer.audit.quantities import QUANTITIES
from tracer.audit.rules import (
    NOT_APPLICABLE,
    NOT_RUN,
    NOT_TESTABLE,
    RULES,
    Measurement,
    NotRunError,
    NotTestableError,
    apply,
    describe,
)
from tracer.audit.runs import RUNS, Context, RunSpec
from tracer.pipeline.config import load_params

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
ALL_QUANTITIES: dict[str, Callable[[Context], Measurement]] = {**QUANTITIES, **CHECKS}


def load_claims(path: str | Path = CLAIMS_FILE) -> dict[str, Any]:
    """The claims file, checked: unique ids, known quantities and rules, every field present."""
    doc = yaml.safe_load(Path(path).read_text())
    seen: set[str] = set()
    for c in doc["claims"]:
        missing = {
            "id",
            "section",
            "item",
            "paper_value",
            "source",
            "quantity",
            "rule",
            "why",
        } - set(c)
        if missing:
            raise ValueError(f"claim {c.get('id')!r} lacks {sorted(missing)}")
        unknown_runs = set(c.get("runs", [])) - {r.name for r in RUNS}
        if unknown_runs:
            raise ValueError(f"claim {c.get('id')!r}: unknown runs {sorted(unknown_runs)}")
        if c["id"] in seen:
            raise ValueError(f"claim id {c['id']!r} appears twice")
        seen.add(c["id"])
        if c["quantity"] not in ALL_QUANTITIES:
            raise ValueError(f"claim {c['id']!r}: unknown quantity {c['quantity']!r}")
        if c["rule"].get("kind") not in RULES:
            raise ValueError(f"claim {c['id']!r}: unknown rule {c['rule'].get('kind')!r}")
    return doc


def evaluate_claim(claim: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """One claim on one run: ``our_value``, ``interval``, ``n``, ``verdict``, ``smoke``. A claim
    whose ``runs`` leave this run out is N/A here (its records cannot hold the quantity)."""
    if "runs" in claim and ctx.run.name not in claim["runs"]:
        return {"our_value": "—", "interval": None, "n": None, "smoke": False,
                "verdict": f"{NOT_APPLICABLE}: checked on {', '.join(claim['runs'])}"}  # fmt: skip
    try:
        m = ALL_QUANTITIES[claim["quantity"]](ctx)
        if isinstance(m.value, float) and not math.isfinite(m.value):
            raise NotTestableError(f"undefined on this run's data ({m.text})")
        verdict = apply(claim["rule"], m)
    except KeyError as key:  # a record without the key the quantity reads
        return {
            "our_value": "—",
            "interval": None,
            "n": None,
            "verdict": f"{NOT_RUN}: the record has no {key}",
            "smoke": False,
        }
    except NotRunError as why:
        return {
            "our_value": "—",
            "interval": None,
            "n": None,
            "verdict": f"{NOT_RUN}: {why}",
            "smoke": False,
        }
    except NotTestableError as why:
        return {
            "our_value": "—",
            "interval": None,
            "n": None,
            "verdict": f"{NOT_TESTABLE}: {why}",
            "smoke": False,
        }
    return {
        "our_value": m.text,
        "interval": None if m.interval is None else [float(x) for x in m.interval],
        "n": m.n,
        "verdict": verdict,
        "smoke": bool(m.extra.get("smoke", False)),
    }


def run_audit(
    root: str | Path = ".", runs: Sequence[RunSpec] = RUNS, claims_path: str | Path = CLAIMS_FILE
) -> dict[str, Any]:
    """Every claim on every run under ``root``: ``{"runs", "deviations", "rows"}``."""
    doc = load_claims(claims_path)
    contexts = [Context(Path(root), run) for run in runs]
    rows = []
    for claim in doc["claims"]:
        rows.append(
            {
                "id": claim["id"],
                "section": claim["section"],
                "item": claim["item"],
                "paper_value": claim["paper_value"],
                "source": claim["source"],
                "rule": describe(claim["rule"]),
                "why": claim["why"],
                "runs": {ctx.run.name: evaluate_claim(claim, ctx) for ctx in contexts},
            }
        )
    return {"runs": {r.name: r.label for r in runs}, "deviations": doc["deviations"], "rows": rows}


def totals(audit: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Verdict counts per run; smoke-scale results and N/A cells left out."""
    out = {}
    for run in audit["runs"]:
        cells = [r["runs"][run] for r in audit["rows"] if not r["runs"][run]["smoke"]
                 and not r["runs"][run]["verdict"].startswith(NOT_APPLICABLE)]  # fmt: skip
        out[run] = dict(sorted(Counter(c["verdict"].split(":")[0] for c in cells).items()))
    return out


def _cell(c: dict[str, Any]) -> str:
    verdict = c["verdict"]
    if verdict.startswith(NOT_APPLICABLE):
        return "—"
    text = c["our_value"] if c["our_value"] != "—" else ""
    tag = " *(smoke scale, not counted)*" if c["smoke"] else ""
    head = verdict.split(":")[0]
    reason = verdict[len(head) + 1 :].strip() if ":" in verdict else ""
    body = text or reason
    return f"**{head}**{tag}: {body}".replace("|", "\\|").replace("\n", " ")


def write_audit(audit: dict[str, Any], out_dir: str | Path = "paper_figures") -> list[Path]:
    """``CHECKLIST.json`` and ``CHECKLIST.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "CHECKLIST.json"
    json_path.write_text(json.dumps(audit["rows"], indent=1, ensure_ascii=False) + "\n")
    counts = totals(audit)
    lines = [
        "# Audit: the paper's claims and its authors' checklist against this artifact",
        "",
        "Every verdict is computed by `tracer.audit` from committed records under a rule "
        "declared in `tracer/audit/claims.yaml` before the runs were scored. PASS and FAIL "
        "need the 95% interval wholly on one side of the rule; INCONCLUSIVE: it straddles; "
        "NOT TESTABLE: the data cannot show it; NOT RUN: the run lacks the record. All "
        "values come from FLLA (3,938 Materials Project crystals), not the paper's JARVIS "
        "data; the perovskite rows from the 18,928 CMR cells.",
        "",
        "## Deviations from the paper",
        "",
        "| topic | paper | this artifact | why |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {d['topic']} | {d['paper']} | {d['ours']} | {d['why']} |" for d in audit["deviations"]
    ]
    lines += [
        "",
        "## Runs",
        "",
        "| run | what | verdicts (smoke-scale and N/A cells not counted) |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{name}` | {label} | " + ", ".join(f"{k} {v}" for k, v in counts[name].items()) + " |"
        for name, label in audit["runs"].items()
    ]
    for section in ("claim", "checklist", "audit note"):
        part = [r for r in audit["rows"] if r["section"] == section]
        lines += [
            "",
            f"## {section}",
            "",
            "| item | paper | rule | " + " | ".join(f"`{n}`" for n in audit["runs"]) + " |",
            "|---|---|---|" + "---|" * len(audit["runs"]),
        ]
        for r in part:
            cells = " | ".join(_cell(r["runs"][n]) for n in audit["runs"])
            lines.append(f"| {r['item']} | {r['paper_value']} | {r['rule']} | {cells} |")
    md_path = out / "CHECKLIST.md"
    md_path.write_text("\n".join(lines) + "\n")
    return [json_path, md_path]


README_START, README_END = "<!-- audit:start -->", "<!-- audit:end -->"
HEADLINE_ORDER = ("cv", "run_of_record", "cpu_default")


def readme_table(rows: Sequence[dict[str, Any]]) -> str:
    """The README's first-screen table from the written audit rows: each claim of the paper
    with the most informative run's verdict (the cross-validated run, else the GPU run of
    record, else the CPU default; never a smoke-scale or NOT RUN cell while another run has
    the claim)."""
    lines = ["| claim | paper | this artifact | verdict |", "|---|---|---|---|"]
    for r in rows:
        if r["section"] != "claim":
            continue
        runs = r["runs"]
        order = [n for n in HEADLINE_ORDER if n in runs]
        order += [n for n in runs if n not in HEADLINE_ORDER]
        usable = [
            n
            for n in order
            if not runs[n]["smoke"] and not runs[n]["verdict"].startswith((NOT_RUN, NOT_APPLICABLE))
        ]
        name = usable[0] if usable else order[0]
        cell = runs[name]
        verdict = cell["verdict"].split(":")[0]
        ours = cell["our_value"] if cell["our_value"] != "—" else cell["verdict"]
        ours = ours.replace("|", "\\|")
        lines.append(f"| {r['item']} | {r['paper_value']} | {ours} (`{name}`) | **{verdict}** |")
    return "\n".join(lines)


def write_readme_block(readme: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Replace the README's block between the audit markers with :func:`readme_table`."""
    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path}: no {README_START} … {README_END} block")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_START}\n{readme_table(rows)}\n{README_END}{tail}")
    return path


def _sentence(cell: dict[str, Any], claim: dict[str, Any]) -> str:
    """What the verdict means for the claim, made from the cell's own numbers and rule."""
    verdict = cell["verdict"]
    head = verdict.split(":")[0]
    ours = cell["our_value"]
    if head == "PASS":
        return f"The paper's claim holds here: {ours}; rule: {claim['rule']}."
    if head == "FAIL":
        return f"The paper's claim does not hold here: {ours}; rule: {claim['rule']}."
    if head == "INCONCLUSIVE":
        return f"These data cannot decide under the rule ({claim['rule']}): {ours}."
    return f"{verdict}."


def paper_vs_run(
    claim_ids: Sequence[str],
    run: str = "cpu_default",
    root: str | Path = ".",
    claims_path: str | Path = CLAIMS_FILE,
) -> Any:
    """The "Paper vs this run" table of a notebook: for each claim, the paper's value, this
    run's value with its interval, the verdict (smoke-scale results marked) and a sentence
    generated from the numbers. Returns a :class:`pandas.DataFrame`."""

    doc = load_claims(claims_path)
    by_id = {c["id"]: c for c in doc["claims"]}
    unknown = sorted(set(claim_ids) - set(by_id))
    if unknown:
        raise ValueError(f"unknown claim ids {unknown}")
    spec = next((r for r in RUNS if r.name == run), None)
    if spec is None:
        raise ValueError(f"unknown run {run!r}; known: {[r.name for r in RUNS]}")
    ctx = Context(Path(root), spec)
    rows = []
    for cid in claim_ids:
        claim = {**by_id[cid], "rule": describe(by_id[cid]["rule"])}
        cell = evaluate_claim(by_id[cid], ctx)
        rows.append({"claim": claim["item"], "paper": claim["paper_value"],
                     "this run": cell["our_value"],
                     "verdict": cell["verdict"].split(":")[0]
                     + (" (smoke scale)" if cell["smoke"] else ""),
                     "reading": _sentence(cell, claim)})  # fmt: skip
    return pd.DataFrame(rows)


def run_facts(root: str | Path = ".", params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """Dataset, split sizes, training size and epochs of the run whose params are
    ``params_path`` — printed above each notebook's "Paper vs this run" table."""
    params = load_params(Path(root) / params_path)
    name = params["dataset"]["name"]
    split = json.loads((Path(root) / "data" / "splits" / f"{name}.json").read_text())
    sizes = {k: len(split[k]) for k in ("train", "val", "test")}
    return {"dataset": name, "split_sizes": sizes, "n_train": sizes["train"],
            "max_epochs": params["train"]["max_epochs"],
            "ensemble_members": len(params["ensemble"]["seeds"])}  # fmt: skip
