"""Meta-RL on two gloo processes: each rank rolls out its share of the meta-batch, and the TRPO
(and PPO) outer step equals one process's on the union of the ranks' tasks (the reference
replays each rank's task and rollout streams in one process and calls ``MAMLTRPO.step`` on
their concatenation)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from metalearn.rl.config import RLRunConfig, apply_rl_overrides
from metalearn.rl.loop import (
    Roller,
    build_env,
    build_rl_algorithm,
    cat_trajectories,
    train_generators,
    train_rl,
)
from metalearn.train.checkpoint import load_checkpoint
from metalearn.train.distributed import setup

WORLD, ITERATIONS = 2, 2


RUNS = {"trpo": ("trpo", "maml"), "ppo": ("ppo", "maml"), "multitask-trpo": ("trpo", "multitask")}
"""Run name -> (outer step, method): the multi-task baseline's TRPO step goes through the same
rank-averaged ``step(..., mean=)`` as MAML-TRPO's."""


def config(run: str) -> RLRunConfig:
    outer, method = RUNS[run]
    return apply_rl_overrides(RLRunConfig(), [f"method={method}",
        "env.horizon=6", f"train.meta_iterations={ITERATIONS}", "train.meta_batch=4", "train.trajectories=3",
        "train.val_tasks=2", "policy.hidden=[8]", "train.tensorboard=false", f"algorithm.outer={outer}",
        "eval.test_tasks=2", "eval.trajectories=3",
        # with the paper's damping 1e-5 the KL's Fisher matrix is so ill-conditioned that 10 CG
        # iterations amplify the float rounding of the all-reduced sums to ~1e-3 in the step;
        # 0.1 keeps the system well-conditioned, so the comparison tests the reduction itself
        "algorithm.cg_damping=0.1"])


def _job(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # one process group for the three runs: train_rl joins it and leaves it open. Creating and
    # destroying a group per run on the same MASTER_PORT races: a rank that finishes first can
    # rendezvous with the other rank's not yet destroyed store and both then hang at a barrier
    ranks, _ = setup(torch.device("cpu"))
    assert ranks.owns_group
    try:
        for run in RUNS:
            train_rl(config(run), Path(out) / run, quiet=True)
    finally:
        ranks.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rl-dist")
    mp.spawn(_job, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.parametrize("run", list(RUNS))
def test_two_ranks_equal_one_process_on_the_union_of_their_tasks(job, run):
    saved = load_checkpoint(job / run / "checkpoints")
    assert saved["step"] == ITERATIONS and len(saved["state"]["generators"]) == WORLD
    cfg = config(run)
    outer = cfg.algorithm.outer
    torch.set_num_threads(1)
    algo = build_rl_algorithm(cfg, build_env(cfg, 1))
    start = {k: v.clone() for k, v in algo.state_dict().items()}
    roll = Roller(cfg, algo.forward_fn)
    opt = torch.optim.Adam(algo.parameters(), lr=cfg.train.outer_lr) if outer == "ppo" else None
    gens = [train_generators(cfg.train.seed, r) for r in range(WORLD)]
    probe = build_env(cfg, 1)
    for _ in range(ITERATIONS):  # rank 0's 2 tasks, then rank 1's, rolled out from their streams
        trains, valids = [], []
        for g in gens:
            tasks = probe.sample_tasks(cfg.train.meta_batch // WORLD, g["tasks"])
            trains.append(roll(algo.policy_params(), tasks, cfg.train.trajectories, g["rollouts"]))
            valids.append(roll(algo.adapt(trains[-1]), tasks, cfg.train.trajectories, g["rollouts"]))
        metrics = algo.step(cat_trajectories(trains), cat_trajectories(valids), optimizer=opt)
    if outer == "trpo":
        assert metrics["step_fraction"] > 0  # a real step was taken
    moved = False
    for key, value in algo.state_dict().items():
        torch.testing.assert_close(saved["state"]["model"][key], value, atol=1e-5, rtol=1e-5)
        moved |= not torch.allclose(value, start[key])
    assert moved
    for r, g in enumerate(gens):  # every rank's streams advanced as in the reference
        for name, state in saved["state"]["generators"][r].items():
            assert torch.equal(state, g[name].get_state()), (r, name)
