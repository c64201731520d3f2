"""Distributed meta-training on two gloo processes (CPU), started from the tests.

One 2-rank job (``mp.spawn``, module fixture) runs every multi-process check once; the tests
then compare its outputs with single-process references:

- 2 ranks x 16 tasks == 1 process x 32 tasks (meta-gradient of each step, parameters after 3
  steps) for second-order MAML, Reptile and ProtoNet, both with the library's pieces alone and
  through ``train()`` (which also validates on episodes shared out over the ranks);
- a 2-rank run stopped and resumed equals the uninterrupted 2-rank run;
- evaluation shared over 2 ranks == evaluation in one process, episode by episode;

and separate tests check that a rank that raises (or hangs) ends the whole job with an error
under ``torchrun`` and ``mp.spawn``, and that bad distributed settings are refused with the fix.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from metalearn.algorithms.maml import MAML
from metalearn.data import ArrayDataset, SinusoidTasks
from metalearn.data.samplers import EpisodeSampler, FixedEpisodes
from metalearn.eval import EvalResult, evaluate
from metalearn.train.checkpoint import load_checkpoint
from metalearn.train.config import (
    AlgorithmConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from metalearn.train.data import fixed_episodes, train_sampler
from metalearn.train.distributed import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    Ranks,
    backend_for,
    check_meta_batch,
    setup,
    timeout_from_env,
)
from metalearn.train.loop import build_algorithm, train
from metalearn.train.runlog import read_metrics
from metalearn.types import EpisodeBatch

WORLD, META_BATCH, STEPS = 2, 32, 3
MLP_1D = {"in_features": 1, "hidden": [16], "out_features": 1}
SINUSOID = DataConfig(dataset="sinusoid", k_shot=5, n_query=5, val_episodes=5)


def _train_config(**fields) -> TrainConfig:
    base = dict(steps=STEPS, meta_batch=META_BATCH, val_every=STEPS, checkpoint_every=STEPS,
                log_every=1, tensorboard=False, device="cpu")
    return TrainConfig(**{**base, **fields})


def maml2_config(root=None) -> RunConfig:
    return RunConfig("maml2", SINUSOID, ModelConfig("mlp", MLP_1D),
                     AlgorithmConfig("maml", {"inner_lr": 0.01, "inner_steps": 2, "first_order": False,
                                              "task_mode": "loop"}),
                     _train_config())


def reptile_config(root=None) -> RunConfig:
    # plain SGD at lr 1 on the attached gradient theta - theta_new is exactly the Reptile update
    return RunConfig("reptile", SINUSOID, ModelConfig("mlp", MLP_1D),
                     AlgorithmConfig("reptile", {"inner_lr": 0.02, "inner_steps": 3, "outer_lr": 0.5,
                                                 "task_mode": "loop"}),
                     _train_config(optimizer="sgd", lr=1.0))


# ProtoNet's last-layer bias has a gradient that is exactly zero in theory (squared distances
# do not change when every embedding shifts by the same vector) and ~1e-9 rounding noise in
# practice; Adam divides that noise by its own magnitude into steps of size lr, so the ProtoNet
# runs use SGD, which keeps equal gradients equal parameters.
def protonet_blobs_config(root=None) -> RunConfig:  # for the explicit steps on ArrayDataset tasks
    return RunConfig("protonet", DataConfig(dataset="folder", n_way=3, k_shot=2, n_query=3),
                     ModelConfig("mlp", {"in_features": 8, "hidden": [16], "out_features": None}),
                     AlgorithmConfig("protonet", {}), _train_config(optimizer="sgd", lr=0.1))


def protonet_folder_config(root) -> RunConfig:  # train() on a tiny image folder of 8x8 PNGs
    data = DataConfig(dataset="folder", root=str(root), train_split="train", val_split="val",
                      test_split="test", image_size=8, channels=1, n_way=3, k_shot=2, n_query=2,
                      val_episodes=5)
    return RunConfig("protonet", data,
                     ModelConfig("mlp", {"in_features": 64, "hidden": [16], "out_features": None}),
                     AlgorithmConfig("protonet", {}), _train_config(optimizer="sgd", lr=0.1))


def resume_config() -> RunConfig:
    cfg = maml2_config()
    cfg.train = _train_config(steps=4, meta_batch=4, val_every=2, checkpoint_every=2)
    return cfg


EXPLICIT = {"maml2": maml2_config, "reptile": reptile_config, "protonet": protonet_blobs_config}
LOOP = {"maml2": maml2_config, "reptile": reptile_config, "protonet": protonet_folder_config}


def blobs(spread: float = 3.0) -> ArrayDataset:
    """6 Gaussian blobs in 8 dimensions, 10 points each, centres ``spread`` apart (in std)."""
    g = torch.Generator().manual_seed(5)
    centres = spread * torch.randn(6, 8, generator=g)
    x = centres.repeat_interleave(10, 0) + torch.randn(60, 8, generator=g)
    return ArrayDataset(x, np.repeat(np.arange(6), 10))


def task_batches(name: str) -> list[EpisodeBatch]:
    """``STEPS`` batches of ``META_BATCH`` tasks for the explicit equivalence of ``name``."""
    if name == "protonet":
        sampler = EpisodeSampler(blobs(), 3, 2, 3, seed=11)
    else:
        sampler = EpisodeSampler(SinusoidTasks(), None, 5, 5, seed=11)
    return [sampler.sample_batch(META_BATCH) for _ in range(STEPS)]


def meta_steps(cfg: RunConfig, batches: list[EpisodeBatch], ranks: Ranks):
    """The loop's meta-update on this rank's equal share of each batch: gradients and final state."""
    torch.manual_seed(cfg.train.seed)
    algo = build_algorithm(cfg)
    params = [p for p in algo.parameters() if p.requires_grad]
    opt_class = torch.optim.SGD if cfg.train.optimizer == "sgd" else torch.optim.Adam
    opt = opt_class(params, lr=cfg.train.lr)
    grads = []
    for batch in batches:
        share = len(batch) // ranks.world
        loss, _ = algo.meta_loss(batch[ranks.rank * share:(ranks.rank + 1) * share])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ranks.average_gradients(params)
        grads.append([p.grad.clone() for p in params])
        opt.step()
    return grads, algo.state_dict()


def eval_cases():
    """(algorithm, fixed episodes) pairs: regression and classification, odd episode counts
    so that the ranks' shares differ in size."""
    torch.manual_seed(0)
    maml = build_algorithm(maml2_config())
    proto = build_algorithm(protonet_blobs_config())
    return {"maml": (maml, FixedEpisodes(SinusoidTasks(), None, 5, 5, n_episodes=7, seed=3)),
            "protonet": (proto, FixedEpisodes(blobs(0.5), 3, 2, 3, n_episodes=9, seed=4))}


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _job(rank: int, world: int, port: int, out: str) -> None:
    _env(rank, world, port)
    out = Path(out)
    ranks, _ = setup(torch.device("cpu"))
    assert ranks.owns_group and (ranks.rank, ranks.world) == (rank, world)
    try:
        for name, make in EXPLICIT.items():
            grads, state = meta_steps(make(), task_batches(name), ranks)
            if ranks.is_main:
                torch.save({"grads": grads, "state": state}, out / f"{name}-explicit.pt")
        for name, make in LOOP.items():  # train() joins the existing group and leaves it open
            train(make(out / "images"), out / f"{name}-loop", quiet=True)
        cfg = resume_config()
        train(cfg, out / "resume-a", quiet=True)
        train(cfg, out / "resume-b", quiet=True, stop_after=2)  # as if killed after step 2
        train(cfg, out / "resume-b", quiet=True, resume=True)
        for name, (algo, episodes) in eval_cases().items():
            shared = ranks.evaluate(algo, episodes, progress=False)
            alone = evaluate(algo, episodes, progress=False)
            torch.save({"shared": shared.to_dict(), "alone": alone.to_dict()},
                       out / f"eval-{name}-rank{rank}.pt")
    finally:
        ranks.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_splits(root: Path) -> None:
    """train/val/test folders of 4 classes x 6 grey 8x8 PNGs each."""
    rng = np.random.default_rng(0)
    for s, split in enumerate(("train", "val", "test")):
        for c in range(4):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for j in range(6):
                level = 30 + 50 * c + 10 * s
                pixels = np.clip(level + rng.integers(-20, 21, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "L").save(folder / f"{j}.png")


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _image_splits(out / "images")
    mp.spawn(_job, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
    return out


def _close(a, b, atol):
    torch.testing.assert_close(a, b, atol=atol, rtol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPLICIT)
def test_two_ranks_give_the_meta_gradient_and_parameters_of_one_process(job, name):
    saved = torch.load(job / f"{name}-explicit.pt", weights_only=True)
    torch.set_num_threads(1)
    grads, state = meta_steps(EXPLICIT[name](), task_batches(name), Ranks())
    assert len(saved["grads"]) == STEPS
    for step in range(STEPS):
        for g_dist, g_one in zip(saved["grads"][step], grads[step], strict=True):
            _close(g_dist, g_one, 1e-5)
    assert any(g.abs().max() > 1e-3 for g in grads[0])  # a real gradient, not zeros
    assert saved["state"].keys() == state.keys()
    for key, value in state.items():
        _close(saved["state"][key], value, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", LOOP)
def test_train_on_two_ranks_equals_one_process_on_the_union_of_their_tasks(job, name):
    saved = load_checkpoint(job / f"{name}-loop" / "checkpoints")
    assert saved["step"] == STEPS and len(saved["state"]["sampler"]) == WORLD
    cfg = LOOP[name](job / "images")
    torch.set_num_threads(1)
    torch.manual_seed(cfg.train.seed)
    algo = build_algorithm(cfg)
    samplers = [train_sampler(cfg.data, cfg.train.seed, rank=r) for r in range(WORLD)]
    opt_class = torch.optim.SGD if cfg.train.optimizer == "sgd" else torch.optim.Adam
    opt = opt_class(algo.parameters(), lr=cfg.train.lr)
    for _ in range(STEPS):  # each step: rank 0's 16 tasks then rank 1's 16 tasks
        batch = EpisodeBatch.stack([ep for s in samplers for ep in s.sample_batch(META_BATCH // WORLD)])
        loss, _ = algo.meta_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for key, value in algo.state_dict().items():
        _close(saved["state"]["model"][key], value, 1e-5)
    # the validation inside train() was shared over the ranks: it equals the whole fixed set's
    val = [m for m in read_metrics(job / f"{name}-loop" / "metrics.jsonl") if m["kind"] == "val"]
    best = json.loads((job / f"{name}-loop" / "checkpoints" / "best.json").read_text())
    alone = evaluate(algo, fixed_episodes(cfg.data, "val"), progress=False)
    assert len(val) == 1 and val[0]["step"] == STEPS
    assert val[0]["mean"] == pytest.approx(alone.mean, rel=1e-4, abs=1e-6)
    assert best["extra"]["val"]["n"] == cfg.data.val_episodes


@pytest.mark.slow
def test_two_rank_run_resumed_equals_the_uninterrupted_one(job):
    a, b = (load_checkpoint(job / f"resume-{r}" / "checkpoints") for r in "ab")
    assert a["step"] == b["step"] == resume_config().train.steps
    for key, value in a["state"]["model"].items():
        _close(b["state"]["model"][key], value, 1e-6)
    for ra, rb in zip(a["state"]["sampler"], b["state"]["sampler"], strict=True):  # per rank
        assert ra.keys() == rb.keys() and ra["n_sampled"] == rb["n_sampled"] > 0
        assert all(torch.equal(v, rb[k]) if isinstance(v, torch.Tensor) else v == rb[k] for k, v in ra.items())
    losses = [[m["loss"] for m in read_metrics(job / f"resume-{r}" / "metrics.jsonl")
               if m["kind"] == "train"] for r in "ab"]
    assert len(losses[0]) == 4 and losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.slow
def test_a_two_rank_run_resumed_by_one_process_names_the_launch_command(job):
    with pytest.raises(ConfigError, match=r"trained with 2 processes, not 1: .*torchrun --nproc-per-node 2"):
        train(resume_config(), job / "resume-a", resume=True, force=True, quiet=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_evaluation_shared_over_ranks_equals_one_process(job, name):
    results = [torch.load(job / f"eval-{name}-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    alone = EvalResult.from_dict(results[0]["alone"])
    assert alone.n == (7 if name == "maml" else 9)
    for r in results:
        shared = EvalResult.from_dict(r["shared"])
        assert shared.per_episode == alone.per_episode  # same values, same (original) order
        assert (shared.metric, shared.n, shared.mean, shared.ci95) == (alone.metric, alone.n,
                                                                       alone.mean, alone.ci95)
        assert shared.extra.keys() == alone.extra.keys()
        for k, (m, c) in alone.extra.items():
            assert shared.extra[k] == pytest.approx((m, c), rel=1e-9, abs=1e-12)
    if name == "protonet":
        assert alone.extra and alone.ci95 > 0 and all(c > 0 for _, c in alone.extra.values())


# ---------------------------------------------------------------- failures: no hang


FAILING_SCRIPT = """
import json, os, sys, time
from metalearn.algorithms.maml import MAML
from metalearn.train.config import RunConfig
from metalearn.train.loop import train

cfg = RunConfig.from_dict(json.loads(open(sys.argv[1]).read()))
if os.environ["RANK"] == "1":
    meta_loss, calls = MAML.meta_loss, []

    def failing(self, batch):
        calls.append(1)
        if len(calls) == 2:
            if sys.argv[3] == "raise":
                raise RuntimeError("injected failure on rank 1 at step 2")
            time.sleep(600)  # hangs: rank 0 must give up after METALEARN_DIST_TIMEOUT
        return meta_loss(self, batch)

    MAML.meta_loss = failing
train(cfg, sys.argv[2], quiet=True)
"""


def _torchrun(tmp_path: Path, mode: str, timeout_s: float) -> tuple[subprocess.CompletedProcess, float]:
    script, cfg_path = tmp_path / "failing.py", tmp_path / "config.json"
    script.write_text(FAILING_SCRIPT)
    cfg = maml2_config()
    cfg.train = _train_config(steps=5, meta_batch=4)
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "METALEARN_DIST_TIMEOUT": str(timeout_s), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--standalone", str(script), str(cfg_path), str(tmp_path / "run"), mode],
                          capture_output=True, text=True, timeout=90, env=env)
    return proc, time.perf_counter() - start


@pytest.mark.slow
def test_a_rank_that_raises_ends_the_torchrun_job_with_an_error(tmp_path):
    # the timeout is long: the job must end because the failing rank tears its group down
    proc, seconds = _torchrun(tmp_path, "raise", timeout_s=300)
    assert proc.returncode != 0
    assert seconds < 60
    assert "injected failure on rank 1 at step 2" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_a_rank_that_hangs_ends_the_torchrun_job_after_the_timeout(tmp_path):
    proc, seconds = _torchrun(tmp_path, "hang", timeout_s=3)
    assert proc.returncode != 0
    assert seconds < 60
    assert "Timed out waiting 3000ms" in proc.stderr  # rank 0's all-reduce gave up


def _raising_worker(rank: int, world: int, port: int, out: str) -> None:
    _env(rank, world, port)
    if rank == 1:
        def failing(self, batch):
            raise RuntimeError("injected failure on rank 1")
        MAML.meta_loss = failing
    cfg = maml2_config()
    cfg.train = _train_config(steps=5, meta_batch=4)
    train(cfg, out, quiet=True)


@pytest.mark.slow
def test_a_rank_that_raises_ends_an_mp_spawn_job_with_an_error(tmp_path):
    start = time.perf_counter()
    with pytest.raises(mp.ProcessRaisedException, match="injected failure on rank 1"):
        mp.spawn(_raising_worker, args=(WORLD, _free_port(), str(tmp_path / "run")), nprocs=WORLD)
    assert time.perf_counter() - start < 60


# ---------------------------------------------------------------- bad input names the fix


def test_meta_batch_that_the_processes_cannot_share_names_valid_sizes():
    assert check_meta_batch(32, 4) == 8
    with pytest.raises(DistributedError, match=r"meta_batch=30 is not a multiple of 4 processes.*"
                       r"28 or 32, or run 2, 3, 5, 6, 10, 15 or 30 processes"):
        check_meta_batch(30, 4)
    with pytest.raises(DistributedError, match=r"train.meta_batch=4, or run 3 processes"):
        check_meta_batch(3, 4)
    with pytest.raises(DistributedError, match=r"use --set train.meta_batch=24 or 26, or run 5 or 25 processes"):
        check_meta_batch(25, 2)
    with pytest.raises(DistributedError, match=r"or run 2, 3, 4, 5, 6, 8, 10 or 12 \.\.\. processes"):
        check_meta_batch(120, 7)


def test_train_refuses_an_unshareable_meta_batch_before_any_rendezvous(tmp_path, monkeypatch, capsys):
    from metalearn.cli.main import main

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    code = main(["train", "--preset", "maml-sinusoid-5shot", "--set", "train.meta_batch=30",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "use --set train.meta_batch=28 or 32" in err and "Traceback" not in err


def test_world_size_without_master_address_says_to_use_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DistributedError, match=r"MASTER_ADDR and MASTER_PORT are not: launch with "
                                               r"torchrun --nproc-per-node 2"):
        setup(torch.device("cpu"))
    monkeypatch.delenv("RANK")
    with pytest.raises(DistributedError, match="RANK is not set"):
        setup(torch.device("cpu"))


def test_backend_choice_and_nccl_without_cuda(monkeypatch):
    monkeypatch.delenv("METALEARN_DIST_BACKEND", raising=False)
    assert backend_for(torch.device("cpu")) == "gloo"
    monkeypatch.setenv("METALEARN_DIST_BACKEND", "gloo")
    assert backend_for(torch.device("cpu")) == "gloo"
    monkeypatch.setenv("METALEARN_DIST_BACKEND", "nccl")
    with pytest.raises(DistributedError, match="METALEARN_DIST_BACKEND=gloo"):
        backend_for(torch.device("cpu"))  # no CUDA here, or a CPU device on a CUDA machine
    monkeypatch.setenv("METALEARN_DIST_BACKEND", "mpi")
    with pytest.raises(DistributedError, match="not one of auto, gloo, nccl"):
        backend_for(torch.device("cpu"))


def test_timeout_from_the_environment(monkeypatch):
    monkeypatch.delenv("METALEARN_DIST_TIMEOUT", raising=False)
    assert timeout_from_env() == timedelta(seconds=DEFAULT_TIMEOUT_S)
    monkeypatch.setenv("METALEARN_DIST_TIMEOUT", "2.5")
    assert timeout_from_env() == timedelta(seconds=2.5)
    for bad in ("0", "-3", "ten", "nan"):
        monkeypatch.setenv("METALEARN_DIST_TIMEOUT", bad)
        with pytest.raises(DistributedError, match="positive number of seconds"):
            timeout_from_env()


# ---------------------------------------------------------------- the command line under torchrun


@pytest.mark.slow
def test_cli_train_and_eval_under_torchrun(tmp_path, monkeypatch, capsys):
    from metalearn.cli.main import main

    run = tmp_path / "run"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
              "-m", "metalearn.cli"]
    sets = ["train.steps=4", "train.meta_batch=4", "train.val_every=2", "data.val_episodes=5",
            "train.device=cpu", "train.tensorboard=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launch, "train", "--preset", "maml-sinusoid-5shot", "--out", str(run),
                           *(a for s in sets for a in ("--set", s))],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done: 4 steps") == 1  # rank 0 alone prints
    saved = load_checkpoint(run / "checkpoints")
    assert saved["step"] == 4 and len(saved["state"]["sampler"]) == 2

    proc = subprocess.run([*launch, "eval", str(run), "--episodes", "9", "--quiet"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("test: mse") == 1  # rank 0 alone prints (the result, then its mae and rmse)
    shared = json.loads((run / "eval_test.json").read_text())["result"]

    (run / "eval_test.json").unlink()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for var in ("RANK", "WORLD_SIZE"):
            monkeypatch.delenv(var, raising=False)
        assert main(["eval", str(run), "--episodes", "9", "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    alone = json.loads((run / "eval_test.json").read_text())["result"]
    assert shared["n"] == alone["n"] == 9
    assert shared["per_episode"] == alone["per_episode"]
    assert (shared["mean"], shared["ci95"]) == (alone["mean"], alone["ci95"])
