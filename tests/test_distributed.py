"""DDP on the CPU (gloo): the ranks' averaged gradient equals one process's gradient of the same
batch, and a run checkpointed by two processes resumes in one."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train import CFG

from tracer.data.validation import validate
from tracer.graphs.dataset import GraphDataset, structures_to_graphs
from tracer.models.registry import build_model
from tracer.training.checkpoints import load_member
from tracer.training.distributed import DataParallel, rank_batches, train_ddp
from tracer.training.normalization import TargetScaler
from tracer.training.settings import TrainConfig
from tracer.training.steps import compiled, weighted_loss
from tracer.training.trainer import predict_normalised, sharded_val_mae, train_member


@pytest.fixture(scope="module")
def small(tmp_path_factory, flla_table):
    clean = validate(flla_table.iloc[:24]).clean
    data = structures_to_graphs(list(clean.id), list(clean.structure), list(clean.target),
                                cutoff=6.0, max_neighbors=8)  # fmt: skip
    path = tmp_path_factory.mktemp("ddp") / "graphs.pt"
    data.save(path)
    ids = list(clean.id)
    return path, {"train": ids[:16], "val": ids[16:20], "test": ids[20:]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip


def _leave() -> None:
    """End a spawned rank once every rank is done: barrier, then exit without the interpreter's
    teardown. Twice in a clean-clone CI run a rank that had finished its work (and whose results
    the test then read) was killed by SIGABRT ("terminate called without an active exception")
    while torch's gloo state was torn down at exit; ``os._exit`` skips that teardown."""
    dist.barrier()  # no rank leaves while another still talks to it
    os._exit(0)


def _gradient(model, data, idx):
    batch, y = data.collate(idx), data.targets(idx).float()
    weighted_loss("l1")(model(batch), y, None).backward()


def _grad_worker(rank, world, port, graphs, out, use_compile=False):
    _env(rank, world, port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    data = GraphDataset.load(graphs)
    torch.manual_seed(0)
    model = build_model(CFG)
    # as tracer.training.distributed does with train.compile: DDP wraps the compiled module
    ddp = torch.nn.parallel.DistributedDataParallel(compiled(model) if use_compile else model)
    _gradient(ddp, data, np.arange(8)[rank * 4 : rank * 4 + 4])  # each rank: half the batch
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out)
    _leave()


@pytest.mark.parametrize("use_compile", [False, True], ids=["eager", "compiled"])
def test_two_gloo_processes_give_the_gradient_of_one(small, tmp_path, use_compile):
    graphs, _ = small
    out = tmp_path / "grads.pt"
    mp.spawn(_grad_worker, args=(2, _free_port(), graphs, out, use_compile), nprocs=2)
    torch.manual_seed(0)
    model = build_model(CFG)
    _gradient(model, GraphDataset.load(graphs), np.arange(8))
    ddp = torch.load(out)
    assert set(ddp) == {n for n, _ in model.named_parameters()}
    scale = max(float(p.grad.abs().max()) for p in model.parameters())
    assert scale > 0
    for name, p in model.named_parameters():  # float32 sums in another order: ~1e-6 relative
        torch.testing.assert_close(ddp[name], p.grad, rtol=1e-5, atol=1e-5 * scale, msg=name)


def _train_worker(rank, world, port, graphs, split, tc, work):
    _env(rank, world, port)
    torch.set_num_threads(1)
    paths = {"work_dir": work / "work", "member_path": work / "member_3.pt"}
    train_ddp(data=GraphDataset.load(graphs), split=split, seed=3, model_config=CFG,
              train_config=tc, **paths)  # fmt: skip
    _leave()


def test_two_processes_checkpoint_and_one_resumes(small, tmp_path):
    graphs, split = small
    one = TrainConfig(max_epochs=1, batch_size=8, scale_fit_batches=1, warmup_epochs=0)
    mp.spawn(_train_worker, args=(2, _free_port(), graphs, split, one, tmp_path), nprocs=2)
    first = torch.load(tmp_path / "work" / "last.pt", weights_only=False)
    assert first["finished"] and first["state"]["history"][0]["processes"] == 2
    row = first["state"]["history"][0]  # the epoch's time and its parts
    assert row["train_s"] > 0 and row["val_s"] > 0
    assert row["train_s"] + row["val_s"] == pytest.approx(row["epoch_time_s"], abs=1e-3)
    # the same run with a longer schedule is another run (the schedule is part of its identity);
    # so resume the 1-epoch run's checkpoint by marking it unfinished under a 2-epoch identity
    two = TrainConfig(max_epochs=2, batch_size=8, scale_fit_batches=1, warmup_epochs=0)
    first["finished"] = False
    first["identity"]["train"]["max_epochs"] = 2
    torch.save(first, tmp_path / "work" / "last.pt")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(key, None)
    summary = train_ddp(data=GraphDataset.load(graphs), split=split, seed=3, model_config=CFG,
                        train_config=two, work_dir=tmp_path / "work",
                        member_path=tmp_path / "member_3.pt")  # fmt: skip
    assert summary["epochs_run"] == 2 and summary["processes"] == 1
    model, _, record = load_member(tmp_path / "member_3.pt")
    assert [h["processes"] for h in record["history"]] == [2, 1]
    assert record["history"][0] == first["state"]["history"][0]  # kept, not redone
    # per-epoch history beside the checkpoint, as the one-GPU trainer writes it
    assert json.loads((tmp_path / "work" / "history.json").read_text()) == record["history"]


def _val_worker(rank, world, port, graphs, n_val, out):
    _env(rank, world, port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    data = GraphDataset.load(graphs)
    torch.manual_seed(0)
    model = build_model(CFG).eval()
    idx = np.arange(len(data))[::-1][:n_val].copy()  # not in dataset order
    y = data.target[torch.as_tensor(idx)].numpy()
    scaler = TargetScaler(mean=-1.0, std=2.0, n_train=16)
    mae = sharded_val_mae(model, data, idx, y, scaler, batch_size=2, device=torch.device("cpu"),
                          strategy=DataParallel(rank, world, torch.device("cpu")))  # fmt: skip
    torch.save(mae, out / f"mae_{rank}.pt")
    _leave()


@pytest.mark.parametrize("n_val", [5, 1])  # shares of 3 and 2; one rank with none
def test_validation_shared_by_two_ranks_gives_one_process_mae(small, tmp_path, n_val):
    graphs, _ = small
    mp.spawn(_val_worker, args=(2, _free_port(), graphs, n_val, tmp_path), nprocs=2)
    data = GraphDataset.load(graphs)
    torch.manual_seed(0)
    model = build_model(CFG).eval()
    idx = np.arange(len(data))[::-1][:n_val].copy()
    pred = TargetScaler(mean=-1.0, std=2.0, n_train=16).inverse(
        predict_normalised(model, data, idx, batch_size=2, device=torch.device("cpu"))
    )
    want = float(np.mean(np.abs(pred - data.target[torch.as_tensor(idx)].numpy())))
    for rank in (0, 1):
        assert torch.load(tmp_path / f"mae_{rank}.pt") == pytest.approx(want, rel=1e-6)


def test_ranks_share_an_epoch_without_overlap():
    idx = np.arange(100, 111)
    edges = np.ones(200, dtype=np.int64)
    parts = [np.concatenate(rank_batches(idx, edges, batch_size=4, rank=r, world=2, seed=0,
                                         epoch=1)) for r in (0, 1)]  # fmt: skip
    assert len(parts[0]) == len(parts[1]) == 6  # 11 padded to 12
    assert set(parts[0]) | set(parts[1]) == set(idx)
    assert all(len(b) <= 2 for r in (0, 1) for b in rank_batches(idx, edges, batch_size=4,
               rank=r, world=2, seed=0, epoch=1))  # fmt: skip
    with pytest.raises(ValueError, match="not divisible"):
        rank_batches(idx, edges, batch_size=5, rank=0, world=2, seed=0, epoch=0)


def test_ranks_deal_out_the_one_process_batches_balanced_by_edges():
    from tracer.graphs.dataset import epoch_batches

    rng = np.random.default_rng(3)
    idx = np.arange(5, 58)  # 53 structures: batches of 8, the last one of 5
    edges = rng.integers(10, 400, size=60)
    one = epoch_batches(idx, edges, batch_size=8, max_edges=None, seed=7, epoch=2)
    assert [list(b) for b in rank_batches(idx, edges, batch_size=8, rank=0, world=1, seed=7,
                                          epoch=2)] == [list(b) for b in one]  # fmt: skip
    for world in (2, 4):
        parts = [rank_batches(idx, edges, batch_size=8, rank=r, world=world, seed=7, epoch=2)
                 for r in range(world)]  # fmt: skip
        assert {len(p) for p in parts} == {len(one)}  # the same number of steps
        for step, batch in enumerate(one):
            got = [parts[r][step] for r in range(world)]
            assert {len(g) for g in got} == {-(-len(batch) // world)}  # equal parts
            union = np.concatenate(got)
            assert set(union) == set(batch)  # the one-process batch, nothing else
            if len(batch) % world == 0:
                assert sorted(union) == sorted(batch)  # no repeats
            loads = [int(edges[g].sum()) for g in got]
            assert max(loads) - min(loads) <= int(edges[batch].max())  # balanced
    tiny = rank_batches(np.array([4]), edges, batch_size=4, rank=3, world=4, seed=0, epoch=0)
    assert [list(b) for b in tiny] == [[4]]  # one structure: every rank repeats it


def test_torchrun_trains_one_member_on_two_processes(tmp_path, flla_table):
    """The command line as a user launches it: torchrun, two CPU processes, the tiny profile."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    from tracer.data.splits import split_sha256
    from tracer.graphs.dataset import save_structure_tensors

    clean = validate(flla_table.iloc[:40]).clean
    structures = save_structure_tensors(tmp_path / "s.pt", list(clean.id), list(clean.structure),
                                        list(clean.target), "eV/atom")  # fmt: skip
    ids = list(clean.id)
    split = tmp_path / "split.json"
    doc = {"train": ids[:32], "val": ids[32:36], "test": ids[36:]}
    split.write_text(json.dumps({**doc, "split_sha256": split_sha256(doc)}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "tracer.cli", "train-ddp", "--structures", str(structures), "--split",
           str(split), "--params", str(REPO / "profiles" / "tiny.yaml"), "--out",
           str(tmp_path / "out"), "--seed", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = json.loads(run.stdout.strip().splitlines()[-1])
    assert printed["processes"] == 2 and np.isfinite(printed["best_val_mae"])
    _, _, record = load_member(tmp_path / "out" / "member_1.pt")
    assert record["summary"]["processes"] == 2 and record["kind"] == "gemnet_t"


def _start(graphs, split, tc, work):
    return mp.start_processes(_train_worker, args=(2, _free_port(), graphs, split, tc, work),
                              nprocs=2, join=False, start_method="spawn")  # fmt: skip


def _kill_after_epoch(context, last, epoch, timeout_s=300.0):
    """SIGKILL both ranks once ``last`` records ``epoch`` finished epochs (and the run is not
    finished); returns the checkpoint's epoch count at the kill."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if last.exists():
            try:
                done = torch.load(last, weights_only=False)["state"]["epoch"]
            except Exception:  # caught between the temporary file and its rename
                done = 0
            if done >= epoch:
                for p in context.processes:
                    p.kill()
                for p in context.processes:
                    p.join()
                return done
        if not any(p.is_alive() for p in context.processes):
            break
        time.sleep(0.02)
    raise AssertionError("the run ended (or hung) before it could be interrupted")


def _weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_killed_two_process_run_resumes_to_the_uninterrupted_member(small, tmp_path):
    """Two gloo ranks trained for 8 epochs, killed (SIGKILL) mid-run and started again, end with
    the same member bit for bit as an uninterrupted run; the same resume with the optimizer's
    moments lost (a broken resume) does not."""
    graphs, split = small
    tc = TrainConfig(max_epochs=8, batch_size=4, scale_fit_batches=1, warmup_epochs=1)
    whole = tmp_path / "whole"
    _start(graphs, split, tc, whole).join()
    cut = tmp_path / "cut"
    killed_at = _kill_after_epoch(_start(graphs, split, tc, cut), cut / "work" / "last.pt", 3)
    ckpt = torch.load(cut / "work" / "last.pt", weights_only=False)
    assert not ckpt["finished"] and 3 <= killed_at < 8
    assert not (cut / "member_3.pt").exists()
    broken = tmp_path / "broken"  # the same checkpoint, its Adam moments zeroed
    (broken / "work").mkdir(parents=True)
    for state in ckpt["optimizer"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            state[key] = torch.zeros_like(state[key])
    torch.save(ckpt, broken / "work" / "last.pt")
    _start(graphs, split, tc, cut).join()
    _start(graphs, split, tc, broken).join()
    ref, resumed, wrong = (_weights(d / "member_3.pt") for d in (whole, cut, broken))
    assert set(ref) == set(resumed)
    for name in ref:
        assert torch.equal(ref[name], resumed[name]), name
    assert any(not torch.equal(ref[n], wrong[n]) for n in ref)
    history = load_member(cut / "member_3.pt")[2]["history"]
    assert [h["epoch"] for h in history] == list(range(8))


def _fit_spy_worker(rank, world, port, graphs, split, tc, work):
    """A DDP rank whose training loop is recorded: which function ran it, with which strategy."""
    import tracer.training.loop as loop
    import tracer.training.trainer as trainer

    def spy(**kw):
        (work / f"fit_{rank}.json").write_text(json.dumps(
            {"fit": f"{loop.fit.__module__}.{loop.fit.__qualname__}",
             "strategy": type(kw["strategy"]).__name__, "world": kw["strategy"].world}))
        return loop.fit(**kw)

    trainer.fit = spy
    _train_worker(rank, world, port, graphs, split, tc, work)


def test_ddp_and_one_process_runs_go_through_the_same_fit(small, tmp_path, monkeypatch):
    import tracer.training.loop as loop
    import tracer.training.trainer as trainer

    graphs, split = small
    tc = TrainConfig(max_epochs=2, batch_size=8, scale_fit_batches=1, warmup_epochs=0,
                     ema_decay=0.9)  # fmt: skip
    mp.spawn(_fit_spy_worker, args=(2, _free_port(), graphs, split, tc, tmp_path / "ddp"),
             nprocs=2)  # fmt: skip
    seen = [json.loads((tmp_path / "ddp" / f"fit_{r}.json").read_text()) for r in (0, 1)]
    assert seen == [{"fit": "tracer.training.loop.fit", "strategy": "DataParallel", "world": 2}] * 2
    calls = []
    monkeypatch.setattr(trainer, "fit", lambda **kw: calls.append(kw["strategy"]) or loop.fit(**kw))
    data = GraphDataset.load(graphs)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    one = {"data": data, "split": split, "seed": 3, "model_config": CFG, "train_config": tc}
    train_ddp(**one, work_dir=tmp_path / "w1", member_path=tmp_path / "ddp1.pt")
    train_member(**one, work_dir=tmp_path / "w0", member_path=tmp_path / "one.pt", device="cpu",
                 progress=False)  # fmt: skip
    assert [type(s).__name__ for s in calls] == ["DataParallel", "Strategy"]
    # one DDP process and the one-process trainer: the same loop, so the same member bit for bit
    a, b = _weights(tmp_path / "ddp1.pt"), _weights(tmp_path / "one.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
