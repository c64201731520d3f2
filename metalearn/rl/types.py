"""The small types of meta-RL: a batch of trajectories, the vectorised task environment and the
algorithm protocol (the supervised :class:`~metalearn.types.Episode` does not fit: see the
package docstring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from metalearn.types import Params

Task = dict[str, Any]
"""One task of a distribution, e.g. ``{"goal": tensor([0.1, -0.3])}`` or ``{"velocity": 1.2}``."""


@dataclass(frozen=True)
class Trajectories:
    """A batch of ``B`` trajectories of at most ``T`` steps, of one or several tasks.

    Step ``t`` of trajectory ``b`` is real when ``mask[t, b] == 1``; after an episode ends
    (the environment reports ``done``) the mask is 0 and the other fields hold zeros.

    Attributes:
        obs: Observations the actions were taken from, ``(T, B, obs_dim)``.
        actions: Actions as sampled from the policy (before any clipping by the environment),
            ``(T, B, act_dim)``.
        rewards: ``(T, B)``.
        mask: 1.0 for real steps, 0.0 after the episode ended, ``(T, B)``.
        task_ids: Index of each trajectory's task in the list of tasks it was rolled out for,
            ``(B,)`` int64.
        success: 1.0 where the trajectory reached the task's success criterion at some real
            step, ``(B,)``; ``None`` when the environment reports none (only Meta-World does).

    Examples:
        >>> traj = Trajectories(torch.zeros(3, 4, 2), torch.zeros(3, 4, 2), torch.zeros(3, 4),
        ...                     torch.ones(3, 4), torch.tensor([0, 0, 1, 1]))
        >>> traj.horizon, traj.n_trajectories, traj.n_tasks, traj.task(1).n_trajectories
        (3, 4, 2, 2)
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    task_ids: Tensor
    success: Tensor | None = None

    def __post_init__(self) -> None:
        t, b = self.rewards.shape
        for name in ("obs", "actions", "mask"):
            shape = tuple(getattr(self, name).shape)
            if shape[:2] != (t, b):
                raise ValueError(f"Trajectories.{name} has shape {shape} but rewards {(t, b)}: "
                                 "every field is (T, B, ...) with the same T and B")
        if tuple(self.task_ids.shape) != (b,):
            raise ValueError(f"Trajectories.task_ids has shape {tuple(self.task_ids.shape)}; "
                             f"give one task index per trajectory, shape ({b},)")
        if self.success is not None and tuple(self.success.shape) != (b,):
            raise ValueError(f"Trajectories.success has shape {tuple(self.success.shape)}; "
                             f"give one value per trajectory, shape ({b},)")

    @property
    def horizon(self) -> int:
        """``T``, the number of time steps stored."""
        return int(self.rewards.shape[0])

    @property
    def n_trajectories(self) -> int:
        """``B``, the number of trajectories."""
        return int(self.rewards.shape[1])

    @property
    def n_tasks(self) -> int:
        """Number of tasks: one more than the largest task index."""
        return int(self.task_ids.max().item()) + 1 if self.n_trajectories else 0

    @property
    def lengths(self) -> Tensor:
        """Number of real steps of each trajectory, ``(B,)``."""
        return self.mask.sum(0)

    def returns(self) -> Tensor:
        """Undiscounted return of each trajectory, ``(B,)``."""
        return (self.rewards * self.mask).sum(0)

    def task(self, i: int) -> Trajectories:
        """The trajectories of task ``i`` (their ``task_ids`` become 0)."""
        cols = torch.nonzero(self.task_ids == i).flatten()
        if cols.numel() == 0:
            raise IndexError(f"no trajectory of task {i}; tasks present: 0..{self.n_tasks - 1}")
        return Trajectories(self.obs[:, cols], self.actions[:, cols], self.rewards[:, cols],
                            self.mask[:, cols], torch.zeros_like(cols),
                            None if self.success is None else self.success[cols])

    def to(self, device: torch.device | str) -> Trajectories:
        """A copy with every tensor on ``device``."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device)
                                            for f in dataclasses.fields(self)
                                            if getattr(self, f.name) is not None})


@runtime_checkable
class VectorTaskEnv(Protocol):
    """``num_envs`` environments of one task distribution, stepped together on tensors.

    ``reset_task`` gives every environment its task (one for all, or one each); ``reset`` and
    ``step`` work on the whole batch at once.

    Optional members, used when an environment has them:

    * ``sample_test_tasks(n, generator) -> list[Task]``: held-out test tasks (Meta-World ML1's
      test goals). :func:`metalearn.rl.evaluate.test_tasks` (``metalearn eval``) draws from it;
      training and validation always draw from ``sample_tasks``.
    * ``task_vector(task) -> Tensor``: the numbers of a task that the oracle baseline sees, for
      tasks that are not plain numbers (an ML1 task is an index into a goal list; its vector is
      the goal position). Without it, :func:`metalearn.rl.baselines.task_vector`.
    * ``success``: ``(num_envs,)`` bool, whether each environment's episode has succeeded since
      its reset (Meta-World's ``info["success"]``); the rollout records it in
      :attr:`Trajectories.success`.
    """

    num_envs: int
    obs_dim: int
    act_dim: int
    horizon: int

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[Task]: ...

    def reset_task(self, task: Task | Sequence[Task]) -> None: ...

    def reset(self, generator: torch.Generator) -> Tensor: ...

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...


@runtime_checkable
class MetaRLAlgorithm(Protocol):
    """What the meta-RL loop needs from an algorithm (the RL side of the supervised contract).

    ``forward_fn(params, obs) -> distribution`` is the policy as a pure function and
    ``policy_params()`` its meta-parameters (what the pre-adaptation rollouts use);
    ``adapt(train)`` returns one set of task-specific parameters per task of ``train`` (the
    support data, rolled out with the meta-parameters); ``step(train, valid)`` takes one outer
    update from the post-adaptation trajectories ``valid`` (the query data, rolled out with the
    adapted parameters) and returns its metrics.
    """

    forward_fn: Callable[..., Any]

    def policy_params(self) -> Params: ...

    def adapt(self, train: Trajectories) -> list[Params]: ...

    def step(self, train: Trajectories, valid: Trajectories, **kwargs: Any) -> dict[str, float]: ...
