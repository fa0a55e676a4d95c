"""Committed run folders packed one archive per folder: ``<folder>.zip`` beside where the folder
was, holding its files under their relative paths, exactly as written.

A run made on a GPU machine leaves one small file per run, fold and epoch history; the committed
copy keeps them in one archive per folder so that ``results/`` stays readable (``unzip -l``
lists it; Python's :mod:`zipfile` reads it). Readers ask for the folder with :func:`unpacked`,
which gives the folder itself when it exists, else the archive extracted into a temporary
folder, so the same code reads a fresh run and a committed one.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIXED_TIME = (2020, 1, 1, 0, 0, 0)
"""Every member's timestamp, so that packing the same files gives the same archive bytes."""


def archive_of(folder: str | Path) -> Path:
    """Where the archive of ``folder`` lives: ``<folder>.zip``."""
    folder = Path(folder)
    return folder.with_name(folder.name + ".zip")


def pack(folder: str | Path, *, remove: bool = False) -> Path:
    """Write ``<folder>.zip`` with every file under ``folder`` (sorted, fixed timestamps,
    deflated); with ``remove``, delete the folder once the archive reads back identical."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no files")
    out = archive_of(folder)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)
    if remove:
        with zipfile.ZipFile(out) as zf:
            for path in files:
                if zf.read(path.relative_to(folder).as_posix()) != path.read_bytes():
                    raise RuntimeError(f"{out}: {path} did not read back identical")
        shutil.rmtree(folder)
    return out


@contextmanager
def unpacked(folder: str | Path) -> Iterator[Path]:
    """The folder to read: ``folder`` itself when it exists, else its archive extracted into a
    temporary folder (removed afterwards). Raises ``FileNotFoundError`` naming both when
    neither exists."""
    folder = Path(folder)
    if folder.is_dir():
        yield folder
        return
    archive = archive_of(folder)
    if not archive.exists():
        raise FileNotFoundError(f"neither {folder} nor {archive} exists")
    with tempfile.TemporaryDirectory(prefix="tracer-unpacked-") as tmp:
        target = Path(tmp) / folder.name
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():  # no member may leave the folder
                if name.startswith("/") or ".." in Path(name).parts:
                    raise ValueError(f"{archive}: member {name!r} points outside the folder")
            zf.extractall(target)
        yield target
