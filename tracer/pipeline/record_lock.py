"""Which code made each committed record: ``records.lock.json``, checkable in a clean checkout.

``git_dirty`` in a record's provenance says only that the working tree had changes. The lock
written here says, for every JSON record a DVC stage writes (``dvc.lock``'s outs, and the JSON
files inside a folder output), the sha256 of
the record and of each dependency of its stage that lives in git (modules, notebooks, settings,
docs; data and models, which a clean checkout lacks, are left out), and the stage's parameter
values. :func:`stale` recomputes them: a record is stale when its code or parameters changed
after the stage last ran, or when the record itself was edited. ``tracer lock-records`` rewrites
the lock after ``dvc repro``; a test fails while any committed record is stale.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

LOCK_FILE = "records.lock.json"


def tracked_files(root: str | Path = ".") -> set[str]:
    """Paths git tracks under ``root`` (relative, POSIX)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return {p for p in out.stdout.decode().split("\0") if p}


def tree_sha256(root: Path, rel: str, tracked: set[str]) -> str | None:
    """sha256 of a tracked file, or of a folder's tracked files (their paths and contents in
    sorted order); None when git tracks nothing there."""
    if rel in tracked:
        return hashlib.sha256((root / rel).read_bytes()).hexdigest()
    inside = sorted(p for p in tracked if p.startswith(rel.rstrip("/") + "/"))
    if not inside:
        return None
    digest = hashlib.sha256()
    for p in inside:
        file = root / p
        if file.is_file():
            digest.update(f"{p}\0".encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def build_lock(root: str | Path = ".") -> dict[str, Any]:
    """The lock for the checkout at ``root``: record path → stage, record sha256, code
    (dependency path → sha256) and params (file → key → value), from ``dvc.lock``."""
    root = Path(root)
    tracked = tracked_files(root)
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    records: dict[str, Any] = {}
    for name, stage in sorted(stages.items()):
        outs = []  # the stage's JSON records: files, or the JSON files of a folder output
        for o in stage.get("outs", []):
            inside = sorted(p for p in tracked if p.startswith(o["path"].rstrip("/") + "/"))
            outs += [p for p in [o["path"], *inside] if p.endswith(".json") and p in tracked]
        if not outs:
            continue
        code = {d["path"]: tree_sha256(root, d["path"], tracked) for d in stage.get("deps", [])}
        code = {k: v for k, v in sorted(code.items()) if v is not None}
        for out in outs:
            records[out] = {
                "stage": name,
                "sha256": hashlib.sha256((root / out).read_bytes()).hexdigest(),
                "code": code,
                "params": stage.get("params", {}),
            }
    return {"what": __doc__.splitlines()[0], "records": records}


def _norm(value: Any) -> Any:
    """Parameters as compared: numbers written as text (DVC writes ``1e-06`` so) as numbers."""
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _params_now(root: Path, params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    now: dict[str, dict[str, Any]] = {}
    for file, keys in params.items():
        doc = yaml.safe_load((root / file).read_text())
        for key in keys:
            value: Any = doc
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            now.setdefault(file, {})[key] = value
    return now


def stale(root: str | Path = ".", lock: dict[str, Any] | None = None) -> list[str]:
    """Every way a committed record differs from the lock: the record edited, a dependency in
    git changed or gone, a parameter changed; empty when all are current."""
    root = Path(root)
    lock = lock or json.loads((root / LOCK_FILE).read_text())
    tracked = tracked_files(root)
    problems = []
    for path, entry in lock["records"].items():
        if not (root / path).is_file():
            problems.append(f"{path}: missing")
            continue
        if hashlib.sha256((root / path).read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"{path}: edited since its stage ({entry['stage']}) wrote it")
        for dep, digest in entry["code"].items():
            if tree_sha256(root, dep, tracked) != digest:
                problems.append(f"{path}: {dep} changed since stage {entry['stage']} ran")
        if _norm(_params_now(root, entry["params"])) != _norm(entry["params"]):
            problems.append(f"{path}: parameters of stage {entry['stage']} changed")
    return problems


def write_lock(root: str | Path = ".") -> Path:
    """Write ``records.lock.json`` for the checkout at ``root``."""
    path = Path(root) / LOCK_FILE
    path.write_text(json.dumps(build_lock(root), indent=1, sort_keys=True) + "\n")
    return path
