from tracer.data.table import read_table, table_sha256, write_table
from tracer.data.validation import validate


def test_roundtrip_preserves_structures_and_hash(tmp_path, flla_table):
    clean = validate(flla_table.iloc[:30]).clean
    path = write_table(clean, tmp_path / "t.parquet")
    back = read_table(path)
    assert list(back.id) == list(clean.id)
    assert all(a == b for a, b in zip(back.structure, clean.structure, strict=True))
    assert table_sha256(back) == table_sha256(clean)
    changed = clean.copy()
    changed.loc[0, "target"] += 1e-9
    assert table_sha256(changed) != table_sha256(clean)
    assert "structure" not in read_table(path, structures=False)
