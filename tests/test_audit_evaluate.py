"""The audit on planted records: a claim that holds must PASS, the same claim on a planted
counter-example must FAIL; the claims file is checked (unique ids, known quantities); the written
audit keeps smoke-scale results out of the totals."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tracer.audit.evaluate import load_claims, run_audit, totals, write_audit
from tracer.audit.runs import RunSpec

RUN = RunSpec("planted", "planted records", "rec",
              {"gemnet_t": "rec/gemnet_t.parquet", "alignn": "rec/alignn.parquet"},
              "params.yaml")  # fmt: skip


def _predictions(root, gemnet_noise, alignn_noise, n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(-1.0, 1.0, n)
    ids = [f"s{k}" for k in range(n)]
    members = {f"member_{k}": y + rng.normal(0, gemnet_noise, n) for k in range(3)}
    frame = pd.DataFrame({"id": ids, "set": "test", "y_true": y, **members})
    values = frame[list(members)].to_numpy()
    frame["mean"], frame["std"] = values.mean(1), values.std(1)
    (root / "rec").mkdir(exist_ok=True)
    frame.to_parquet(root / "rec/gemnet_t.parquet")
    pd.DataFrame({"id": ids, "set": "test", "y_true": y,
                  "y_pred": y + rng.normal(0, alignn_noise, n)}).to_parquet(
        root / "rec/alignn.parquet")  # fmt: skip


def _claims(tmp_path, claims):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"deviations": [], "claims": claims}))
    return path


def _claim(cid, quantity, rule):
    return {"id": cid, "section": "claim", "item": cid, "paper_value": "-", "source": "-",
            "quantity": quantity, "rule": rule, "why": "test"}  # fmt: skip


def _verdict(root, claim):
    audit = run_audit(root, [RUN], _claims(root, [claim]))
    return audit["rows"][0]["runs"]["planted"]


@pytest.mark.parametrize(
    ("gemnet", "alignn", "expected"),
    [(0.05, 0.10, "PASS"), (0.10, 0.05, "FAIL"), (0.08, 0.0801, "INCONCLUSIVE")],
)
def test_model_comparison_is_paired_and_can_fail(tmp_path, gemnet, alignn, expected):
    _predictions(tmp_path, gemnet, alignn)
    cell = _verdict(tmp_path, _claim("c", "single_minus_alignn_mae",
                                     {"kind": "below", "threshold": 0.0}))  # fmt: skip
    assert cell["verdict"] == expected
    assert cell["n"] == 400 and len(cell["interval"]) == 2


def _record(root, name, payload):
    (root / "rec").mkdir(exist_ok=True)
    (root / "rec" / name).write_text(json.dumps(payload))


@pytest.mark.parametrize(("u", "expected"), [(0.5, "PASS"), (0.05, "FAIL")])
def test_triage_claim_on_planted_record(tmp_path, u, expected):
    _record(tmp_path, "triage.json", {"n": 400, "rows": [
        {"budget": 50, "threshold": 0.1, "uncertainty_yield": u, "random_yield_mean": 0.08,
         "random_yield_std": 0.03}]})  # fmt: skip
    cell = _verdict(tmp_path, _claim("t", "triage_rows", {"kind": "beats_random", "k_std": 3}))
    assert cell["verdict"] == expected


@pytest.mark.parametrize(("film", "expected"), [(0.1081, "PASS"), (0.090, "FAIL")])
def test_domain_no_gain_on_planted_record(tmp_path, film, expected):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"domain": {"train_limit": None}}))

    def variant(mae, std):
        return {"mae": mae, "params": 100, "s_per_epoch": 1.0, "mae_seeds": {"0": mae, "1": mae},
                "mae_across_seeds": {"std": std}}  # fmt: skip

    _record(tmp_path, "domain.json", {"variants": {"baseline": variant(0.1084, 0.0007),
                                                   "film": variant(film, 0.0022)}})  # fmt: skip
    cell = _verdict(tmp_path, _claim("d", "domain_film_minus_baseline",
                                     {"kind": "no_gain", "k": 2}))  # fmt: skip
    assert cell["verdict"] == expected and cell["smoke"] is False


def test_coverage_of_056_fails_and_a_missing_record_is_not_run(tmp_path):
    claim = _claim("cov", "coverage95_raw", {"kind": "within", "low": 0.93, "high": 0.97})
    assert _verdict(tmp_path, claim)["verdict"].startswith("NOT RUN: rec/uncertainty.json")
    _record(tmp_path, "uncertainty.json", {"n_test": 395, "coverage95": 0.56})
    assert _verdict(tmp_path, claim)["verdict"] == "FAIL"


def test_claims_file_is_checked(tmp_path):
    good = _claim("a", "sigma_spearman", {"kind": "above", "threshold": 0.3})
    with pytest.raises(ValueError, match="appears twice"):
        load_claims(_claims(tmp_path, [good, good]))
    with pytest.raises(ValueError, match="unknown quantity"):
        load_claims(_claims(tmp_path, [{**good, "quantity": "vibes"}]))
    with pytest.raises(ValueError, match="lacks"):
        load_claims(_claims(tmp_path, [{k: v for k, v in good.items() if k != "why"}]))
    with pytest.raises(ValueError, match="unknown rule"):
        load_claims(_claims(tmp_path, [{**good, "rule": {"kind": "roughly"}}]))


def test_the_committed_claims_cover_the_paper_once_each():
    doc = load_claims()
    ids = [c["id"] for c in doc["claims"]]
    items = [c["item"] for c in doc["claims"]]
    assert len(set(ids)) == len(ids) and len(set(items)) == len(items)
    assert len(doc["claims"]) >= 45 and len(doc["deviations"]) >= 5


def test_smoke_results_are_labelled_and_not_counted(tmp_path):
    audit = {"runs": {"r": "run"}, "deviations": [], "rows": [
        {"id": "a", "section": "claim", "item": "a", "paper_value": "-", "rule": "-",
         "runs": {"r": {"our_value": "x", "verdict": "PASS", "smoke": True}}},
        {"id": "b", "section": "claim", "item": "b", "paper_value": "-", "rule": "-",
         "runs": {"r": {"our_value": "y", "verdict": "FAIL", "smoke": False}}},
    ]}  # fmt: skip
    assert totals(audit) == {"r": {"FAIL": 1}}
    write_audit(audit, tmp_path)
    text = (tmp_path / "CHECKLIST.md").read_text()
    assert "smoke scale, not counted" in text and "| `r` | run | FAIL 1 |" in text


def test_readme_table_is_the_committed_audit():
    from conftest import REPO

    from tracer.audit.evaluate import README_END, README_START, readme_table

    rows = json.loads((REPO / "paper_figures" / "CHECKLIST.json").read_text())
    text = (REPO / "README.md").read_text()
    block = text.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert block == readme_table(rows), "README is stale: run `tracer audit-readme`"
    claims = [r for r in rows if r["section"] == "claim"]
    assert block.count("\n") == len(claims) + 1  # header, rule, one line per claim


def test_write_readme_block_needs_the_markers(tmp_path):
    from tracer.audit.evaluate import write_readme_block

    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    with pytest.raises(ValueError, match="audit:start"):
        write_readme_block(readme, [])


def test_a_claim_limited_to_some_runs_is_not_applicable_elsewhere(tmp_path):
    claim = {**_claim("t", "triage_rows", {"kind": "beats_random", "k_std": 3}), "runs": ["cv"]}
    cell = _verdict(tmp_path, claim)
    assert cell["verdict"] == "N/A: checked on cv"
    audit = run_audit(tmp_path, [RUN], _claims(tmp_path, [claim]))
    assert totals(audit) == {"planted": {}}
    with pytest.raises(ValueError, match="unknown runs"):
        load_claims(_claims(tmp_path, [{**claim, "runs": ["laptop"]}]))


#: notebooks whose "Paper vs this run" is a whole table of their own, by the call that makes it
WHOLE_TABLE = {"40_checklist.ipynb": 'audit["rows"]', "31_cv_results.ipynb": "paper_vs_cv("}


def test_every_notebook_ends_with_its_paper_vs_this_run_section():
    import re
    from pathlib import Path

    from tracer.audit.evaluate import load_claims

    known = {c["id"] for c in load_claims()["claims"]}
    notebooks = sorted(Path("notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 10
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        source = ["".join(c["source"]) if c["cell_type"] == "markdown" else "" for c in cells]
        heads = [i for i, text in enumerate(source) if text.startswith("## ")]
        assert heads, f"{path.name} has no sections"
        last = "".join(cells[heads[-1]]["source"])
        assert last.startswith("## Paper vs this run"), f"{path.name} ends with another section"
        text = "\n".join("".join(c["source"]) for c in cells[heads[-1] :])
        if path.name in WHOLE_TABLE:
            assert WHOLE_TABLE[path.name] in text, path.name
            continue
        calls = re.findall(r"paper_vs_run\(\s*\[(.*?)\]", text, re.S)
        ids = {i for call in calls for i in re.findall(r"[\"']([a-z0-9_]+)[\"']", call)}
        assert ids and ids <= known, f"{path.name}: unknown claim ids {sorted(ids - known)}"
