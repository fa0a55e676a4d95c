"""benchmarks/screen_speed_record.py on made-up runs: the headline run's ratio, each run marked
with how ALIGNN was timed, an unknown headline refused."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(ratio: float, overlapped: bool) -> dict:
    alignn = {"s": 5.0}
    if overlapped:
        alignn.update(overlapped_s=5.0, overlapped_times_s=[5.0, 5.2])
    return {"device": "card", "n_structures": 10, "alignn": alignn,
            "gemnet_t_ensemble": {"times_s": [1.0, 1.1]},
            "ratio_ensemble_over_alignn": ratio}  # fmt: skip


def _record(runs: Path, out: Path, headline: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "benchmarks/screen_speed_record.py", "--runs", str(runs),
         "--headline", headline, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip


def test_record_takes_the_headline_run_and_marks_each_way(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "old.json").write_text(json.dumps(_run(3.1, False)))
    (runs / "new.json").write_text(json.dumps({**_run(2.2, True), "ensemble": {"members": 5}}))
    out = tmp_path / "screen_speed.json"
    assert _record(runs, out, "new").returncode == 0
    got = json.loads(out.read_text())
    assert got["ratio_ensemble_over_alignn_gpu"] == 2.2 and got["target_met"] is False
    assert got["runs"]["old"]["alignn_ways"].startswith("graphs first only")
    assert "overlapped" in got["runs"]["new"]["alignn_ways"]
    assert got["runs"]["new"]["ensemble"] == {"members": 5}  # the members it timed
    assert got["runs"]["old"]["ensemble"].startswith("not recorded")
    assert got["provenance"]["wall_time_s"] == 12.3
    bad = _record(runs, tmp_path / "x.json", "missing")
    assert bad.returncode != 0 and "none of" in bad.stderr
