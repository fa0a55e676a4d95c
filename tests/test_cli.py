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


@pytest.mark.parametrize(("strained_val", "accept_weak", "rc"),
                         [(0.943, False, 0), (0.929, False, 3), (0.929, True, 0)])  # fmt: skip
def test_fit_domain_refuses_a_domain_weak_on_its_validation_copies(
    tmp_path, monkeypatch, capsys, strained_val, accept_weak, rc
):
    import tracer.commands.data as data

    fitted = SimpleNamespace(members=[tmp_path / "member_0.pt"])

    class Domain:
        def save(self, path):
            path.write_text("fitted")

    # 394 validation structures: accepted from 0.9 + 2 * sqrt(0.09 / 394) = 93.0%
    record = {"flagged_fraction_test": 0.04, "mae_ratio": 3.0, "n_val": 394,
              "min_detection_val_to_accept": 0.9302,
              "shift_detection": {"strained": {"flagged_fraction_val": strained_val},
                                  "rattled": {"flagged_fraction_val": 0.97}}}  # fmt: skip
    monkeypatch.setattr(data.Ensemble, "load", staticmethod(lambda *a, **k: fitted))
    monkeypatch.setattr(data, "run_domain_study", lambda *a, **k: (Domain(), record))
    monkeypatch.setattr(data, "read_table", lambda path: None)
    args = ["fit-domain", "--ensemble", str(tmp_path), "--fold", "4"]
    assert main(args + ["--accept-weak"] * accept_weak) == rc
    err = capsys.readouterr().err
    assert ("only 92.9% of strained shifted copies" in err) is (strained_val < 0.93)
    assert "rattled" not in err
    assert ("refused" in err) is (rc == 3)
    written = (tmp_path / "applicability.pt").exists(), (tmp_path / "ood.json").exists()
    assert written == ((rc == 0),) * 2  # a refused fit writes nothing


def test_fit_domain_passes_its_validation_budget_and_refuses_one_that_is_no_fraction(
    tmp_path, monkeypatch, capsys
):
    import tracer.commands.data as data

    seen = {}

    def study(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)  # stop before any fit: only the arguments are under test

    monkeypatch.setattr(data.Ensemble, "load", staticmethod(lambda *a, **k: SimpleNamespace(
        members=[tmp_path / "member_0.pt"])))  # fmt: skip
    monkeypatch.setattr(data, "run_domain_study", study)
    monkeypatch.setattr(data, "read_table", lambda path: None)
    base = ["fit-domain", "--ensemble", str(tmp_path), "--fold", "4"]
    with pytest.raises(SystemExit):
        main(base)
    assert seen["max_val_flagged"] == 0.04 and seen["design"] == "tied"
    with pytest.raises(SystemExit):
        main([*base, "--max-val-flagged", "0.035"])
    assert seen["max_val_flagged"] == 0.035
    for bad in ("4", "0", "1"):
        with pytest.raises(SystemExit) as stop:
            main([*base, "--max-val-flagged", bad])
        assert stop.value.code == 2
        assert f"{bad} is not a fraction between 0 and 1" in capsys.readouterr().err
