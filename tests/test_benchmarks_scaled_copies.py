"""benchmarks/scaled_copies.py: jittered copies keep their set, cells and targets; the split it
writes passes the split checks."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from tracer.data.splits import load_split, split_sha256
from tracer.graphs.dataset import FORMAT_VERSION, load_structure_tensors

ROOT = Path(__file__).resolve().parents[1]


def test_copies_keep_their_set_cell_and_target(tmp_path):
    ids = ["a", "b", "c"]
    z = [torch.tensor([3, 9]), torch.tensor([11, 17]), torch.tensor([26])]
    pos = [torch.rand(len(x), 3, dtype=torch.float64) * 3 for x in z]
    cell = [torch.eye(3, dtype=torch.float64) * 4 for _ in z]
    payload = {"format_version": FORMAT_VERSION, "ids": ids, "targets": [-1.0, -2.0, 0.5],
               "unit": "eV/atom", "z": z, "pos": pos, "cell": cell}  # fmt: skip
    torch.save(payload, tmp_path / "s.pt")
    doc = {"method": "random", "train": ["a", "b"], "val": ["c"], "test": []}
    doc["split_sha256"] = split_sha256(doc)
    (tmp_path / "split.json").write_text(json.dumps(doc))
    subprocess.run(
        [sys.executable, "benchmarks/scaled_copies.py", "--structures", str(tmp_path / "s.pt"),
         "--split", str(tmp_path / "split.json"), "--copies", "3", "--jitter", "0.05",
         "--out", str(tmp_path / "x.pt"), "--split-out", str(tmp_path / "x.json")],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    got = load_structure_tensors(tmp_path / "x.pt")
    split = load_split(tmp_path / "x.json")  # its hash matches its id lists
    assert len(got["ids"]) == 9 and len(set(got["ids"])) == 9
    assert sorted(split["train"]) == sorted(f"{i}~{k}" for i in "ab" for k in range(3))
    assert split["val"] == ["c~0", "c~1", "c~2"] and split["test"] == []
    assert split["sizes"] == {"train": 6, "val": 3, "test": 0}
    for rid, t, p, c, zz in zip(got["ids"], got["targets"], got["pos"], got["cell"], got["z"],
                                strict=True):  # fmt: skip
        i = ids.index(rid.split("~")[0])
        assert t == [-1.0, -2.0, 0.5][i] and torch.equal(c, cell[i]) and torch.equal(zz, z[i])
        shift = (p - pos[i]).abs()
        assert 0 < shift.max() < 0.5  # jittered, by about 0.05 Å
