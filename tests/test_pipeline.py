"""End to end: `dvc repro` on the tiny profile in a fresh copy of the repository."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, browser

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout + out.stderr


def copy_checkout(work: Path) -> dict[str, str]:
    """A fresh git repository at ``work`` with this checkout's tracked and untracked-unignored
    files (no DVC cache, no data); returns the environment to run its commands in."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, work / f)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        _run(cmd, work, env)
    return env


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, flla_csv):
    work = tmp_path_factory.mktemp("tiny") / "repo"
    env = copy_checkout(work)
    (work / "data" / "raw").mkdir(parents=True, exist_ok=True)
    shutil.copy2(flla_csv, work / "data" / "raw" / flla_csv.name)
    _run(["tracer", "profile", "use", "tiny"], work, env)
    first = _run(["dvc", "repro"], work, env)
    return work, env, first


def test_tiny_pipeline_runs_every_stage(tiny_run):
    work, _, first = tiny_run
    stages = ("data", "split", "dummy", "graphs", "train@0", "train@1", "predict", "accuracy")
    reliability = ("uncertainty", "failures", "triage", "flags")
    studies = ("perovskites", "transfer", "domain", "checklist", "report")
    analyses = [f"analysis@{name}" for name in reliability]
    for stage in (*stages, "baseline@schnet", "baseline@cgcnn", *analyses, *studies):
        assert f"Running stage '{stage}'" in first
    for name in reliability:
        metrics = json.loads((work / "metrics" / f"{name}.json").read_text())
        assert metrics["provenance"]["split_sha256"], name
    unc = json.loads((work / "metrics" / "uncertainty.json").read_text())
    for key in (
        "spearman",
        "pearson",
        "auroc_top10",
        "ause",
        "nll",
        "miscal_area",
        "miscal_area_recal",
        "coverage95",
        "coverage95_recal",
        "conformal_coverage95",
    ):
        assert key in unc, key  # fmt: skip
    rows = json.loads((work / "metrics" / "triage.json").read_text())["rows"]
    assert {(r["paper_budget"], r["threshold"]) for r in rows} >= {(50, 0.1), (300, 0.2)}
    transfer = json.loads((work / "metrics" / "transfer.json").read_text())
    assert transfer["status"].startswith("NOT RUN")  # the shared perovskites are not beside a copy
    assert transfer["fine_tuned"] == transfer["learning_curve"] == transfer["status"]
    domain = json.loads((work / "metrics" / "domain.json").read_text())
    assert set(domain["variants"]) == {"baseline", "domain_embedding", "film"}
    for v in domain["variants"].values():
        assert {"mae", "rmse", "r2", "params", "s_per_epoch"} <= set(v)
    assert domain["multi_domain"]["status"] == transfer["status"]
    worst = json.loads((work / "metrics" / "failures.json").read_text())["worst"]
    for w in worst:
        cif = work / "paper_figures" / "failures" / "worst_structures" / f"{w['id']}.cif"
        assert cif.exists()
    acc = json.loads((work / "metrics" / "accuracy.json").read_text())
    assert acc["dataset"] == "flla" and acc["n_test"] == 12 and acc["profile"] == "tiny"
    assert set(acc["models"]) == {
        "dummy", "schnet", "cgcnn", "gemnet_t_ensemble", "gemnet_t_single"
    }  # fmt: skip
    table = pd.read_csv(work / "paper_figures" / "accuracy" / "table1_accuracy.csv")
    ours = table[table.source.str.startswith("this run: tiny profile, flla test (12)")]
    assert list(ours.model) == list(acc["models"])
    # the committed run of record tested all of FLLA's test set, not this one's
    assert not table.source.str.contains("committed full profile").any()
    assert table.source.str.contains("Matbench").any()
    for key in ("git_commit", "params_sha256", "dataset_sha256", "split_sha256", "device"):
        assert acc["provenance"][key]
    split = json.loads((work / "data" / "splits" / "flla.json").read_text())
    assert (
        split["sizes"] == {"train": 96, "val": 12, "test": 12} and split["leak_check"]["leak_free"]
    )
    assert (work / "paper_figures" / "split" / "target_distribution.png").stat().st_size > 10_000
    for nb in (
        "01_data",
        "02_split",
        "05_training",
        "06_predict",
        "21_uncertainty",
        "22_failures",
        "23_triage",
        "24_flags",
        "09_perovskites",
        "25_transfer",
        "26_domain",
        "40_checklist",
        "20_accuracy",
    ):
        assert (work / "notebooks" / "executed" / f"{nb}.ipynb").exists()
    assert pd.read_csv(work / "data" / "quarantine" / "flla.csv").empty


def _cell(audit, claim_id, run="cpu_default"):
    (row,) = [r for r in audit["rows"] if r["id"] == claim_id] if "rows" in audit else [
        r for r in audit if r["id"] == claim_id]  # fmt: skip
    return row["runs"][run]


def test_audit_verdicts_follow_the_records(tiny_run, tmp_path):
    """The audit is computed from the run's records: change one record in a copy and that
    claim's verdict flips, on that run only."""
    from tracer.audit.evaluate import run_audit

    work, _, _ = tiny_run
    written = json.loads((work / "paper_figures" / "CHECKLIST.json").read_text())
    assert {r["section"] for r in written} == {"claim", "checklist", "audit note"}
    assert _cell(written, "same_split_everywhere")["verdict"] == "PASS"
    assert _cell(written, "normalisation_train_only")["verdict"] == "PASS"
    assert _cell(written, "split_sizes")["verdict"].startswith("NOT TESTABLE")
    copy = tmp_path / "copy"
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns("notebooks"))
    flags = json.loads((copy / "metrics" / "flags.json").read_text())
    for hybrid, expected in ((flags["variance_only_mean_abs_error"] - 0.01, "PASS"),
                             (flags["variance_only_mean_abs_error"] + 0.01, "FAIL")):  # fmt: skip
        (copy / "metrics" / "flags.json").write_text(
            json.dumps({**flags, "hybrid_mean_abs_error": hybrid})
        )
        audit = run_audit(copy)
        assert _cell(audit, "flags_negative")["verdict"] == expected
        gpu = _cell(audit, "flags_negative", "run_of_record")["verdict"]
        assert gpu == _cell(written, "flags_negative", "run_of_record")["verdict"]
    (copy / "models" / "flla" / "member_1.pt").unlink()  # a checkpoint missing from the run
    assert _cell(run_audit(copy), "checkpoints_documented")["verdict"] == "FAIL"


def test_site_index_reaches_every_claim_and_its_evidence_offline(tiny_run):
    """The index page, opened in headless Chromium: every link and image resolves to a local
    file, and every audited claim links (second click) to a page that loads with its images."""
    from urllib.parse import unquote, urlparse

    work, _, _ = tiny_run
    index = work / "docs" / "report" / "index.html"
    driver = browser()
    try:
        driver.get(index.as_uri())
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('a')).map(a => a.href)"
        )
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])"
        )
        rows = driver.execute_script(
            "return Array.from(document.querySelectorAll('#audit ~ table tr'))"
            ".slice(1).map(r => [r.cells[1].innerText,"
            " r.cells[r.cells.length - 1].querySelector('a')?.href])"
        )
        assert images and all(ok for _, ok in images), [s for s, ok in images if not ok]
        for href in links:
            url = urlparse(href)
            assert url.scheme == "file", href  # nothing from the network
            assert Path(unquote(url.path)).exists(), href
        checklist = json.loads((work / "paper_figures" / "CHECKLIST.json").read_text())
        assert len(rows) == len(checklist)
        claims = [(item, href) for item, href in rows
                  if item in {r["item"] for r in checklist if r["section"] == "claim"}]  # fmt: skip
        assert claims and all(href for _, href in claims)
        for href in sorted({h for _, h in claims}):
            driver.get(href)  # the second click
            assert driver.title and "index" in driver.page_source
            loaded = driver.execute_script(
                "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
            )
            assert loaded, href
    finally:
        driver.quit()


def test_second_repro_reruns_nothing_and_status_is_clean(tiny_run):
    work, env, _ = tiny_run
    again = _run(["dvc", "repro"], work, env)
    assert "Running stage" not in again
    status = _run(["dvc", "status"], work, env)
    assert "up to date" in status


def test_push_then_pull_into_a_fresh_clone_restores_checkpoints(tiny_run):
    """The configured remote (a folder beside the checkout) carries the members to a clone."""
    work, env, _ = tiny_run
    _run(["dvc", "push"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], work, env)
    clone = work.parent / "clone"
    _run(["git", "clone", "-q", str(work), str(clone)], work.parent, env)
    assert not (clone / "models").exists()
    _run(["dvc", "pull"], clone, env)
    for seed in (0, 1):
        member = Path("models") / "flla" / f"member_{seed}.pt"
        assert (clone / member).read_bytes() == (work / member).read_bytes()
    status = _run(["dvc", "status"], clone, env)
    assert "up to date" in status


def test_members_trained_in_parallel_are_recorded_as_dvc_records_them(tiny_run, tmp_path):
    """`tracer train-parallel`: two members at once (two CPU slots), then dvc commit; the
    lock then holds the new member files and DVC sees the members up to date."""
    import hashlib

    work, env, _ = tiny_run
    copy = tmp_path / "repo"
    shutil.copytree(work, copy, symlinks=True)
    before = (copy / "models" / "flla" / "member_0.pt").read_bytes()
    out = _run(["tracer", "train-parallel", "train@0", "train@1", "--devices", "cpu", "cpu",
                "--force"], copy, env)  # fmt: skip
    report = json.JSONDecoder().raw_decode(out[out.index("{") :])[0]  # stderr follows
    assert set(report["stages"]) == {"train@0", "train@1"}
    assert all(r["returncode"] == 0 for r in report["stages"].values())
    member = copy / "models" / "flla" / "member_0.pt"
    assert member.read_bytes() != before  # retrained (its timings differ), not just skipped
    lock = (copy / "dvc.lock").read_text()
    assert hashlib.md5(member.read_bytes()).hexdigest() in lock
    status = _run(["dvc", "status", "train@0", "train@1"], copy, env)
    assert "changed" not in status and "modified" not in status
    # up to date now: nothing to run without --force
    out = _run(["tracer", "train-parallel", "train", "--devices", "cpu"], copy, env)
    assert json.JSONDecoder().raw_decode(out[out.index("{") :])[0]["stages"] == {}
    # a stale stage upstream is refused by name, or run first by dvc repro with --upstream
    (copy / "data" / "graphs" / "flla.pt").unlink()
    refused = subprocess.run(["tracer", "train-parallel", "train@0", "--devices", "cpu"],
                             cwd=copy, env=env, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "upstream stages out of date: graphs" in refused.stderr
    out = _run(["tracer", "train-parallel", "--upstream", "train@0", "--devices", "cpu"], copy, env)
    assert (copy / "data" / "graphs" / "flla.pt").exists()
    assert json.JSONDecoder().raw_decode(out[out.index("{") :])[0]["stages"] == {}
