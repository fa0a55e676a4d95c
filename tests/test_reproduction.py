"""The reproduction report judges every key of a record against the committed one: errors within
the measured run-to-run tolerance, other numbers to 1e-9, exact values equal; machine facts are
not judged. Each rule has a case where it fails."""

import json
import subprocess

from conftest import REPO

from tracer.pipeline.reproduction import (
    compare_records,
    flatten,
    measured_tolerance,
    reproduction_report,
    verdict,
    write_report,
)

REFERENCE = {
    "n_test": 395,
    "models": {"gemnet_t_ensemble": {"mae": 0.0968, "rmse": 0.21, "r2": 0.95}},
    "spearman": 0.47,
    "table_sha256": "9c5a",
    "curve": [0.1, 0.2],
    "provenance": {"git_commit": "abc", "wall_time_s": 12.0},
}


def _verdicts(ours, tolerance=0.0015):
    rows = compare_records(ours, REFERENCE, mae_tolerance=tolerance)
    return {r["key"]: r["verdict"] for r in rows}


def test_flatten_names_every_leaf():
    assert flatten({"a": {"b": 1}, "c": [2, {"d": 3}]}) == {"a.b": 1, "c.0": 2, "c.1.d": 3}


def test_an_identical_record_is_reproduced_and_machine_facts_are_not_judged():
    ours = json.loads(json.dumps(REFERENCE))
    ours["provenance"] = {"git_commit": "def", "wall_time_s": 99.0}
    got = _verdicts(ours)
    assert got["provenance.git_commit"] == got["provenance.wall_time_s"] == "not judged"
    assert {v for k, v in got.items() if not k.startswith("provenance")} == {"identical"}
    assert verdict({"f": compare_records(ours, REFERENCE, mae_tolerance=0.0015)}) == "REPRODUCED"


def test_an_error_within_the_measured_tolerance_passes_and_beyond_it_fails():
    ours = json.loads(json.dumps(REFERENCE))
    ours["models"]["gemnet_t_ensemble"]["mae"] = 0.0974  # the 2-core machine's figure
    assert _verdicts(ours)["models.gemnet_t_ensemble.mae"] == "within tolerance"
    ours["models"]["gemnet_t_ensemble"]["mae"] = 0.0990
    assert _verdicts(ours)["models.gemnet_t_ensemble.mae"] == "differs"
    rows = compare_records(ours, REFERENCE, mae_tolerance=0.0015)
    assert verdict({"f": rows}) == "NOT REPRODUCED"


def test_other_numbers_and_exact_values_must_agree():
    ours = json.loads(json.dumps(REFERENCE))
    ours["spearman"] = 0.47 + 1e-12
    ours["models"]["gemnet_t_ensemble"]["r2"] = 0.951
    ours["table_sha256"] = "cb28"
    ours["n_test"] = 394
    ours["curve"] = [0.1]
    got = _verdicts(ours)
    assert got["spearman"] == "within tolerance"
    assert got["models.gemnet_t_ensemble.r2"] == "differs"
    assert got["table_sha256"] == got["n_test"] == "differs"
    assert got["curve.1"] == "missing"
    ours = json.loads(json.dumps(REFERENCE))
    ours["extra"] = 1
    assert _verdicts(ours)["extra"] == "new"


def test_the_tolerance_is_the_measured_run_to_run_difference():
    record = json.loads((REPO / "results" / "flla_full" / "run_to_run.json").read_text())
    assert measured_tolerance(REPO) == max(abs(p["test_mae_diff"]) for p in record["pairs"])
    assert 0 < measured_tolerance(REPO) < 0.01


def test_the_committed_checkout_reproduces_itself(tmp_path):
    """This checkout against its own HEAD: the records of HEAD are identical to themselves; a
    record edited in a copy makes the verdict fail, naming the key."""
    work = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    report = reproduction_report(work, "HEAD")
    assert report["verdict"] == "REPRODUCED", [
        (f, r["key"]) for f, rows in report["files"].items() for r in rows
        if r["verdict"] not in ("identical", "not judged")
    ][:5]  # fmt: skip
    accuracy = work / "metrics" / "accuracy.json"
    record = json.loads(accuracy.read_text())
    record["n_test"] += 1
    accuracy.write_text(json.dumps(record))
    report = reproduction_report(work, "HEAD")
    assert report["verdict"] == "NOT REPRODUCED"
    text = write_report(report, tmp_path / "reproduction.md").read_text()
    assert "| metrics/accuracy.json | n_test |" in text and "NOT REPRODUCED" in text
