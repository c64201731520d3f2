"""Meta-World ML1 (Yu et al. 2019) as a :class:`~metalearn.rl.types.VectorTaskEnv` (needs ``pip
install 'metalearn[metaworld]'``).

ML1 is one Sawyer-arm manipulation task (``reach-v3``, ``push-v3``, ``pick-place-v3``, ... any
of ``metaworld.ML1.ENV_NAMES``) whose tasks are goal positions: ``metaworld.ML1(name, seed=)``
draws 50 training goals (``ml1.train_tasks``) and 50 held-out test goals (``ml1.test_tasks``,
drawn with ``seed + 1``), and ``env.set_task(task)`` puts one into an environment. The goal is
not in the 39-d observation (ML1 is partially observable): the policy must find it from the
reward. Actions are ``Box(-1, 1, (4,))`` (end-effector displacement and gripper).

How metalearn uses it:

* A task is a JSON-able dict ``{"ml1": "reach-v3", "split": "train", "index": 7}``: goal 7 of
  the training list. :meth:`MetaWorldML1.sample_tasks` draws from ``train_tasks`` (meta-training
  and validation), :meth:`MetaWorldML1.sample_test_tasks` from ``test_tasks`` (the test tasks of
  ``metalearn eval``, :func:`metalearn.rl.evaluate.test_tasks`): the ML1 protocol of held-out
  goals.
* The goal lists are fixed by ``ML1(name, seed=ML1_SEED)`` with ``ML1_SEED = 0``, so the same
  ``index`` is the same goal in every run and on every machine.
* The horizon is 150 steps by default (our choice, for the CPU budget; Meta-World's own limit,
  ``SawyerXYZEnv.max_path_length``, is 500 and a longer horizon is refused).
* Actions are clipped to ``[-1, 1]`` before stepping (Meta-World's action space); the rollout
  keeps the sampled, unclipped action for the policy gradient.
* ``info["success"]`` is kept per environment in :attr:`MetaWorldML1.success` (whether the
  episode has succeeded at some step since its reset); the rollout records it in
  :attr:`~metalearn.rl.types.Trajectories.success`.
* The oracle baseline sees the goal position: :meth:`MetaWorldML1.task_vector`.

The ``num_envs`` environments are a plain list stepped in turn (each needs its own
``set_task``); one ML1 benchmark (about 3 s to build) is shared by every environment of a name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from metalearn._lazy import require
from metalearn.rl.envs import check_horizon, tasks_per_env
from metalearn.rl.types import Task

ML1_SEED = 0
"""Seed of ``metaworld.ML1(name, seed=ML1_SEED)``: it fixes the 50 training and 50 test goals."""

SPLITS = ("train", "test")


@functools.cache
def ml1_benchmark(name: str, seed: int = ML1_SEED):
    """The ``metaworld.ML1`` benchmark of task ``name`` (built once per process).

    Raises:
        ImportError: metaworld is not installed (naming the pip command).
        ValueError: ``name`` is no Meta-World v3 task (naming the available ones).

    Examples:
        >>> import pytest; _ = pytest.importorskip("metaworld")
        >>> ml1 = ml1_benchmark("reach-v3")
        >>> len(ml1.train_tasks), len(ml1.test_tasks)
        (50, 50)
    """
    metaworld = require("metaworld", "metaworld")
    if name not in metaworld.ML1.ENV_NAMES:
        raise ValueError(f"{name!r} is no Meta-World v3 task; available (as env.name=ml1-<task>): "
                         f"{', '.join(sorted(metaworld.ML1.ENV_NAMES))}")
    return metaworld.ML1(name, seed=seed)


class MetaWorldML1:
    """``num_envs`` environments of one Meta-World ML1 task, stepped in turn, on tensors.

    Args:
        name: The Meta-World v3 task, e.g. ``"reach-v3"``.
        num_envs: Number of environments.
        horizon: Steps per episode (150; at most Meta-World's ``max_path_length``, 500).
        seed: Seed of the ML1 goal lists (``ML1_SEED``; change it only to study other goals).

    Raises:
        ImportError: metaworld is not installed.
        ValueError: an unknown task, or a horizon outside ``1..max_path_length``.

    Examples:
        >>> import pytest; _ = pytest.importorskip("metaworld")
        >>> env = MetaWorldML1("reach-v3", num_envs=2, horizon=10)
        >>> tasks = env.sample_tasks(2, torch.Generator().manual_seed(0))
        >>> [t["split"] for t in tasks], env.sample_test_tasks(1, torch.Generator())[0]["split"]
        (['train', 'train'], 'test')
        >>> env.reset_task(tasks)
        >>> obs = env.reset(torch.Generator().manual_seed(1))
        >>> obs, reward, done = env.step(torch.zeros(2, 4))
        >>> tuple(obs.shape), tuple(reward.shape), done.tolist(), env.task_vector(tasks[0]).shape
        ((2, 39), (2,), [False, False], torch.Size([3]))
    """

    def __init__(self, name: str = "reach-v3", num_envs: int = 1, horizon: int = 150,
                 seed: int = ML1_SEED):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.name, self.seed = name, int(seed)
        self.benchmark = ml1_benchmark(name, self.seed)
        self.num_envs = int(num_envs)
        self.envs = [self.benchmark.train_classes[name]() for _ in range(self.num_envs)]
        limit = int(self.envs[0].max_path_length)
        self.horizon = check_horizon(horizon)
        if self.horizon > limit:
            raise ValueError(f"horizon {self.horizon} is longer than Meta-World's max_path_length "
                             f"{limit} for {name}: use env.horizon <= {limit} (150 is ours)")
        self.action_space = self.envs[0].action_space
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.act_dim = int(np.prod(self.action_space.shape))
        self.tasks = {"train": self.benchmark.train_tasks, "test": self.benchmark.test_tasks}
        self.success = torch.zeros(self.num_envs, dtype=torch.bool)
        self._goals: dict[str, Tensor] = {}

    def _sample(self, split: str, n: int, generator: torch.Generator) -> list[Task]:
        # without replacement within each pass over the list: n <= 50 tasks are distinct goals
        size = len(self.tasks[split])
        order = torch.cat([torch.randperm(size, generator=generator) for _ in range(-(-n // size))])
        return [{"ml1": self.name, "split": split, "index": int(i)} for i in order[:n]]

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[Task]:
        """``n`` training goals (``ml1.train_tasks``): meta-training and validation tasks."""
        return self._sample("train", n, generator)

    def sample_test_tasks(self, n: int, generator: torch.Generator) -> list[Task]:
        """``n`` held-out test goals (``ml1.test_tasks``): the test tasks of ``metalearn eval``."""
        return self._sample("test", n, generator)

    def _ml1_task(self, task: Task):
        if task.get("ml1") != self.name or task.get("split") not in SPLITS:
            raise ValueError(f"task {task} is not a {self.name} ML1 task: expected "
                             f"{{'ml1': {self.name!r}, 'split': 'train' or 'test', 'index': i}}")
        tasks = self.tasks[task["split"]]
        index = int(task["index"])
        if not 0 <= index < len(tasks):
            raise ValueError(f"task {task}: index must be in 0..{len(tasks) - 1}")
        return tasks[index]

    def reset_task(self, task: Task | Sequence[Task]) -> None:
        """Give every environment ``task``, or environment ``i`` the ``i``-th of a sequence."""
        for env, t in zip(self.envs, tasks_per_env(task, self.num_envs)):
            env.set_task(self._ml1_task(t))

    def reset(self, generator: torch.Generator) -> Tensor:
        """Reset every environment, seeded from ``generator`` (environment ``i`` gets seed + i);
        ``(num_envs, 39)``."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        self.success = torch.zeros(self.num_envs, dtype=torch.bool)
        obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)]
        return torch.as_tensor(np.stack(obs), dtype=torch.float32)

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Step every environment with its action, clipped to ``[-1, 1]``.

        Args:
            actions: ``(num_envs, 4)``.

        Returns:
            ``(obs (num_envs, 39), rewards (num_envs,), done (num_envs,) bool)``; ``done`` is
            Meta-World's truncation at ``max_path_length`` (it never terminates early).
        """
        clipped = np.clip(actions.detach().cpu().numpy(), self.action_space.low, self.action_space.high)
        obs, rewards, done, success = [], [], [], []
        for env, action in zip(self.envs, clipped):
            o, r, terminated, truncated, info = env.step(action)
            obs.append(o)
            rewards.append(r)
            done.append(terminated or truncated)
            success.append(bool(info["success"]))
        self.success = self.success | torch.tensor(success)
        return (torch.as_tensor(np.stack(obs), dtype=torch.float32),
                torch.tensor(rewards, dtype=torch.float32), torch.tensor(done))

    def task_vector(self, task: Task) -> Tensor:
        """The goal position of ``task``, ``(3,)`` (what the oracle baseline sees).

        Read from Meta-World's ``_target_pos`` after ``set_task`` and a reset of a spare
        environment, once per split.
        """
        self._ml1_task(task)
        split = task["split"]
        if split not in self._goals:
            probe = self.benchmark.train_classes[self.name]()
            goals = []
            for t in self.tasks[split]:
                probe.set_task(t)
                probe.reset(seed=0)
                goals.append(np.array(probe._target_pos, dtype=np.float32))
            probe.close()
            self._goals[split] = torch.as_tensor(np.stack(goals))
        return self._goals[split][int(task["index"])].clone()

    def close(self) -> None:
        for env in self.envs:
            env.close()


__all__ = ["ML1_SEED", "MetaWorldML1", "ml1_benchmark"]
