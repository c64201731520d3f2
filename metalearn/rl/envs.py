"""Meta-RL task distributions as vectorised environments, and the ``ENVIRONMENTS`` name table.

:class:`Navigation2D` (Finn et al. 2017, after pytorch-maml-rl ``envs/navigation.py``) is pure
torch: all environments and tasks move in one batched step. The MuJoCo HalfCheetah tasks need
gymnasium and mujoco (``pip install 'metalearn[rl]'``) and live in :mod:`metalearn.rl.gym_envs`,
Meta-World ML1 (``ml1-<task>``, ``pip install 'metalearn[metaworld]'``) in
:mod:`metalearn.rl.metaworld_envs`; the tables build them lazily so that this module imports
without any of them.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from metalearn.rl.types import Task, VectorTaskEnv


def check_horizon(horizon: int) -> int:
    """Return ``horizon`` after checking that it is a positive number of steps.

    Raises:
        ValueError: ``horizon < 1``, naming the paper's values.

    Examples:
        >>> check_horizon(100)
        100
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a whole number of steps >= 1, got {horizon!r} "
                         "(the MAML paper uses 100 for 2-D navigation, 200 for HalfCheetah)")
    return int(horizon)


def tasks_per_env(task: Task | Sequence[Task], num_envs: int) -> list[Task]:
    """One task for each environment: ``task`` repeated, or a sequence of ``num_envs`` tasks.

    Raises:
        ValueError: a sequence whose length is not ``num_envs``.
    """
    if isinstance(task, dict):
        return [task] * num_envs
    tasks = list(task)
    if len(tasks) != num_envs:
        raise ValueError(f"got {len(tasks)} tasks for {num_envs} environments: give one task "
                         "for all of them or exactly one per environment")
    return tasks


class Navigation2D:
    """2-D point navigation to a goal, ``num_envs`` environments stepped as one tensor op.

    A point starts at the origin; the action is its velocity, clipped to
    ``[-max_speed, max_speed]^2``; the reward is minus the distance to the goal after the step.
    An episode ends when both coordinates are within ``success_radius`` of the goal (then the
    environment stands still and returns reward 0), or after ``horizon`` steps (the rollout's
    limit). Goals are drawn from ``U[low, high]^2``.

    Args:
        num_envs: Number of environments stepped together.
        horizon: Steps per episode (100 in the paper).
        low, high: Range of the goal coordinates.
        max_speed: Bound of each action coordinate.
        success_radius: The episode ends when ``|x - gx|`` and ``|y - gy|`` are below it.

    Examples:
        >>> env = Navigation2D(num_envs=2)
        >>> env.reset_task([{"goal": [0.05, 0.0]}, {"goal": [0.3, 0.4]}])
        >>> env.reset(torch.Generator().manual_seed(0)).tolist()
        [[0.0, 0.0], [0.0, 0.0]]
        >>> obs, reward, done = env.step(torch.tensor([[1.0, 0.0], [0.1, 0.1]]))
        >>> obs.double().round(decimals=3).tolist(), reward.double().round(decimals=4).tolist(), done.tolist()
        ([[0.1, 0.0], [0.1, 0.1]], [-0.05, -0.3606], [False, False])
    """

    obs_dim = 2
    act_dim = 2

    def __init__(self, num_envs: int = 1, horizon: int = 100, low: float = -0.5, high: float = 0.5,
                 max_speed: float = 0.1, success_radius: float = 0.01):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.horizon = check_horizon(horizon)
        self.low, self.high = float(low), float(high)
        self.max_speed = float(max_speed)
        self.success_radius = float(success_radius)
        self.goals = torch.zeros(self.num_envs, 2)
        self.state = torch.zeros(self.num_envs, 2)
        self.done = torch.zeros(self.num_envs, dtype=torch.bool)

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[Task]:
        """``n`` goals ``{"goal": [x, y]}`` drawn uniformly from ``[low, high]^2``."""
        goals = self.low + (self.high - self.low) * torch.rand(n, 2, generator=generator)
        return [{"goal": g.tolist()} for g in goals]

    def reset_task(self, task: Task | Sequence[Task]) -> None:
        """Give every environment ``task``, or environment ``i`` the ``i``-th of a sequence."""
        tasks = tasks_per_env(task, self.num_envs)
        self.goals = torch.tensor([t["goal"] for t in tasks], dtype=torch.float32).reshape(-1, 2)

    def reset(self, generator: torch.Generator | None = None) -> Tensor:
        """Put every point at the origin (deterministic: ``generator`` is not used); ``(num_envs, 2)``."""
        self.state = torch.zeros(self.num_envs, 2)
        self.done = torch.zeros(self.num_envs, dtype=torch.bool)
        return self.state.clone()

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Move every point by its clipped action.

        Args:
            actions: Velocities, ``(num_envs, 2)``.

        Returns:
            ``(obs (num_envs, 2), rewards (num_envs,), done (num_envs,) bool)``; an environment
            already done stays where it is with reward 0.
        """
        active = (~self.done).unsqueeze(1).to(actions.dtype)
        velocity = actions.detach().clamp(-self.max_speed, self.max_speed)
        self.state = self.state + active * velocity
        delta = self.state - self.goals
        rewards = -torch.linalg.vector_norm(delta, dim=1) * active.squeeze(1)
        self.done = self.done | (delta.abs() < self.success_radius).all(dim=1)
        return self.state.clone(), rewards, self.done.clone()


def _halfcheetah(kind: str) -> Callable[..., VectorTaskEnv]:
    def build(num_envs: int = 1, horizon: int = 200, **kwargs) -> VectorTaskEnv:
        # needs gymnasium and mujoco: imported on use (through sys.modules, so a missing extra is
        # found even when the package already holds the submodule as an attribute)
        gym_envs = importlib.import_module("metalearn.rl.gym_envs")

        env_cls = {"vel": gym_envs.HalfCheetahVelEnv, "dir": gym_envs.HalfCheetahDirEnv}[kind]
        return gym_envs.GymVectorTasks(env_cls, num_envs, horizon=horizon, **kwargs)

    build.__doc__ = f"HalfCheetah-{kind} on gymnasium's MuJoCo HalfCheetah-v5, vectorised."
    return build


def _metaworld_ml1(task: str, num_envs: int = 1, horizon: int = 150, **kwargs) -> VectorTaskEnv:
    """Meta-World ML1 task ``task`` (e.g. ``reach-v3``), ``num_envs`` environments."""
    metaworld_envs = importlib.import_module("metalearn.rl.metaworld_envs")
    return metaworld_envs.MetaWorldML1(task, num_envs, horizon=horizon, **kwargs)


ENVIRONMENTS: dict[str, Callable[..., VectorTaskEnv]] = {
    "navigation2d": Navigation2D,
    "halfcheetah-vel": _halfcheetah("vel"),
    "halfcheetah-dir": _halfcheetah("dir"),
}
"""Name -> ``build(num_envs, horizon=..., ...)`` of a :class:`VectorTaskEnv`: how the command
line finds an environment."""

ENV_FAMILIES: dict[str, Callable[..., VectorTaskEnv]] = {
    "ml1-": _metaworld_ml1,
}
"""Name prefix -> ``build(rest_of_name, num_envs, horizon=...)``: ``ml1-<task>`` is Meta-World
ML1 on any v3 task (``ml1-reach-v3``, ``ml1-push-v3``, ``ml1-pick-place-v3``, ...); the task
name is checked when the environment is built (it needs metaworld)."""


def env_builder(name: str) -> Callable[..., VectorTaskEnv]:
    """``build(num_envs, horizon=...)`` of environment ``name``: an :data:`ENVIRONMENTS` entry or
    a member of an :data:`ENV_FAMILIES` family.

    Raises:
        KeyError: neither.

    Examples:
        >>> env_builder("navigation2d") is Navigation2D
        True
        >>> env_builder("ml1-reach-v3").args
        ('reach-v3',)
    """
    if name in ENVIRONMENTS:
        return ENVIRONMENTS[name]
    for prefix, build in ENV_FAMILIES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return functools.partial(build, name[len(prefix):])
    raise KeyError(name)
