"""Pipeline settings: one base (``params.yaml``) and small overlays (``profiles/<name>.yaml``).

``params.yaml`` is the base: the ``default`` profile, the settings ``dvc repro`` reads. A profile
file holds only the keys where that profile differs from the base, under ``overlay_of:
params.yaml``; :func:`load_profile` (and :func:`load_params` given a profile file) merges it onto
the base with :func:`merge_settings`. Switching profile (:func:`use_profile`) writes the merged
settings into ``params.yaml`` and keeps the base in ``.tracer/base-params.yaml`` until the
``default`` profile is used again; a ``params.yaml`` that matches no profile holds the user's own
edits and is never replaced without ``force``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"
PROFILES_DIR = "profiles"
SAVED_BASE = Path(".tracer") / "base-params.yaml"
OVERLAY_KEY = "overlay_of"
DEFAULT = "default"


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping at the top level")
    return data


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read a settings file into a dict; a profile overlay (``overlay_of: params.yaml``) comes
    back merged onto the base of its checkout (the folder above ``profiles/``)."""
    path = Path(path)
    data = _read(path)
    if OVERLAY_KEY not in data:
        return data
    overlay = {k: v for k, v in data.items() if k != OVERLAY_KEY}
    return merge_settings(base_params(path.resolve().parent.parent), overlay)


def merge_settings(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` on top: mappings merge key by key; any other value (a list, a
    scalar, ``null``) replaces the base's, and so does an empty mapping ``{}`` (how an overlay
    clears a mapping of overrides). Neither input is changed."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_variance_head(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` for members with a variance head trained by Gaussian negative log-likelihood
    (deep ensembles proper, the σ study): ``gemnet.variance_head`` on, ``train.loss``
    ``gaussian_nll``; everything else as given."""
    return merge_settings(params, {"gemnet": {"variance_head": True},
                                   "train": {"loss": "gaussian_nll"}})  # fmt: skip


def base_params(root: str | Path = ".") -> dict[str, Any]:
    """The base settings of the checkout at ``root``: ``params.yaml``, or the copy kept while
    another profile is in use (``.tracer/base-params.yaml``)."""
    root = Path(root)
    saved = root / SAVED_BASE
    return _read(saved if saved.exists() else root / PARAMS_FILE)


def load_profile(name: str, root: str | Path = ".") -> dict[str, Any]:
    """The full settings of profile ``name`` (``default``: the base)."""
    if name == DEFAULT:
        return base_params(root)
    return load_params(profile_path(name, root))


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


def profile_names(root: str | Path = ".") -> list[str]:
    """``default`` and every overlay under ``profiles/``."""
    return [DEFAULT, *sorted(p.stem for p in (Path(root) / PROFILES_DIR).glob("*.yaml"))]


def profile_path(name: str, root: str | Path = ".") -> Path:
    """The overlay file of profile ``name``."""
    path = Path(root) / PROFILES_DIR / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"unknown profile {name!r}; known: {profile_names(root)}")
    return path


def active_profile(root: str | Path = ".") -> str | None:
    """Name of the profile whose values equal ``params.yaml``, or ``None`` for custom settings."""
    return matching_profile(load_params(Path(root) / PARAMS_FILE), root)


def matching_profile(params: dict[str, Any], root: str | Path = ".") -> str | None:
    """Name of the profile (under ``root``) whose values equal ``params``, else ``None``."""
    root = Path(root)
    if not (root / PARAMS_FILE).exists() and not (root / SAVED_BASE).exists():
        return None  # no settings of a checkout here to match
    current = params_sha256(params)
    for name in profile_names(root):
        if params_sha256(load_profile(name, root)) == current:
            return name
    return None


def use_profile(name: str, root: str | Path = ".", *, force: bool = False) -> Path:
    """Write profile ``name``'s merged settings into ``params.yaml`` (``default``: the base
    again). The base is kept in ``.tracer/base-params.yaml`` while another profile is in use.
    Refuses (``FileExistsError``) when ``params.yaml`` matches no profile, i.e. holds edits of
    the user's, unless ``force`` is set."""
    root = Path(root)
    settings = load_profile(name, root)  # unknown names fail before anything is written
    target, saved = root / PARAMS_FILE, root / SAVED_BASE
    if target.exists() and not force and active_profile(root) is None:
        raise FileExistsError(
            f"{target} holds settings that match no profile (your edits?); save them as a "
            "profile or pass --force to replace them"
        )
    if name == DEFAULT:
        if saved.exists():
            shutil.move(saved, target)
        return target
    if not saved.exists():
        saved.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, saved)
    header = (f"# TRACER pipeline settings: profile {name!r}, merged onto the base by "
              f"`tracer profile use {name}` (`tracer profile use default` restores the base)\n")
    target.write_text(header + yaml.safe_dump(settings, sort_keys=False))
    return target


def resolved_stages(stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``stages`` of a ``dvc.yaml`` as DVC runs them: a ``foreach`` over a mapping gives one
    stage ``name@key`` with ``${key}`` and ``${item}`` filled in; a ``foreach`` over a list
    (seeds, model names read from the settings) stays one entry, its ``do`` unresolved."""
    out: dict[str, dict[str, Any]] = {}
    for name, stage in stages.items():
        items = stage.get("foreach")
        if not isinstance(items, dict):
            out[name] = stage.get("do", stage)
            continue
        text = json.dumps(stage["do"])
        for key, item in items.items():
            out[f"{name}@{key}"] = json.loads(
                text.replace("${key}", str(key)).replace("${item}", str(item))
            )
    return out
