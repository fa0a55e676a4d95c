"""Screening new structures: every good file predicted, every bad one named, nothing overwritten,
the API equal for pymatgen and ASE inputs, intervals from the recalibration factor."""

import json

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp import Poscar
from test_train import train_small_members

from tracer.cli import main
from tracer.inference.ensemble import predict_members
from tracer.inference.predict import Z95, Ensemble


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, flla_table):
    out = tmp_path_factory.mktemp("ens")
    train_small_members(out, flla_table, 24, (0, 1))
    (out / "recalibration.json").write_text(json.dumps({"sigma_scale": 2.5}))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory, flla_table):
    d = tmp_path_factory.mktemp("cifs")
    flla_structures = list(flla_table.structure[30:38])  # real FLLA crystals
    for k, s in enumerate(flla_structures[:4]):
        s.to(filename=str(d / f"real_{k}.cif"))
    Poscar(flla_structures[4]).write_file(d / "POSCAR")
    (d / "s5.json").write_text(json.dumps(flla_structures[5].as_dict()))
    from ase.io import write

    plain = [Structure(s.lattice, s.species, s.frac_coords) for s in flla_structures[6:8]]
    write(d / "two.extxyz", [AseAtomsAdaptor.get_atoms(s) for s in plain])
    (d / "broken.cif").write_text("data_broken\n_cell_length_a 3.0\nthis is not a CIF\n")
    Structure(Lattice.cubic(4.0), ["Fe", "Fe"], [[0, 0, 0], [0.01, 0, 0]]).to(
        filename=str(d / "overlap.cif")
    )
    (d / "notes.txt").write_text("not a structure")  # ignored in a folder: unknown suffix
    return d


def test_command_predicts_every_good_file_and_names_every_bad_one(
    tmp_path, ensemble_dir, folder, flla_table, capsys
):
    out = tmp_path / "res.csv"
    rc = main(["predict", str(folder), str(folder / "nothing*.cif"), "-o", str(out),
               "--ensemble", str(ensemble_dir), "--budget", "3"])  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["predicted"] == 8 and summary["errors"] == 3 and summary["sigma_scale"] == 2.5
    assert summary["skipped"] == 1 and summary["files"] == 10  # notes.txt: not a structure
    res = pd.read_csv(out)
    assert sorted(res["id"]) == sorted(["real_0", "real_1", "real_2", "real_3", "POSCAR", "s5",
                                        "two-0", "two-1"])  # fmt: skip
    errors = pd.read_csv(tmp_path / "res.errors.csv")
    reasons = dict(zip(errors["source"].map(lambda s: s.split("/")[-1]), errors["reason"],
                       strict=True))  # fmt: skip
    assert "unreadable" in reasons["broken.cif"] and "overlapping" in reasons["overlap.cif"]
    assert "no such file" in reasons["nothing*.cif"]
    skipped = pd.read_csv(tmp_path / "res.skipped.csv")
    assert list(skipped["source"].map(lambda s: s.split("/")[-1])) == ["notes.txt"]
    assert "not a structure format" in skipped["reason"][0]
    # the numbers are the ensemble's, interval from the recalibration factor
    ens = Ensemble.load(ensemble_dir)
    from tracer.graphs.dataset import structures_to_graphs

    row = res.set_index("id").loc["real_2"]
    data = structures_to_graphs(["x"], [flla_table.structure[32]], None, cutoff=ens.cutoff,
                                max_neighbors=ens.max_neighbors)  # fmt: skip
    ref = predict_members(ens.members, data, np.arange(1), device="cpu")
    assert row["e_form_ev_per_atom"] == pytest.approx(ref["mean"][0], abs=1e-6)  # CIF digits
    half = row["upper95_ev_per_atom"] - row["e_form_ev_per_atom"]
    assert half == pytest.approx(Z95 * 2.5 * ref["std"][0], rel=1e-4)
    assert row["check_with_dft"] == (half > 0.1)  # no applicability domain in this folder
    assert row["interval_method"].startswith("σ-scaling")
    top = pd.read_csv(tmp_path / "res.budget.csv")
    assert list(top["sigma_ev_per_atom"]) == sorted(res["sigma_ev_per_atom"], reverse=True)[:3]
    # never overwritten unless told to
    assert main(["predict", str(folder), "-o", str(out), "--ensemble", str(ensemble_dir)]) == 2
    assert pd.read_csv(out).equals(res)
    (tmp_path / "res.csv").unlink()  # a leftover errors file alone also blocks the run
    assert main(["predict", str(folder), "-o", str(out), "--ensemble", str(ensemble_dir)]) == 2
    assert main(["predict", str(folder), "-o", str(out), "--ensemble", str(ensemble_dir),
                 "--force"]) == 0  # fmt: skip


def test_nothing_predicted_exits_non_zero(tmp_path, ensemble_dir, folder):
    rc = main(["predict", str(folder / "broken.cif"), "-o", str(tmp_path / "r.csv"),
               "--ensemble", str(ensemble_dir)])  # fmt: skip
    assert rc == 1
    assert len(pd.read_csv(tmp_path / "r.csv")) == 0
    assert len(pd.read_csv(tmp_path / "r.errors.csv")) == 1


def test_api_takes_structures_and_ase_atoms_alike(ensemble_dir, flla_structures):
    ens = Ensemble.load(ensemble_dir)
    structures = flla_structures[:3]
    a = ens.predict(structures, device="cpu")
    b = ens.predict([AseAtomsAdaptor.get_atoms(s) for s in structures], device="cpu")
    for key in ("mean", "sigma", "lower", "upper"):
        np.testing.assert_allclose(a[key], b[key], atol=1e-6)
    assert a["members"].shape == (3, 2)
    np.testing.assert_allclose(a["sigma"], a["members"].std(axis=1), atol=1e-9)


def test_compiled_members_predict_as_the_members(ensemble_dir, flla_structures):
    from tracer.graphs.dataset import structure_tensors

    ens = Ensemble.load(ensemble_dir)
    arrays = [structure_tensors(s) for s in flla_structures]
    ids = [str(k) for k in range(len(arrays))]
    plain = ens.predict_arrays(ids, arrays, device="cpu", batch_size=3)
    fused = ens.predict_arrays(ids, arrays, device="cpu", batch_size=3, compile=True)
    np.testing.assert_allclose(fused["members"], plain["members"], atol=1e-5)
    assert len(ens._compiled) == len(ens.members)  # kept for the next call


def test_a_structure_failing_inside_the_model_is_named_and_the_run_goes_on(
    tmp_path, ensemble_dir, folder, monkeypatch
):
    """One structure whose prediction raises (as out of memory would) goes to the errors file
    with the reason; the chunk's other structures are still predicted."""
    import tracer.inference.screening as screening

    real = screening._predict_rows

    def failing(ens, pending, which, threshold, device):
        if "real_1" in [pending.ids[k] for k in which]:
            raise MemoryError("planted")
        return real(ens, pending, which, threshold, device)

    monkeypatch.setattr(screening, "_predict_rows", failing)
    out = tmp_path / "r.csv"
    summary = screening.screen([folder], out, ensemble=ensemble_dir, device="cpu")
    assert summary["predicted"] == 7
    errors = pd.read_csv(tmp_path / "r.errors.csv").set_index("id")
    assert "prediction failed: MemoryError: planted" in errors.loc["real_1", "reason"]
    assert "real_1" not in set(pd.read_csv(out)["id"])


def test_shipped_ensemble_gives_the_gpu_runs_predictions(flla_table):
    """The packaged half-precision members, checked against their manifest, predict the gpu
    run's test structures within 1e-3 eV/atom of the float32 ensemble recorded on the GPU."""
    from tracer.inference.predict import PRETRAINED_DIR

    ens = Ensemble.load()
    assert ens.members[0].parent == PRETRAINED_DIR and len(ens.members) == 5
    calibration = json.loads((PRETRAINED_DIR / "calibration.json").read_text())
    assert ens.interval.factor == calibration["scale_or_quantile"]
    assert ens.interval.method.startswith("split-conformal") and ens.domain is not None
    recorded = pd.read_parquet("results/flla_full/gemnet_t.parquet")
    test = recorded[recorded["set"] == "test"].iloc[::8]  # 50 structures
    structures = flla_table.set_index("id").loc[test["id"], "structure"]
    out = ens.predict(list(structures), list(test["id"]), device="cpu")
    np.testing.assert_allclose(out["mean"], test["mean"], atol=1e-3)
    np.testing.assert_allclose(out["sigma"], test["std"], atol=1e-3)


def test_a_changed_shipped_file_is_refused(tmp_path):
    import shutil

    from tracer.inference.predict import PRETRAINED_DIR

    copy = tmp_path / "ens"
    shutil.copytree(PRETRAINED_DIR, copy)
    Ensemble.load(copy)  # intact: loads
    with open(copy / "member_3.pt", "r+b") as fh:  # one flipped byte
        fh.seek(2000)
        byte = fh.read(1)
        fh.seek(2000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    (copy / "calibration.json").unlink()
    with pytest.raises(ValueError, match=r"calibration.json \(missing\), member_3.pt "
                       r"\(sha256 differs\)"):  # fmt: skip
        Ensemble.load(copy)


def test_command_uses_the_shipped_ensemble_by_default(tmp_path, folder, capsys, monkeypatch):
    """As on a fresh install: no trained models, no metrics, only the package."""
    from tracer.inference.predict import PRETRAINED_DIR

    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(folder), "-o", "res.csv"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["predicted"] == 8 and summary["errors"] == 2
    assert summary["recalibration"] == str(PRETRAINED_DIR / "calibration.json")
    assert summary["interval_method"].startswith("split-conformal")
    res = pd.read_csv(tmp_path / "res.csv")
    assert res["e_form_ev_per_atom"].between(-5, 2).all() and (res["sigma_ev_per_atom"] > 0).all()
    # real FLLA crystals: inside the training domain, unless a check names why not
    assert (res["out_of_domain"] == res["domain_reasons"].notna()).all()


def test_an_isolated_dimer_is_flagged_out_of_domain(tmp_path):
    """A Re2 dimer alone in a 20 Å box: readable and valid, but nothing like a crystal of the
    training set; the shipped domain says so and the row asks for DFT."""
    from pymatgen.core import Lattice, Structure

    from tracer.inference.screening import screen

    Structure(Lattice.cubic(20.0), ["Re", "Re"], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.61]]).to(
        filename=str(tmp_path / "Re2.cif"))  # fmt: skip
    screen([tmp_path / "Re2.cif"], tmp_path / "out.csv", device="cpu")
    row = pd.read_csv(tmp_path / "out.csv").iloc[0]
    assert bool(row["out_of_domain"]) and bool(row["check_with_dft"])
    assert "widest empty slab" in row["domain_reasons"]
