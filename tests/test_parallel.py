"""Concurrent stage commands: each sees its own device and a share of the CPU threads (the
end-to-end run with DVC is in test_pipeline)."""

import os

import pytest

from tracer.pipeline.parallel import child_env, resolve_devices


def test_each_command_gets_its_device_and_a_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    base = {"PATH": "/bin"}
    env = child_env("1", 2, base)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["OMP_NUM_THREADS"] == "16"
    assert env["PATH"] == "/bin" and "OMP_NUM_THREADS" not in base
    assert child_env("cpu", 5, base)["CUDA_VISIBLE_DEVICES"] == ""
    assert child_env("0", 5, base)["OMP_NUM_THREADS"] == "6"
    assert child_env("0", 64, base)["OMP_NUM_THREADS"] == "1"
    # a user's own setting is kept
    assert child_env("0", 2, {"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"


def test_auto_means_every_gpu_else_one_cpu_slot_per_core():
    assert resolve_devices(["auto"], gpus=2, cores=16) == ["0", "1"]
    assert resolve_devices(["auto"], gpus=0, cores=2) == ["cpu", "cpu"]
    assert resolve_devices(["auto"], gpus=0, cores=0) == ["cpu"]
    assert resolve_devices(["cpu", "cpu"], gpus=4) == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="auto"):
        resolve_devices(["auto", "0"])
