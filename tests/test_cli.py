from tracer.cli import main


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
    import pytest

    base = ["train-alignn", "--structures", "x.pt", "--out", "o", "--recipe", "authors"]
    with pytest.raises(SystemExit, match="give --split, or --folds with --fold"):
        main(base)
    with pytest.raises(SystemExit, match="give --split, or --folds with --fold"):
        main([*base, "--split", "s.json", "--folds", "f.json", "--fold", "0"])
    with pytest.raises(SystemExit, match="--folds needs --fold"):
        main([*base, "--folds", "f.json"])
