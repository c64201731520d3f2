"""Two gloo processes on the CPU: tasks are sharded over ranks and meta-gradients averaged."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from metalearn.train.checkpoint import load_checkpoint
from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from metalearn.train.data import train_sampler
from metalearn.train.loop import build_algorithm, train
from metalearn.types import EpisodeBatch


def config() -> RunConfig:
    return RunConfig(
        name="ddp",
        data=DataConfig(dataset="sinusoid", k_shot=5, n_query=5, val_episodes=2),
        model=ModelConfig("mlp", {"in_features": 1, "hidden": [16], "out_features": 1}),
        algorithm=AlgorithmConfig("maml", {"inner_lr": 0.01, "task_mode": "loop"}),
        train=TrainConfig(steps=3, meta_batch=4, val_every=3, checkpoint_every=3, log_every=1,
                          tensorboard=False, device="cpu"),
    )


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(config(), run_dir, quiet=True)


@pytest.mark.slow
def test_two_ranks_equal_one_process_on_the_same_tasks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path / "run")), nprocs=2, join=True)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints")
    assert saved["step"] == 3 and len(saved["state"]["sampler"]) == 2

    # reference: one process, each step the union of both ranks' tasks (2 per rank)
    cfg = config()
    torch.manual_seed(cfg.train.seed)
    algo = build_algorithm(cfg)
    samplers = [train_sampler(cfg.data, cfg.train.seed, rank=r) for r in (0, 1)]
    opt = torch.optim.Adam(algo.parameters(), lr=cfg.train.lr)
    for _ in range(3):
        batch = EpisodeBatch.stack([ep for s in samplers for ep in s.sample_batch(2)])
        loss, _ = algo.meta_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, value in algo.state_dict().items():
        torch.testing.assert_close(saved["state"]["model"][name], value, atol=1e-6, rtol=1e-5)
