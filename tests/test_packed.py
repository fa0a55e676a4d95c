"""Committed run folders as one archive each: packing keeps every file's bytes, is reproducible,
and a reader gets the same folder from the archive as from the files."""

import zipfile

import pytest

from tracer.pipeline.packed import archive_of, pack, unpacked


def _folder(tmp_path):
    run = tmp_path / "runs"
    (run / "fold_0" / "histories").mkdir(parents=True)
    (run / "fold_0" / "a.json").write_text('{"mae": 0.1}\n')
    (run / "fold_0" / "histories" / "a.json").write_bytes(b"[1, 2]")
    (run / "zero_shot.parquet").write_bytes(bytes(range(256)))
    return run


def test_packing_keeps_every_file_and_the_reader_sees_the_same_folder(tmp_path):
    run = _folder(tmp_path)
    files = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with unpacked(run) as d:  # the folder itself while it exists
        assert d == run
    archive = pack(run, remove=True)
    assert archive == archive_of(run) == tmp_path / "runs.zip" and not run.exists()
    with unpacked(run) as d:
        assert {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()} == files
    assert not d.exists()  # the temporary copy is gone afterwards


def test_packing_twice_gives_the_same_bytes(tmp_path):
    run = _folder(tmp_path)
    first = pack(run).read_bytes()
    assert pack(run).read_bytes() == first


def test_missing_folder_and_archive_and_a_member_leaving_the_folder_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither"), unpacked(tmp_path / "nothing"):
        pass
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(ValueError, match="outside"), unpacked(tmp_path / "evil"):
        pass
    with pytest.raises(FileNotFoundError, match="not a folder"):
        pack(tmp_path / "nothing")
