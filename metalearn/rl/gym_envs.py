"""Gymnasium environments of the meta-RL tasks (needs ``pip install 'metalearn[rl]'``).

* :class:`Navigation2DEnv`: one :class:`~metalearn.rl.envs.Navigation2D` as a gymnasium
  ``Env`` (same dynamics code), for tools that expect the gymnasium API.
* :class:`HalfCheetahVelEnv` / :class:`HalfCheetahDirEnv` (Finn et al. 2017, after
  pytorch-maml-rl ``envs/mujoco/half_cheetah.py``) on gymnasium's MuJoCo ``HalfCheetah-v5``: the
  forward velocity ``v`` is gymnasium's ``info["x_velocity"]`` (the x-position delta over
  ``dt``); the reward is ``-|v - v*| - 0.05 ||a||^2`` (``v* ~ U[0, 2]``) or
  ``dir * v - 0.05 ||a||^2`` (``dir = ±1``), with the action as given (unclipped, as the
  reference).
* :class:`GymVectorTasks`: any of these behind gymnasium's vector environments, as a
  :class:`~metalearn.rl.types.VectorTaskEnv` on tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metalearn._lazy import require
from metalearn.rl.envs import Navigation2D, check_horizon, tasks_per_env
from metalearn.rl.types import Task

gymnasium = require("gymnasium", "rl")
require("mujoco", "rl")
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv  # noqa: E402


class Navigation2DEnv(gymnasium.Env):
    """One 2-D navigation environment with the gymnasium API (``reset`` / ``step`` 5-tuple).

    Args:
        task: ``{"goal": [x, y]}`` (default: the origin).
        horizon: Steps before ``truncated`` (100).

    Examples:
        >>> env = Navigation2DEnv({"goal": [0.5, 0.0]})
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.array([0.3, 0.0]))
        >>> [round(float(v), 3) for v in obs], round(reward, 3), terminated, truncated
        ([0.1, 0.0], -0.4, False, False)
    """

    metadata = {"render_modes": []}

    def __init__(self, task: Task | None = None, horizon: int = 100):
        self._nav = Navigation2D(num_envs=1, horizon=horizon)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gymnasium.spaces.Box(-self._nav.max_speed, self._nav.max_speed,
                                                 (2,), np.float32)
        self._t = 0
        self.reset_task(task or {"goal": [0.0, 0.0]})

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[Task]:
        """As :meth:`Navigation2D.sample_tasks`."""
        return self._nav.sample_tasks(n, generator)

    def reset_task(self, task: Task) -> None:
        """Set the goal."""
        self.task = task
        self._nav.reset_task(task)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._nav.reset()[0].numpy(), {"task": self.task}

    def step(self, action):
        obs, reward, done = self._nav.step(torch.as_tensor(np.asarray(action), dtype=torch.float32)[None])
        self._t += 1
        return (obs[0].numpy(), float(reward[0]), bool(done[0]), self._t >= self._nav.horizon,
                {"task": self.task})


class _TaskHalfCheetah(HalfCheetahEnv):
    """HalfCheetah-v5 whose reward depends on ``self.task`` (set by :meth:`reset_task` or
    ``set_attr("task", ...)`` of a vector environment); a subclass defines ``default_task``,
    ``sample_tasks`` and ``task_reward(velocity) -> float``."""

    ctrl_weight = 0.05

    def __init__(self, task: Task | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.task = task or self.default_task

    def reset_task(self, task: Task) -> None:
        """Set the task of the next steps."""
        self.task = task

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        velocity = float(info["x_velocity"])
        ctrl = self.ctrl_weight * float(np.sum(np.square(action)))
        forward = self.task_reward(velocity)
        info.update(reward_forward=forward, reward_ctrl=-ctrl, task=self.task)
        return obs.astype(np.float32), forward - ctrl, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs.astype(np.float32), info


class HalfCheetahVelEnv(_TaskHalfCheetah):
    """Run at a target velocity ``v* ~ U[0, 2]``: reward ``-|v - v*| - 0.05 ||a||^2``."""

    default_task = {"velocity": 0.0}

    @staticmethod
    def sample_tasks(n: int, generator: torch.Generator) -> list[Task]:
        """``n`` tasks ``{"velocity": v}`` with ``v ~ U[0, 2]``."""
        return [{"velocity": float(v)} for v in 2.0 * torch.rand(n, generator=generator)]

    def task_reward(self, velocity: float) -> float:
        return -abs(velocity - float(self.task["velocity"]))


class HalfCheetahDirEnv(_TaskHalfCheetah):
    """Run forward or backward (``dir = ±1``, equally likely): reward ``dir * v - 0.05 ||a||^2``."""

    default_task = {"direction": 1.0}

    @staticmethod
    def sample_tasks(n: int, generator: torch.Generator) -> list[Task]:
        """``n`` tasks ``{"direction": ±1.0}``."""
        signs = 2.0 * torch.randint(0, 2, (n,), generator=generator) - 1.0
        return [{"direction": float(d)} for d in signs]

    def task_reward(self, velocity: float) -> float:
        return float(self.task["direction"]) * velocity


class GymVectorTasks:
    """``num_envs`` gymnasium task environments as one :class:`~metalearn.rl.types.VectorTaskEnv`.

    Args:
        env_cls: A task environment class (``HalfCheetahVelEnv``, ``HalfCheetahDirEnv``) with
            ``sample_tasks`` and a ``task`` attribute.
        num_envs: Number of environments.
        horizon: Steps per episode (200 for HalfCheetah in the paper; 100 in newer configs).
        asynchronous: One process per environment (``gymnasium.vector.AsyncVectorEnv``)
            instead of stepping them in turn in this process.
    """

    def __init__(self, env_cls: type, num_envs: int, horizon: int = 200, asynchronous: bool = False):
        self.env_cls = env_cls
        self.num_envs = int(num_envs)
        self.horizon = check_horizon(horizon)
        vector = gymnasium.vector.AsyncVectorEnv if asynchronous else gymnasium.vector.SyncVectorEnv
        self.envs = vector([env_cls for _ in range(self.num_envs)])
        self.obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self.act_dim = int(np.prod(self.envs.single_action_space.shape))

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[Task]:
        return self.env_cls.sample_tasks(n, generator)

    def reset_task(self, task: Task | Sequence[Task]) -> None:
        self.envs.set_attr("task", tasks_per_env(task, self.num_envs))

    def reset(self, generator: torch.Generator) -> Tensor:
        """Reset every environment, seeded from ``generator`` (environment ``i`` gets seed + i)."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        obs, _ = self.envs.reset(seed=seed)
        return torch.as_tensor(obs, dtype=torch.float32)

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        obs, rewards, terminated, truncated, _ = self.envs.step(actions.detach().cpu().numpy())
        return (torch.as_tensor(obs, dtype=torch.float32),
                torch.as_tensor(rewards, dtype=torch.float32),
                torch.as_tensor(terminated | truncated))

    def close(self) -> None:
        self.envs.close()
