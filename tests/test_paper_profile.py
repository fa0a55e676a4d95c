"""The `paper` profile end to end on fixtures: its data release (JARVIS-DFT 3D 2020-04-26, here a
zip in the release's own format built from real FLLA crystals), its split recipe (80/10/10, seed
42, duplicates grouped) and its settings, with only the model and training sizes cut to the tiny
profile's so that it runs on 2 CPU cores. The commands are the README's for paper scale:
`tracer profile use`, `tracer fetch` (the file is already there: its sha256 is recorded, trust on
first use), `dvc add data/raw`, then `dvc repro` of the stages whose records the paper profile
changes (data, split, the members and baselines, accuracy, transfer); every stage of the
pipeline runs end to end in test_pipeline.py, and the audit is evaluated here in-process."""

import json
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO, jarvis_atoms, write_jarvis_zip
from test_pipeline import _run, copy_checkout

from tracer.audit.evaluate import run_audit
from tracer.audit.runs import RUNS
from tracer.pipeline.config import load_profile

pytestmark = pytest.mark.slow

SIZES = ("gemnet", "train", "ensemble", "baselines", "accuracy", "domain")  # the tiny profile's


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, flla_table, flla_csv):
    work = tmp_path_factory.mktemp("paper") / "repo"
    env = copy_checkout(work)
    paper, tiny = load_profile("paper", REPO), load_profile("tiny", REPO)
    params = {**paper, **{k: tiny[k] for k in SIZES}}
    params["transfer"] = {**paper["transfer"], "fine_tune": tiny["transfer"]["fine_tune"]}
    (work / "profiles" / "paper_fixture.yaml").write_text(
        "# the paper profile with the tiny profile's model and training sizes (test fixture)\n"
        + yaml.safe_dump(params, sort_keys=False)
    )
    rows = flla_table.iloc[:100]
    pairs = enumerate(zip(rows.structure, rows.target, strict=True))
    records = [{"jid": f"JVASP-{k}", "atoms": jarvis_atoms(s), "formation_energy_peratom": float(t),
                "formula": s.composition.reduced_formula} for k, (s, t) in pairs]  # fmt: skip
    records[7]["formation_energy_peratom"] = "na"  # JARVIS's missing value: quarantined by name
    raw = work / "data" / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    write_jarvis_zip(raw / "jdft_3d-4-26-2020.json.zip", records, "jdft_3d-4-26-2020.json")
    # the committed run of record is FLLA's: its analysis reads FLLA from its own folder, not
    # data/raw
    (work / "data" / "gpu_raw").mkdir(parents=True)
    shutil.copy2(flla_csv, work / "data" / "gpu_raw" / flla_csv.name)
    for cmd in (["tracer", "profile", "use", "paper_fixture"], ["tracer", "fetch"],
                ["dvc", "add", "data/raw"]):  # fmt: skip
        _run(cmd, work, env)
    return work, env, _run(["dvc", "repro", "accuracy", "transfer"], work, env)


def test_paper_profile_runs_end_to_end_on_its_release_format(paper_run):
    work, _, _ = paper_run
    name = "jarvis_dft_3d_2020"
    registry = json.loads((work / "data" / "checksums.json").read_text())
    assert "jdft_3d-4-26-2020.json.zip" in json.dumps(registry)  # recorded on first use
    data = json.loads((work / "metrics" / "data.json").read_text())
    assert data["dataset"] == name
    assert data["n_records"] == 100 and data["n_quarantined"] == 1
    assert "JVASP-7" in (work / "data" / "quarantine" / f"{name}.csv").read_text()
    split = json.loads((work / "data" / "splits" / f"{name}.json").read_text())
    assert split["seed"] == 42 and split["fractions"] == [0.8, 0.1, 0.1]
    assert sum(split["sizes"].values()) == 99 and split["leak_check"]["leak_free"]
    acc = json.loads((work / "metrics" / "accuracy.json").read_text())
    assert acc["dataset"] == name and acc["profile"] == "paper_fixture"
    assert {"dummy", "gemnet_t_ensemble", "schnet", "cgcnn"} <= set(acc["models"])
    audit = run_audit(work, runs=[r for r in RUNS if r.name == "cpu_default"])
    sizes = next(r for r in audit["rows"] if r["id"] == "split_sizes")
    assert sizes["runs"]["cpu_default"]["verdict"] == "FAIL"  # 99 records, not the paper's 36,029
    assert sizes["paper_value"] == "28,823 / 3,602 / 3,604"
    transfer = json.loads((work / "metrics" / "transfer.json").read_text())
    assert transfer["dataset"] == "matbench_perovskites"  # the paper's; offline here: NOT RUN
    assert transfer["status"].startswith("NOT RUN") and "matbench" in transfer["status"]
    # the stages run and everything upstream of them are current; data/raw holds the release
    # only (data.dvc unchanged)
    status = subprocess.run(["dvc", "status", "accuracy", "transfer", "data.dvc"], cwd=work,
                            env=paper_run[1], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    assert "changed" not in status, status
    assert sorted(p.name for p in (work / "data" / "raw").iterdir()) == [
        "jdft_3d-4-26-2020.json.zip"
    ]
