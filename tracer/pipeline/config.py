"""Pipeline settings: ``params.yaml`` and the profiles under ``profiles/``.

``params.yaml`` is the active profile that ``dvc repro`` uses. ``profiles/<name>.yaml`` hold
complete alternative settings (``default``, ``tiny`` for the end-to-end test, ``gpu``, ``paper``).
Switching profile copies one of them over ``params.yaml``; a ``params.yaml`` that matches no
profile holds the user's own edits and is never replaced without ``force``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "profiles"


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read a params YAML file into a dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping at the top level")
    return data


def params_sha256(params: dict[str, Any]) -> str:
    """Hash of the settings' values (canonical JSON), independent of YAML layout and comments."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def stage_parameters(params: dict[str, Any], sections: list[str]) -> dict[str, Any]:
    """Notebook parameters from the named top-level sections.

    Each section is offered whole under its own name (``gemnet`` → the dict) and flattened as
    ``<section>_<key>``; scalars at the top level (e.g. ``seed``) keep their own name.
    """
    out: dict[str, Any] = {}
    for section in sections:
        if section not in params:
            raise KeyError(f"params has no section {section!r}")
        value = params[section]
        out[section] = value
        if isinstance(value, dict):
            for key, inner in value.items():
                out[f"{section}_{key}"] = inner
    return out


def profile_path(name: str, root: str | Path = ".") -> Path:
    path = Path(root) / PROFILES_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (Path(root) / PROFILES_DIR).glob("*.yaml"))
        raise FileNotFoundError(f"unknown profile {name!r}; known: {known}")
    return path


def active_profile(root: str | Path = ".") -> str | None:
    """Name of the profile whose values equal ``params.yaml``, or ``None`` for custom settings."""
    return matching_profile(load_params(Path(root) / PARAMS_FILE), root)


def matching_profile(params: dict[str, Any], root: str | Path = ".") -> str | None:
    """Name of the profile (under ``root``) whose values equal ``params``, else ``None``."""
    current = params_sha256(params)
    for path in sorted((Path(root) / PROFILES_DIR).glob("*.yaml")):
        if params_sha256(load_params(path)) == current:
            return path.stem
    return None


def use_profile(name: str, root: str | Path = ".", *, force: bool = False) -> Path:
    """Copy ``profiles/<name>.yaml`` over ``params.yaml``.

    Refuses (``FileExistsError``) when ``params.yaml`` matches no profile, i.e. holds edits of the
    user's, unless ``force`` is set.
    """
    root = Path(root)
    source = profile_path(name, root)
    target = root / PARAMS_FILE
    if target.exists() and not force and active_profile(root) is None:
        raise FileExistsError(
            f"{target} holds settings that match no profile (your edits?); save them as a "
            "profile or pass --force to replace them"
        )
    shutil.copyfile(source, target)
    return target
