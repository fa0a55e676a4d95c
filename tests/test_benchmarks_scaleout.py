"""benchmarks/scaleout_record.py on a made-up run folder: which times it divides, and both
layouts (walls of whole commands; older runs without them)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tracer.pipeline.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def _training(path: Path, wall: float, train_s: float, seed: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    record = {"members": {str(seed): {"train_time_s": train_s}}, "wall_time_s": wall}
    (path / "training.json").write_text(json.dumps(record))


def _ddp(run: Path, n: int, batch: int, epoch_s: list[float], val: float, parts: bool = False):
    work = run / f"ddp{n}_b{batch}" / "work" / "member_0"
    work.mkdir(parents=True, exist_ok=True)
    history = [{"epoch_time_s": t, "val_mae": val, "processes": n} for t in epoch_s]
    if parts:  # histories of trainers that time the steps and validation apart
        history = [{**h, "train_s": 0.8 * h["epoch_time_s"], "val_s": 0.2 * h["epoch_time_s"]}
                   for h in history]  # fmt: skip
    (work / "history.json").write_text(json.dumps(history))


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    params = load_params(ROOT / "profiles" / "tiny.yaml")
    run.mkdir()
    (run / "members.yaml").write_text(yaml.safe_dump(params))
    for batch in (8, 16):
        (run / f"ddp_b{batch}.yaml").write_text(yaml.safe_dump(params))
        _ddp(run, 1, batch, [9.0, 2.0, 2.0, 2.2], 0.3)
        _ddp(run, 2, batch, [9.0, 1.0, 1.2, 1.1], 0.31)
    for s in (0, 1):
        _training(run / f"seq{s}", 30.0, 20.0, s)
        _training(run / f"cmd{s}", 31.0, 21.0, s)
    _training(run / "par", 45.0, 22.0, 0)
    scale = {"host_mem_peak_gib_130k": 2.0, "n_structures": 1, "n_edges": 2, "graph_build_s": 3,
             "epoch_s": 4, "peak_rss_gib": {"self": 2.0}}  # fmt: skip
    (tmp_path / "scale_up.json").write_text(json.dumps(scale))
    return run


def _record(run: Path, *extra: str) -> dict:
    out = run.parent / "scaleout.json"
    subprocess.run(
        [sys.executable, "benchmarks/scaleout_record.py", "--run-dir", str(run),
         "--device", "cards", "--scale-up", str(run.parent / "scale_up.json"), "--out", str(out),
         *extra],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return json.loads(out.read_text())


def test_whole_command_walls_give_the_members_ratio(run):
    (run / "walls.json").write_text(
        json.dumps({"sequential_s": 80.0, "concurrent_commands_s": 44.0, "pool_s": 50.0})
    )
    got = _record(run)
    assert got["members_parallel_time_ratio"] == pytest.approx(44.0 / 80.0)
    assert got["members_parallel_speedup"] == pytest.approx(80.0 / 44.0)
    assert got["members_train_time_s"]["parallel"] == [21.0, 21.0]
    # DDP: median epoch after the first, at the largest batch measured
    assert got["ddp_batch"] == 16
    assert got["ddp_epoch_ratio"] == pytest.approx(1.1 / 2.0)
    assert got["ddp_by_batch"]["8"]["best_val_mae"] == {"1": 0.3, "2": 0.31}
    assert got["host_mem_peak_gib_130k"] == 2.0
    assert {"git_commit", "params_sha256", "split_sha256"} <= set(got["provenance"])


def test_runs_without_walls_use_the_pool_and_the_trainers_own_times(run):
    got = _record(run)
    assert got["members_parallel_time_ratio"] == pytest.approx(45.0 / 60.0)
    assert got["walls_s"] is None and got["members_train_time_s"]["parallel"] == [22.0]


def test_ddp_runs_can_come_from_an_earlier_run_of_logs_only(run, tmp_path):
    """Members measured again (``DDP=0``), DDP from an earlier run that kept only its logs."""
    import shutil

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for batch in (8, 16):
        shutil.move(run / f"ddp_b{batch}.yaml", earlier / f"ddp_b{batch}.yaml")
        for n, train_s in ((1, 12.0), (2, 8.0)):
            shutil.rmtree(run / f"ddp{n}_b{batch}")
            summary = {"best_epoch": 3, "best_val_mae": 0.3, "train_time_s": train_s,
                       "processes": n}  # fmt: skip
            (earlier / f"ddp{n}_b{batch}.log").write_text("noise\n" + json.dumps(summary) + "\n")
    (run / "walls.json").write_text(
        json.dumps({"sequential_s": 80.0, "concurrent_commands_s": 60.0, "pool_s": 0.0})
    )
    with pytest.raises(subprocess.CalledProcessError):
        _record(run)  # no DDP runs in the members' run
    got = _record(run, "--ddp-run-dir", str(earlier))
    assert got["members_parallel_time_ratio"] == pytest.approx(0.75)
    assert got["ddp_epoch_ratio"] == pytest.approx(8.0 / 12.0)
    assert got["ddp_by_batch"]["16"]["basis"] == "mean incl. first"
    assert got["run_dirs"] == {"members": str(run), "ddp": str(earlier)}


def test_epoch_parts_are_recorded_where_histories_hold_them(run):
    _ddp(run, 1, 16, [9.0, 2.0, 2.0, 2.2], 0.3, parts=True)
    _ddp(run, 2, 16, [9.0, 1.0, 1.2, 1.1], 0.31, parts=True)
    got = _record(run)["ddp_by_batch"]
    assert got["16"]["train_s"]["1"] == pytest.approx(1.6)
    assert got["16"]["train_s"]["ratio"] == pytest.approx(0.88 / 1.6)
    assert got["16"]["val_s"]["2"] == pytest.approx(0.22)
    assert "train_s" not in got["8"]  # older histories: the epoch only


def test_ddp_on_a_scale_up_and_another_host_are_recorded_beside_flla(run, tmp_path):
    scaled = tmp_path / "scaled"
    scaled.mkdir()
    params = load_params(ROOT / "profiles" / "tiny.yaml")
    for batch in (32, 64):
        (scaled / f"ddp_b{batch}.yaml").write_text(yaml.safe_dump(params))
        _ddp(scaled, 1, batch, [9.0, 4.0, 4.0], 0.3, parts=True)
        _ddp(scaled, 2, batch, [9.0, 2.0, 2.4 if batch == 64 else 3.0], 0.3, parts=True)
    got = _record(run, "--ddp-scaled-run-dir", str(scaled), "--ddp-scaled-data", "x8",
                  "--ddp-device", "other cards")  # fmt: skip
    assert got["device"] == "cards" and got["ddp_device"] == "other cards"
    assert got["ddp_epoch_ratio"] == pytest.approx(1.1 / 2.0)  # FLLA's runs stay the headline
    assert got["ddp_scaled"]["data"] == "x8" and got["ddp_scaled"]["batch"] == 64
    assert got["ddp_scaled"]["epoch_ratio"] == pytest.approx(2.2 / 4.0)
    assert got["ddp_scaled"]["by_batch"]["32"]["ratio"] == pytest.approx(2.5 / 4.0)
    assert got["run_dirs"]["ddp_scaled"] == str(scaled)
    assert _record(run)["ddp_scaled"] is None and _record(run)["ddp_device"] == "cards"
