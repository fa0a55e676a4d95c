"""The trainer: resumable to the identical checkpoint, selection on validation only."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from tracer.data.validation import validate
from tracer.graphs.dataset import structures_to_graphs
from tracer.models.gemnet import GemNetTConfig
from tracer.training.checkpoints import load_member
from tracer.training.optim import lr_factor
from tracer.training.settings import TrainConfig
from tracer.training.trainer import predict_normalised, train_member

CFG = GemNetTConfig(
    num_radial=8,
    num_blocks=1,
    emb_size_atom=16,
    emb_size_edge=16,
    emb_size_trip=8,
    emb_size_bil_trip=8,
    emb_size_cbf=8,
    emb_size_rbf=8,
    num_atom=1,
    num_after_skip=1,
    cutoff=6.0,
    max_neighbors=8,
)
TC = TrainConfig(
    max_epochs=4, batch_size=8, lr=2e-3, warmup_epochs=1, patience=10, scale_fit_batches=2
)


def train_small_members(tmp_path, flla_table, n_records, seeds, *, epochs=1, model_config=None,
                        loss="l1"):  # fmt: skip
    """Train tiny members on the first FLLA records (60/20/20 split); return data, split, paths."""
    clean = validate(flla_table.iloc[:n_records]).clean
    data = structures_to_graphs(
        list(clean.id), list(clean.structure), list(clean.target), cutoff=6.0, max_neighbors=8
    )
    ids = list(clean.id)
    a, b = int(0.6 * len(ids)), int(0.8 * len(ids))
    split = {"train": ids[:a], "val": ids[a:b], "test": ids[b:]}
    tc = TrainConfig(max_epochs=epochs, batch_size=8, scale_fit_batches=1, loss=loss)
    paths = []
    for seed in seeds:
        path = tmp_path / f"member_{seed}.pt"
        train_member(
            data=data,
            split=split,
            seed=seed,
            model_config=CFG if model_config is None else model_config,
            train_config=tc,
            work_dir=tmp_path / f"w{seed}",
            member_path=path,
            device="cpu",
            progress=False,
        )
        paths.append(path)
    return data, split, paths


class SimulatedKillError(Exception):
    pass


@pytest.fixture(scope="module")
def data_and_split(flla_table):
    clean = validate(flla_table.iloc[:60]).clean
    targets = clean.target.to_numpy().copy()
    targets[50:] = np.nan  # the test ids have no usable target: training must never read them
    data = structures_to_graphs(
        list(clean.id), list(clean.structure), list(targets), cutoff=6.0, max_neighbors=8
    )
    ids = list(clean.id)
    return data, {"train": ids[:40], "val": ids[40:50], "test": ids[50:]}


def _train(tmp, data, split, train_config=TC, **kw):
    return train_member(
        data=data,
        split=split,
        seed=3,
        model_config=CFG,
        train_config=train_config,
        work_dir=tmp / "work",
        member_path=tmp / "member_3.pt",
        device="cpu",
        progress=False,
        **kw,
    )


@pytest.mark.parametrize(("ema_decay", "noise"), [(None, 0.0), (0.9, 0.0), (0.9, 0.05)])
def test_resume_after_interruption_gives_the_identical_member(
    tmp_path, data_and_split, ema_decay, noise
):
    data, split = data_and_split
    tc = dataclasses.replace(TC, ema_decay=ema_decay, position_noise_angstrom=noise)
    full = _train(tmp_path / "a", data, split, tc)

    def stop_after_second(epoch, metrics):
        if epoch == 1:
            raise SimulatedKillError

    with pytest.raises(SimulatedKillError):
        _train(tmp_path / "b", data, split, tc, on_epoch_end=stop_after_second)
    ckpt = torch.load(tmp_path / "b" / "work" / "last.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 2 and not ckpt["finished"]
    assert (ckpt["ema"] is None) == (ema_decay is None)
    resumed = _train(tmp_path / "b", data, split, tc)
    a = torch.load(tmp_path / "a" / "member_3.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "member_3.pt", weights_only=False)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert {k: v for k, v in full.items() if k != "train_time_s"} == {
        k: v for k, v in resumed.items() if k != "train_time_s"
    }
    hist_a = [{k: v for k, v in h.items() if "time" not in k} for h in a["history"]]
    hist_b = [{k: v for k, v in h.items() if "time" not in k} for h in b["history"]]
    assert hist_a == hist_b


def test_averaged_weights_are_the_ones_validated_and_kept(tmp_path, data_and_split):
    data, split = data_and_split
    tc = dataclasses.replace(TC, ema_decay=0.9, max_epochs=2)
    summary = _train(tmp_path, data, split, tc)
    assert summary["ema_decay"] == 0.9 and summary["cuda_graphs"] is False
    ckpt = torch.load(tmp_path / "work" / "last.pt", weights_only=False)
    record = torch.load(tmp_path / "member_3.pt", weights_only=False)
    raw, averaged = ckpt["model"], ckpt["ema"]["model"]
    if summary["best_epoch"] == 1:  # the last epoch was the best: its averaged weights are kept
        for k in raw:
            assert torch.equal(record["state_dict"][k], averaged[k]), k
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)
    model, scaler, _ = load_member(tmp_path / "member_3.pt")
    idx = data.index_of(split["val"])
    pred = scaler.inverse(predict_normalised(model, data, idx, batch_size=8, device="cpu"))
    y = data.target[torch.as_tensor(idx)].numpy()
    best = record["history"][summary["best_epoch"]]["val_mae"]
    assert float(np.mean(np.abs(pred - y))) == pytest.approx(best, rel=1e-6)


def test_best_epoch_chosen_on_validation_and_test_never_read(tmp_path, data_and_split):
    data, split = data_and_split
    summary = _train(tmp_path, data, split)
    record = torch.load(tmp_path / "member_3.pt", weights_only=False)
    vals = [h["val_mae"] for h in record["history"]]
    assert summary["best_epoch"] == int(np.argmin(vals))
    assert summary["best_val_mae"] == min(vals)
    assert np.isfinite(vals).all()  # NaN test targets never touched the loss or the selection
    # normalisation statistics come from the training ids only
    y_train = data.target[torch.as_tensor(data.index_of(split["train"]))].numpy()
    assert record["scaler"]["mean"] == pytest.approx(y_train.mean())
    assert record["scaler"]["n_train"] == 40
    model, scaler, _ = load_member(tmp_path / "member_3.pt")
    assert scaler.std == pytest.approx(y_train.std())
    assert json.loads((tmp_path / "work" / "history.json").read_text())[0]["epoch"] == 0


def test_finished_or_changed_runs_start_afresh(tmp_path, data_and_split):
    data, split = data_and_split
    _train(tmp_path, data, split)
    first = torch.load(tmp_path / "member_3.pt", weights_only=False)["state_dict"]
    _train(tmp_path, data, split)  # finished checkpoint: trains again from scratch, same result
    again = torch.load(tmp_path / "member_3.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_graph_settings_must_match(tmp_path, data_and_split):
    data, split = data_and_split
    from dataclasses import replace

    with pytest.raises(ValueError, match="max_neighbors"):
        train_member(
            data=data,
            split=split,
            seed=0,
            model_config=replace(CFG, max_neighbors=9),
            train_config=TC,
            work_dir=tmp_path,
            member_path=tmp_path / "m.pt",
            device="cpu",
            progress=False,
        )


def test_lr_schedule():
    f = [lr_factor(s, warmup_steps=10, total_steps=110, final=0.01) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[110] == pytest.approx(0.01)
    assert all(a >= b for a, b in itertools.pairwise(f[10:]))


def test_batches_cut_in_loader_workers_train_the_same_member(tmp_path, data_and_split):
    from dataclasses import replace

    data, split = data_and_split
    out = {}
    for workers in (0, 2):
        cfg = replace(TC, max_epochs=2, loader_workers=workers)
        train_member(
            data=data,
            split=split,
            seed=5,
            model_config=CFG,
            train_config=cfg,
            work_dir=tmp_path / f"w{workers}",
            member_path=tmp_path / f"m{workers}.pt",
            device="cpu",
            progress=False,
        )
        out[workers] = torch.load(tmp_path / f"m{workers}.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(out[0][k], out[2][k]) for k in out[0])


def test_cpu_threads_fix_the_thread_count_whatever_the_process_had(tmp_path, data_and_split):
    """``cpu_threads`` sets torch's threads for a CPU run, so that the run does not depend on the
    machine's cores; it is left alone on CUDA and refuses a count below one."""
    data, split = data_and_split
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        one = TrainConfig(**{**dataclasses.asdict(TC), "max_epochs": 1, "cpu_threads": 1})
        _train(tmp_path / "a", data, split, train_config=one)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        one.apply_threads(torch.device("cuda"))
        assert torch.get_num_threads() == 2
        dataclasses.replace(one, cpu_threads=None).apply_threads(torch.device("cpu"))
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="cpu_threads"):
            dataclasses.replace(one, cpu_threads=0).apply_threads(torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
