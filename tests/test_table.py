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


def test_hash_reads_the_data_not_the_values_pymatgen_derives(tmp_path, flla_table):
    import json

    import pandas as pd

    from tracer.data.table import HASH_DECIMALS, canonical_structure

    clean = validate(flla_table.iloc[:3]).clean
    path = write_table(clean, tmp_path / "t.parquet")
    stored = json.loads(pd.read_parquet(path)["structure"][0])
    assert "xyz" not in stored["sites"][0] and "volume" not in stored["lattice"]
    text = json.dumps(clean.structure[0].as_dict())

    def edited(edit) -> str:
        d = json.loads(text)
        edit(d)
        return canonical_structure(json.dumps(d))

    def derived(d):  # another CPU's last bits in the Cartesian coordinates and lattice lengths
        d["sites"][0]["xyz"][0] += 1e-15
        d["lattice"]["a"] += 1e-14

    def below_precision(d):
        d["sites"][0]["abc"][0] += 10.0 ** -(HASH_DECIMALS + 4)

    def moved(d):
        d["sites"][0]["abc"][0] += 1e-6

    def other_element(d):
        d["sites"][0]["species"][0]["element"] = "Po"

    base = canonical_structure(text)
    assert edited(derived) == base and edited(below_precision) == base
    assert edited(moved) != base and edited(other_element) != base
    assert canonical_structure(clean.structure[0]) == base  # a Structure or its JSON alike
