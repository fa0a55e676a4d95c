import numpy as np
import pytest
from test_train import train_small_members

from tracer.inference.ensemble import ensemble_predictions, member_seed


def test_ensemble_frame(tmp_path, flla_table):
    data, split, paths = train_small_members(tmp_path, flla_table, 30, (0, 7))
    frame = ensemble_predictions(paths, data, split)
    assert list(frame.columns) == ["id", "set", "y_true", "member_0", "member_7", "mean", "std"]
    assert list(frame.id) == split["val"] + split["test"]
    assert list(frame.set) == ["val"] * len(split["val"]) + ["test"] * len(split["test"])
    m = frame[["member_0", "member_7"]].to_numpy()
    assert np.allclose(frame["mean"], m.mean(1)) and np.allclose(frame["std"], m.std(1))
    assert (frame["std"] > 0).all()
    assert member_seed(paths[1]) == 7
    with pytest.raises(ValueError):
        ensemble_predictions([], data, split)


def test_variance_head_members_give_the_deep_ensemble_sigma(tmp_path, flla_table):
    """Members trained by Gaussian NLL: each one's variance in (eV/atom)² (its standardised
    variance × the target scaler's std²), their mean (aleatoric) and σ_total = √(aleatoric +
    spread²); the screening ensemble refuses such members."""
    import dataclasses

    import torch
    from test_train import CFG

    from tracer.inference.predict import Ensemble
    from tracer.models.gemnet import mean_and_variance
    from tracer.training.checkpoints import load_member
    from tracer.training.trainer import predict_normalised

    config = dataclasses.replace(CFG, variance_head=True)
    data, split, paths = train_small_members(tmp_path, flla_table, 30, (0, 1), model_config=config,
                                             loss="gaussian_nll")  # fmt: skip
    frame = ensemble_predictions(paths, data, split)
    assert list(frame.columns)[3:] == ["member_0", "member_1", "mean", "std", "member_0_var",
                                       "member_1_var", "aleatoric_var", "sigma_total"]  # fmt: skip
    model, scaler, _ = load_member(paths[1], torch.device("cpu"))
    idx = data.index_of(split["val"] + split["test"])
    # the batch size of ensemble_predictions: float32 sums over other batches differ in the
    # last bits on some CPUs (AVX-512), and this compares to 1e-12
    out = predict_normalised(model, data, idx, batch_size=64, device=torch.device("cpu"))
    _, var = mean_and_variance(torch.from_numpy(out))
    np.testing.assert_allclose(frame["member_1_var"], var.numpy() * scaler.std**2, rtol=1e-12)
    aleatoric = frame[["member_0_var", "member_1_var"]].mean(axis=1)
    np.testing.assert_allclose(frame["aleatoric_var"], aleatoric, rtol=1e-12)
    np.testing.assert_allclose(frame["sigma_total"], np.sqrt(aleatoric + frame["std"] ** 2))
    assert (frame["sigma_total"] > frame["std"]).all()
    with pytest.raises(ValueError, match="mixes members"):
        ensemble_predictions([paths[0], train_small_members(
            tmp_path / "plain", flla_table, 30, (2,))[2][0]], data, split)  # fmt: skip
    with pytest.raises(ValueError, match="variance head"):
        Ensemble(members=paths, cutoff=6.0, max_neighbors=8, interval=None)._load_models(
            torch.device("cpu"))
