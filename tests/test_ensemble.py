import numpy as np
import pytest
from test_train import CFG

from tracer.ensemble import ensemble_predictions, member_seed
from tracer.train import TrainConfig, train_member


def test_ensemble_frame(tmp_path, flla_table):
    from tracer.dataset import structures_to_graphs
    from tracer.validation import validate

    clean = validate(flla_table.iloc[:30]).clean
    data = structures_to_graphs(
        list(clean.id), list(clean.structure), list(clean.target), cutoff=6.0, max_neighbors=8
    )
    ids = list(clean.id)
    split = {"train": ids[:20], "val": ids[20:25], "test": ids[25:]}
    tc = TrainConfig(max_epochs=1, batch_size=10, scale_fit_batches=1)
    paths = []
    for seed in (0, 7):
        p = tmp_path / f"member_{seed}.pt"
        train_member(
            data=data,
            split=split,
            seed=seed,
            model_config=CFG,
            train_config=tc,
            work_dir=tmp_path / f"w{seed}",
            member_path=p,
            device="cpu",
            progress=False,
        )
        paths.append(p)
    frame = ensemble_predictions(paths, data, split)
    assert list(frame.columns) == ["id", "set", "y_true", "member_0", "member_7", "mean", "std"]
    assert list(frame.id) == ids[20:] and list(frame.set) == ["val"] * 5 + ["test"] * 5
    m = frame[["member_0", "member_7"]].to_numpy()
    assert np.allclose(frame["mean"], m.mean(1)) and np.allclose(frame["std"], m.std(1))
    assert (frame["std"] > 0).all()
    assert member_seed(paths[1]) == 7
    with pytest.raises(ValueError):
        ensemble_predictions([], data, split)
