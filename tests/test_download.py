import hashlib
import io
import json
import tarfile

import pytest

from tracer.data.download import (
    ChecksumError,
    ChecksumRegistry,
    DataUnavailableError,
    Location,
    RawFile,
    fetch,
    sha256_file,
)

PAYLOAD = b"material_id,target\nmp-1,0.5\n"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _tar_with_member(path, member, data):
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(PAYLOAD)
    assert sha256_file(p) == SHA


def test_fetch_rejects_mismatch_then_takes_archive_member(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_bytes(PAYLOAD + b"tampered\n")
    archive = _tar_with_member(tmp_path / "pkg.tar.gz", "pkg/data.csv", PAYLOAD)
    raw = RawFile(
        "data.csv",
        SHA,
        (Location(wrong.as_uri()), Location(archive.as_uri(), member="pkg/data.csv")),
    )
    out = fetch(raw, tmp_path / "raw")
    assert out.read_bytes() == PAYLOAD


def test_fetch_only_bad_checksum_raises_and_writes_nothing(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_bytes(b"other")
    raw = RawFile("data.csv", SHA, (Location(wrong.as_uri()),))
    with pytest.raises(DataUnavailableError, match=r"does not match|!= expected"):
        fetch(raw, tmp_path / "raw")
    assert not (tmp_path / "raw" / "data.csv").exists()


def test_offline_error_names_file_locations_and_remedy(tmp_path):
    raw = RawFile(
        "data.csv",
        SHA,
        (Location((tmp_path / "absent").as_uri(), description="mirror"),),
        how_to_supply="Ask a colleague.",
    )
    with pytest.raises(DataUnavailableError) as err:
        fetch(raw, tmp_path / "raw")
    msg = str(err.value)
    assert "data.csv" in msg and "mirror" in msg and SHA in msg and "Ask a colleague" in msg


def test_present_file_with_wrong_checksum_is_not_replaced(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "data.csv").write_bytes(b"user's own file")
    good = tmp_path / "good.csv"
    good.write_bytes(PAYLOAD)
    raw = RawFile("data.csv", SHA, (Location(good.as_uri()),))
    with pytest.raises(ChecksumError):
        fetch(raw, raw_dir)
    assert (raw_dir / "data.csv").read_bytes() == b"user's own file"


def test_trust_on_first_use_registry(tmp_path):
    src = tmp_path / "src.zip"
    src.write_bytes(PAYLOAD)
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    raw = RawFile("release.zip", None, (Location(src.as_uri()),))
    fetch(raw, tmp_path / "raw", registry=registry)
    assert json.loads((tmp_path / "checksums.json").read_text()) == {"release.zip": SHA}
    # a later download with other bytes is rejected
    (tmp_path / "raw" / "release.zip").unlink()
    src.write_bytes(b"changed upstream")
    with pytest.raises(DataUnavailableError, match="rejected"):
        fetch(raw, tmp_path / "raw", registry=registry)


def test_registry_refuses_to_overwrite(tmp_path):
    registry = ChecksumRegistry(tmp_path / "c.json")
    registry.record("a", "1" * 64)
    registry.record("a", "1" * 64)
    with pytest.raises(ChecksumError):
        registry.record("a", "2" * 64)


def test_tests_on_the_real_flla_file_are_marked_network(request, flla_csv):
    assert request.node.get_closest_marker("network") is not None
    assert flla_csv.name == "flla_2015.csv"
