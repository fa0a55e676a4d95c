"""The one training loop (tracer.training.loop.fit) on a one-weight model whose validation MAE
is scripted: selection, early stopping, checkpoint contents and what restore accepts."""

import pytest
import torch

from tracer.training.loop import fit, restore, weight_average


def _run(tmp_path, val_maes, *, patience=None, identity="run-a", resumed=None, ema=None,
         model=None, extra=None, on_epoch_end=None):  # fmt: skip
    model = model or torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    epochs = []

    def run_epoch(epoch):
        epochs.append(epoch)
        with torch.no_grad():
            model.weight.fill_(float(epoch))  # the weight says which epoch it is
        if ema is not None:
            ema.update()
        schedule.step()
        return torch.tensor(2.0 * epoch), 2

    def validate(kept):
        return val_maes[epochs[-1]]

    state, best = fit(model=model, optimizer=optimizer, schedule=schedule, run_epoch=run_epoch,
                      validate=validate, max_epochs=len(val_maes), patience=patience,
                      checkpoint=tmp_path / "last.pt", identity=identity, resumed=resumed,
                      ema=ema, extra_state=extra, on_epoch_end=on_epoch_end)  # fmt: skip
    return state, best, epochs, model, optimizer, schedule


def test_best_epoch_is_chosen_on_validation_and_its_weights_kept(tmp_path):
    state, best, epochs, *_ = _run(tmp_path, [0.5, 0.2, 0.3, 0.4])
    assert epochs == [0, 1, 2, 3] and state.best_epoch == 1 and state.best_val_mae == 0.2
    assert float(best["weight"]) == 1.0  # epoch 1's weights, not the last epoch's
    assert [h["train_loss"] for h in state.history] == [0.0, 1.0, 2.0, 3.0]  # sum / count
    assert [h["lr"] for h in state.history] == [0.5, 0.25, 0.125, 0.0625]


def test_patience_stops_the_run_and_the_checkpoint_says_finished(tmp_path):
    state, _, epochs, *_ = _run(tmp_path, [0.5, 0.2, 0.3, 0.4, 0.1, 0.1], patience=2)
    assert epochs == [0, 1, 2, 3] and state.stopped_early  # epoch 4's 0.1 is never reached
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["finished"] and ckpt["state"]["epoch"] == 4 and ckpt["identity"] == "run-a"


def test_restore_takes_only_an_unfinished_checkpoint_of_the_same_run(tmp_path):
    class StopError(Exception):
        pass

    def stop_after(epoch, _row):
        if epoch == 1:
            raise StopError

    with pytest.raises(StopError):
        _run(tmp_path, [0.5, 0.2, 0.3], extra=lambda: {"rng": 7}, on_epoch_end=stop_after)
    model = torch.nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    args = {"model": model, "optimizer": optimizer, "schedule": schedule,
            "device": torch.device("cpu")}  # fmt: skip
    assert restore(tmp_path / "last.pt", "run-b", **args) is None  # another run's
    got = restore(tmp_path / "last.pt", "run-a", **args)
    assert got.state.epoch == 2 and got.extra == {"rng": 7} and float(model.weight) == 1.0
    assert optimizer.param_groups[0]["lr"] == 0.25
    state, best, epochs, *_ = _run(tmp_path, [0.5, 0.2, 0.3], resumed=got, model=model)
    assert epochs == [2] and state.epoch == 3 and float(best["weight"]) == 1.0
    assert restore(tmp_path / "last.pt", "run-a", **args) is None  # finished now


def test_the_weight_average_is_what_is_validated_and_kept(tmp_path):
    model = torch.nn.Linear(1, 1, bias=False)
    ema = weight_average(model, 0.5, None)
    _, best, *_ = _run(tmp_path, [0.3, 0.2], ema=ema, model=model)
    assert float(best["weight"]) == float(ema.model.weight) != float(model.weight)
    assert weight_average(model, None, None) is None
