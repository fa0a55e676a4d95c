"""Ensemble members trained concurrently, one per GPU, and recorded by DVC exactly as a
sequential ``dvc repro`` records them.

``dvc repro`` runs stages one after another (and holds the repository's lock while it does).
Here the ``train@<seed>`` stages' own commands — as DVC resolves them from ``dvc.yaml`` — run
concurrently, each with ``CUDA_VISIBLE_DEVICES`` naming one device and at most one stage per
device at a time; then ``dvc commit`` writes their outputs' hashes into ``dvc.lock`` and the
cache, as ``dvc repro`` would have. A stage whose upstream stages are out of date is refused
(run ``dvc repro`` on those first), and a stage that is already up to date is skipped unless
``force``. Command line::

    tracer train-parallel train --devices 0 1          # two GPUs, five members: 0,1 then 2,3 then 4
    dvc repro                                           # the rest of the pipeline, members kept

``make all`` runs the training stages of the default profile this way on two CPU slots (one torch
thread each, ``train.cpu_threads``), longest first: on two cores, two one-thread runs side by side
do about 1.3 times the work of one two-thread run (docs/performance.md § The main job on two
cores). The stages are given in the order they should start.

DVC is imported here only (this is a pipeline tool, not the training path).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch


def _stages(root: Path, targets: Sequence[str]) -> list[Any]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [s for t in targets for s in repo.stage.collect(t)]


def stale_upstream(targets: Sequence[str], *, root: str | Path = ".") -> list[str]:
    """The stages upstream of ``targets`` (not among them) that are not up to date."""
    from dvc.repo import Repo

    root = Path(root)
    stages = _stages(root, targets)
    names = {s.addressing for s in stages}
    with Repo(str(root)) as repo:
        changed = set(repo.status(targets=sorted(names), with_deps=True))
    return sorted(changed - names)


def plan(targets: Sequence[str], *, root: str | Path = ".", force: bool = False) -> list[Any]:
    """The stages of ``targets`` to run (all of them with ``force``, else those not up to date);
    ``RuntimeError`` naming the upstream stages that are out of date."""
    from dvc.repo import Repo

    root = Path(root)
    stages = _stages(root, targets)
    names = {s.addressing for s in stages}
    todo = []
    with Repo(str(root)) as repo:
        for stage in stages:
            changed = set(repo.status(targets=[stage.addressing], with_deps=True))
            upstream = sorted(changed - names)
            if upstream:
                raise RuntimeError(
                    f"{stage.addressing}: upstream stages out of date: {', '.join(upstream)} "
                    "(run `dvc repro` on them first)"
                )
            if force or stage.addressing in changed:
                todo.append(stage)
    return todo


def child_env(device: str, slots: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of one stage command: ``CUDA_VISIBLE_DEVICES`` naming its device (empty for
    ``"cpu"``) and, unless already set, ``OMP_NUM_THREADS`` at this machine's cores shared by
    the ``slots`` commands running at once (commands that each start one thread per core
    oversubscribe the CPU, and their CPU-side work slows down many-fold)."""
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(slots, 1))))
    return env


def resolve_devices(devices: Sequence[str], *, gpus: int | None = None,
                    cores: int | None = None) -> list[str]:  # fmt: skip
    """``["auto"]``: one slot per visible GPU, or, without one, one CPU slot per core (each
    stage then runs on one thread); any other list is returned as given. ``gpus`` and
    ``cores`` default to this machine's."""
    if list(devices) != ["auto"]:
        if "auto" in devices:
            raise ValueError(f"'auto' stands alone, not beside other devices: {list(devices)}")
        return list(devices)
    if gpus is None:
        gpus = torch.cuda.device_count()
    if gpus:
        return [str(i) for i in range(gpus)]
    return ["cpu"] * max(1, cores if cores is not None else os.cpu_count() or 1)


def run_parallel(
    targets: Sequence[str],
    devices: Sequence[str],
    *,
    root: str | Path = ".",
    force: bool = False,
    log_dir: str | Path | None = None,
    upstream: bool = False,
) -> dict[str, Any]:
    """Run the stages of ``targets`` (e.g. ``["train"]``: every member) concurrently over
    ``devices`` (CUDA device ids as strings; ``"cpu"`` hides every GPU from that slot;
    ``["auto"]``: :func:`resolve_devices`; each
    command's environment: :func:`child_env`), then ``dvc commit`` them. Each stage's output
    goes to ``<log_dir>/<stage>.log`` (default ``.dvc/tmp/parallel``). With ``upstream``, the
    stale stages upstream of them are first run by ``dvc repro`` (else they are refused).
    Returns per stage its device, wall time (s) and exit code, and the total wall time;
    raises ``RuntimeError`` naming the stages that failed (nothing is then committed)."""
    from dvc.repo import Repo

    devices = resolve_devices(devices)
    if not devices:
        raise ValueError("no devices given")
    root = Path(root)
    if upstream and (before := stale_upstream(targets, root=root)):
        print(f"dvc repro {' '.join(before)} (upstream, one after another)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "dvc", "repro", *before], cwd=root, check=True)
    stages = plan(targets, root=root, force=force)
    logs = Path(log_dir) if log_dir is not None else root / ".dvc" / "tmp" / "parallel"
    logs.mkdir(parents=True, exist_ok=True)
    free: queue.Queue[str] = queue.Queue()
    for dev in devices:
        free.put(dev)

    def run(stage: Any) -> dict[str, Any]:
        dev = free.get()
        env = child_env(dev, len(devices))
        t0 = time.perf_counter()
        log = logs / f"{stage.addressing.replace('@', '_')}.log"
        print(f"{stage.addressing}: started on {dev} (log: {log})", file=sys.stderr, flush=True)
        with log.open("w") as fh:
            rc = subprocess.run(stage.cmd, shell=True, cwd=root, env=env, stdout=fh,
                                stderr=subprocess.STDOUT).returncode  # fmt: skip
        free.put(dev)
        outcome = "done" if rc == 0 else f"FAILED (exit {rc})"
        print(f"{stage.addressing}: {outcome} in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
        return {"device": dev, "wall_s": time.perf_counter() - t0, "returncode": rc,
                "log": str(log)}  # fmt: skip

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        results = dict(zip([s.addressing for s in stages], pool.map(run, stages), strict=True))
    wall = time.perf_counter() - t0
    failed = [name for name, r in results.items() if r["returncode"] != 0]
    if failed:
        raise RuntimeError(f"stages failed (see their logs): {', '.join(failed)}")
    with Repo(str(root)) as repo:
        for name in results:
            repo.commit(name, force=True)
    return {"stages": results, "wall_s": wall, "devices": list(devices)}
