import json
import subprocess
import sys

import torch
from conftest import REPO

from tracer.pipeline.provenance import (
    Timer,
    device_name,
    git_state,
    package_versions,
    provenance,
    write_metrics,
)


def test_provenance_block_has_the_required_keys(tmp_path):
    with Timer() as t:
        pass
    prov = provenance(
        params={"a": 1}, dataset_sha256="d", split_sha256="s", wall_time_s=t.elapsed_s
    )
    for key in (
        "git_commit",
        "params_sha256",
        "dataset_sha256",
        "split_sha256",
        "packages",
        "device",
        "wall_time_s",
    ):
        assert key in prov
    assert prov["device"] == "cpu" or "NVIDIA" in prov["device"] or prov["device"]
    assert "torch" in prov["packages"] and "pymatgen" in prov["packages"]
    path = write_metrics(tmp_path / "m.json", {"x": 1.5}, prov)
    doc = json.loads(path.read_text())
    assert doc["x"] == 1.5 and doc["provenance"]["dataset_sha256"] == "d"


def test_git_state_in_repo_and_outside(tmp_path):
    assert len(git_state(REPO)["git_commit"]) == 40
    assert git_state(tmp_path)["git_commit"] == "unknown"


def test_missing_packages_are_left_out():
    assert package_versions(["definitely-not-installed-xyz"]) == {}


def test_device_is_cpu_without_loading_torch_and_the_card_when_torch_sees_one(monkeypatch):
    code = ("import sys; from tracer.pipeline.provenance import device_name; "
            "print(device_name(), 'torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["cpu", "False"]  # nothing computed on an accelerator, nothing imported
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda k: f"NVIDIA H200 #{k}")
    assert device_name() == "NVIDIA H200 #0"
