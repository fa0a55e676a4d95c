"""Concurrent stage commands: each sees its own device and a share of the CPU threads (the
end-to-end run with DVC is in test_pipeline)."""

import os

from tracer.pipeline.parallel import child_env


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
