from types import SimpleNamespace

import pytest

from tracer.cli import main
from tracer.commands.data import domain_split


def test_fetch_unknown_source_exits_2(capsys):
    assert main(["fetch", "nope"]) == 2
    assert "unknown data source" in capsys.readouterr().err


def test_fetch_verifies_present_flla(flla_csv, capsys):
    assert main(["fetch", "flla", "--raw-dir", str(flla_csv.parent)]) == 0
    assert "flla_2015.csv" in capsys.readouterr().out


def test_fetch_local_source_needs_nothing(capsys):
    assert main(["fetch", "castelli_local"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out


def test_train_alignn_takes_a_split_or_one_fold_of_a_fold_file():
    base = ["train-alignn", "--structures", "x.pt", "--out", "o", "--recipe", "authors"]
    with pytest.raises(SystemExit, match="give --split, or --folds with --fold"):
        main(base)
    with pytest.raises(SystemExit, match="give --split, or --folds with --fold"):
        main([*base, "--split", "s.json", "--folds", "f.json", "--fold", "0"])
    with pytest.raises(SystemExit, match="--folds needs --fold"):
        main([*base, "--folds", "f.json"])


def test_fit_domain_takes_the_split_or_one_fold_of_a_fold_file():
    split, where = domain_split("data/splits/flla.json", "data/splits/flla_cv5.json", None)
    assert where == {"split": "data/splits/flla.json"} and len(split["test"]) == 395
    run, where = domain_split("data/splits/flla.json", "data/splits/flla_cv5.json", 2)
    assert where == {"split": "data/splits/flla_cv5.json", "fold": 2} and run["fold"] == 2
    assert len(run["test"]) in (787, 788)
    with pytest.raises(ValueError, match=r"fold 5 is not in data/splits/flla_cv5\.json \(5 folds"):
        domain_split("data/splits/flla.json", "data/splits/flla_cv5.json", 5)


@pytest.mark.parametrize(("strained_val", "warned"), [(0.43, True), (0.94, False)])
def test_fit_domain_warns_of_a_domain_weak_on_its_validation_copies(
    tmp_path, monkeypatch, capsys, strained_val, warned
):
    import tracer.commands.data as data

    fitted = SimpleNamespace(members=[tmp_path / "member_0.pt"])

    class Domain:
        def save(self, path):
            path.write_text("fitted")

    record = {"flagged_fraction_test": 0.04, "mae_ratio": 3.0,
              "shift_detection": {"strained": {"flagged_fraction_val": strained_val},
                                  "rattled": {"flagged_fraction_val": 0.97}}}  # fmt: skip
    monkeypatch.setattr(data.Ensemble, "load", staticmethod(lambda *a, **k: fitted))
    monkeypatch.setattr(data, "run_domain_study", lambda *a, **k: (Domain(), record))
    monkeypatch.setattr(data, "read_table", lambda path: None)
    assert main(["fit-domain", "--ensemble", str(tmp_path), "--fold", "4"]) == 0
    err = capsys.readouterr().err
    assert ("only 43% of strained shifted copies (goal 90%)" in err) is warned
    assert "rattled" not in err
    assert (tmp_path / "applicability.pt").read_text() == "fitted"
