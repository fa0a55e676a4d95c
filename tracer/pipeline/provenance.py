"""Provenance written into every metrics file: code, settings, data, software, device, time."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tracer.pipeline.config import params_sha256

PACKAGES = (
    "tracer-materials",
    "torch",
    "torch_geometric",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "pymatgen",
    "dvc",
    "dvclive",
    "papermill",
    "uncertainty-toolbox",
    "matplotlib",
    "seaborn",
    "alignn",
)
# Paths whose uncommitted edits make a run's code differ from its recorded commit.
SOURCE_PATHS = ("tracer", "dvc.yaml", "params.yaml", "profiles", "notebooks/*.ipynb")


def _git(*args: str, cwd: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(cwd: str | Path = ".") -> dict[str, Any]:
    """Commit hash and whether the pipeline's sources differ from it."""
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    dirty = _git("status", "--porcelain", "--", *SOURCE_PATHS, cwd=cwd)
    return {
        "git_commit": commit or "unknown",
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_name() -> str:
    """The accelerator this process computes on (e.g. ``NVIDIA H100 80GB HBM3``), else
    ``cpu``. A process that has not loaded torch has computed nothing on an accelerator: it is
    ``cpu`` without importing torch (seconds), which the analysis stages never need."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    return "cpu"


def provenance(
    *,
    params: dict[str, Any],
    dataset_sha256: str | None,
    split_sha256: str | None,
    wall_time_s: float,
    device: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``provenance`` block of a metrics file (see ``METRICS.md``)."""
    return {
        **git_state(),
        "params_sha256": params_sha256(params),
        "dataset_sha256": dataset_sha256,
        "split_sha256": split_sha256,
        "packages": package_versions(),
        "python": platform.python_version(),
        "device": device or device_name(),
        "wall_time_s": round(float(wall_time_s), 3),
        "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }


def write_metrics(path: str | Path, metrics: dict[str, Any], prov: dict[str, Any]) -> Path:
    """Write a metrics JSON with its ``provenance`` block (keys sorted, floats as given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**metrics, "provenance": prov}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return path


def _jsonable(obj: Any) -> Any:
    try:

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class Timer:
    """Context manager measuring wall time in seconds (``.elapsed_s``)."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self.elapsed_s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.perf_counter() - self._start

    def now(self) -> float:
        """Seconds since the timer started."""
        return time.perf_counter() - self._start
