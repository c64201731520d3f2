"""The MAML-RL baselines: multi-task pretraining, random initialisation and the oracle."""

from __future__ import annotations

import pytest
import torch

from metalearn.rl.baselines import (
    MultiTaskPolicy,
    OraclePolicy,
    RandomInit,
    TaskObservation,
    task_vector,
)
from metalearn.rl.envs import Navigation2D
from metalearn.rl.maml_trpo import MAMLTRPO, MAMLTRPOConfig, meta_iteration
from metalearn.rl.policies import GaussianMLPPolicy
from metalearn.rl.rollout import rollout
from metalearn.rl.types import MetaRLAlgorithm

N_TASKS, N_PER_TASK, HORIZON = 4, 5, 20


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def env():
    return Navigation2D(num_envs=N_TASKS * N_PER_TASK, horizon=HORIZON)


def returns(algo, environment, tasks, seed=200):
    """Mean return before and after one adaptation step, as an evaluation would score it."""
    train = rollout(environment, algo.forward_fn, algo.policy_params(), tasks, N_PER_TASK, g(seed))
    valid = rollout(environment, algo.forward_fn, algo.adapt(train), tasks, N_PER_TASK,
                    g(seed + 1))
    return float(train.returns().mean()), float(valid.returns().mean())


def train(algo, environment, iterations, seed=5):
    gen = g(seed)
    for _ in range(iterations):
        meta_iteration(algo, environment, environment.sample_tasks(N_TASKS, gen), N_PER_TASK, gen)


def make(cls, seed=0, **config):
    torch.manual_seed(seed)
    if cls is OraclePolicy:
        return cls.for_env(env(), MAMLTRPOConfig(**config), hidden=(16,))
    return cls(GaussianMLPPolicy(2, 2, hidden=(16,)), MAMLTRPOConfig(**config))


@pytest.mark.parametrize("cls", [MultiTaskPolicy, RandomInit, OraclePolicy])
def test_interfaces_are_maml_trpos(cls):
    algo = make(cls)
    assert isinstance(algo, MetaRLAlgorithm) and isinstance(algo, MAMLTRPO)
    environment = algo.observe(env()) if cls is OraclePolicy else env()
    tasks = environment.sample_tasks(N_TASKS, g(0))
    metrics = meta_iteration(algo, environment, tasks, N_PER_TASK, g(1))
    assert {"loss_before", "loss_after", "kl_after", "step_fraction", "return_before",
            "return_after"} <= set(metrics)
    assert metrics["kl_after"] < algo.config.max_kl
    trajectories = rollout(environment, algo.forward_fn, algo.policy_params(), tasks, N_PER_TASK,
                           g(2))
    adapted = algo.adapt(trajectories)
    assert len(adapted) == N_TASKS and all(set(p) == set(algo.policy_params()) for p in adapted)


def test_multitask_policy_trains_on_pre_adaptation_returns_and_improves():
    algo = make(MultiTaskPolicy, max_kl=0.05)
    environment = env()
    eval_tasks = environment.sample_tasks(N_TASKS, g(100))
    before, _ = returns(algo, environment, eval_tasks)
    train(algo, environment, 8)
    after, _ = returns(algo, environment, eval_tasks)
    assert after > before


def test_multitask_step_uses_no_inner_loop_but_adapt_does():
    algo = make(MultiTaskPolicy)
    environment = env()
    tasks = environment.sample_tasks(N_TASKS, g(0))
    traj = rollout(environment, algo.forward_fn, algo.policy_params(), tasks, N_PER_TASK, g(1))
    # the surrogate inside step is the plain one: its gradient is the REINFORCE gradient at theta
    tr = traj.task(0)
    with algo._without_inner_loop():
        params = algo.adapt_task(tr)
    assert all(params[k] is v for k, v in algo.policy_params().items())
    adapted = algo.adapt(traj)[0]
    assert any(not torch.equal(adapted[k], v) for k, v in algo.policy_params().items())


def test_random_init_never_changes_but_fine_tuning_improves_the_return():
    algo = make(RandomInit, inner_lr=0.1)
    environment = env()
    start = [p.detach().clone() for p in algo.parameters()]
    train(algo, environment, 2)
    assert all(torch.equal(p, q) for p, q in zip(algo.parameters(), start))
    tasks = environment.sample_tasks(N_TASKS, g(100))
    # three inner steps, each on fresh trajectories of the adapted policy (as the evaluation)
    traj = rollout(environment, algo.forward_fn, algo.policy_params(), tasks, N_PER_TASK, g(10))
    first = float(traj.returns().mean())
    params = [algo.policy_params()] * N_TASKS
    for step in range(3):
        params = [algo.adapt_task(traj.task(k), first_order=True, start=params[k])
                  for k in range(N_TASKS)]
        params = [{n: t.detach() for n, t in p.items()} for p in params]
        traj = rollout(environment, algo.forward_fn, params, tasks, N_PER_TASK, g(11 + step))
    assert float(traj.returns().mean()) > first


def test_oracle_improves_and_beats_the_multitask_policy_on_navigation():
    environment = env()
    eval_tasks = environment.sample_tasks(N_TASKS, g(100))
    oracle = make(OraclePolicy, max_kl=0.05)
    seen = oracle.observe(environment)
    start, _ = returns(oracle, seen, eval_tasks)
    train(oracle, seen, 15)
    oracle_before, oracle_after = returns(oracle, seen, eval_tasks)
    assert oracle_before > start
    assert oracle_after == pytest.approx(oracle_before, rel=0.2)  # no adaptation, new noise only
    multi = make(MultiTaskPolicy, max_kl=0.05)
    train(multi, environment, 15)
    _, multi_after = returns(multi, environment, eval_tasks)
    assert oracle_before > multi_after


def test_task_observation_appends_the_task_and_rejects_non_numeric_tasks():
    wrapped = TaskObservation(Navigation2D(num_envs=2, horizon=3))
    wrapped.reset_task([{"goal": [0.1, 0.2]}, {"goal": [0.3, -0.4]}])
    wrapped.reset(g(0))
    obs, reward, _ = wrapped.step(torch.tensor([[0.1, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(obs, torch.tensor([[0.1, 0.0, 0.1, 0.2], [0.0, 0.0, 0.3, -0.4]]))
    torch.testing.assert_close(reward, -torch.tensor([0.2, 0.5]))
    assert OraclePolicy.observe(wrapped) is wrapped
    with pytest.raises(TypeError, match="numeric tasks"):
        task_vector({"name": "left"})
