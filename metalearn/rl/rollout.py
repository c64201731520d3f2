"""Batched, seeded rollouts of a policy (one parameter set, or one per task) in a vector env.

All ``n_tasks * n_per_task`` environments step together; trajectory ``b`` belongs to task
``b // n_per_task``. Every random number (action noise, the environment's reset seed) comes from
the ``torch.Generator`` passed in, so a rollout is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from metalearn.algorithms.functional import Forward
from metalearn.rl.envs import check_horizon
from metalearn.rl.types import Task, Trajectories, VectorTaskEnv
from metalearn.types import Params


def _check_finite(value: Tensor, what: str, step: int, task_ids: Tensor, tasks: Sequence[Task],
                  active: Tensor) -> None:
    bad = ~torch.isfinite(value.reshape(value.shape[0], -1)).all(1) & active
    if bad.any():
        b = int(torch.nonzero(bad)[0])
        k = int(task_ids[b])
        raise FloatingPointError(
            f"the environment returned a non-finite {what} at step {step} of task {k} "
            f"({tasks[k]}), trajectory {b}: check the environment's dynamics for that task "
            "(a run keeps its last good checkpoint)")


def rollout(env: VectorTaskEnv, forward: Forward, params: Params | Sequence[Params],
            tasks: Sequence[Task], n_per_task: int, generator: torch.Generator,
            horizon: int | None = None) -> Trajectories:
    """Roll out ``n_per_task`` trajectories of each task, all environments at once.

    Args:
        env: A vector environment with ``num_envs == len(tasks) * n_per_task``.
        forward: The policy as a pure function ``forward(params, obs) -> Normal``.
        params: One parameter dict for every task, or a sequence of one dict per task (the
            adapted policies).
        tasks: The tasks, e.g. from ``env.sample_tasks``.
        n_per_task: Trajectories per task (20 in the paper).
        generator: Source of the action noise and the environment's reset seed.
        horizon: Steps per trajectory (default ``env.horizon``).

    Returns:
        :class:`Trajectories` with ``T = horizon`` and ``B = len(tasks) * n_per_task``, and
        ``success`` when the environment has a ``success`` flag (Meta-World).

    Raises:
        ValueError: a horizon below 1, or an environment of the wrong size.
        FloatingPointError: a NaN/inf observation or reward, naming the task and the step.

    Examples:
        >>> from metalearn.algorithms.functional import make_forward
        >>> from metalearn.rl.envs import Navigation2D
        >>> from metalearn.rl.policies import GaussianMLPPolicy
        >>> policy = GaussianMLPPolicy(2, 2)
        >>> env = Navigation2D(num_envs=6, horizon=10)
        >>> tasks = env.sample_tasks(3, torch.Generator().manual_seed(0))
        >>> traj = rollout(env, make_forward(policy), dict(policy.named_parameters()), tasks, 2,
        ...                torch.Generator().manual_seed(1))
        >>> tuple(traj.obs.shape), traj.task_ids.tolist()
        ((10, 6, 2), [0, 0, 1, 1, 2, 2])
    """
    horizon = check_horizon(env.horizon if horizon is None else horizon)
    n_tasks = len(tasks)
    n_envs = n_tasks * n_per_task
    if env.num_envs != n_envs:
        raise ValueError(f"the environment has {env.num_envs} copies but {n_tasks} tasks x "
                         f"{n_per_task} trajectories need {n_envs}: build it with num_envs={n_envs}")
    per_task = not isinstance(params, dict)
    if per_task and len(params) != n_tasks:
        raise ValueError(f"got {len(params)} parameter sets for {n_tasks} tasks: give one per task "
                         "or a single dict for all")
    task_ids = torch.arange(n_tasks).repeat_interleave(n_per_task)
    env.reset_task([tasks[k] for k in task_ids.tolist()])
    obs = env.reset(generator)
    o_buf = obs.new_zeros(horizon, n_envs, env.obs_dim)
    a_buf = obs.new_zeros(horizon, n_envs, env.act_dim)
    r_buf = obs.new_zeros(horizon, n_envs)
    m_buf = obs.new_zeros(horizon, n_envs)
    done = torch.zeros(n_envs, dtype=torch.bool)
    # an environment that reports success (Meta-World) has a ``success`` flag per environment
    success = torch.zeros(n_envs, dtype=torch.bool) if hasattr(env, "success") else None
    with torch.no_grad():
        for t in range(horizon):
            active = ~done
            _check_finite(obs, "observation", t, task_ids, tasks, active)
            if per_task:
                grouped = obs.view(n_tasks, n_per_task, -1)
                dists = [forward(p, grouped[k]) for k, p in enumerate(params)]
                loc = torch.cat([d.loc for d in dists])
                scale = torch.cat([d.scale for d in dists])
            else:
                dist = forward(params, obs)
                loc, scale = dist.loc, dist.scale
            # drawn for every environment at every step, so the noise of a step does not depend
            # on which episodes have ended
            noise = torch.randn(loc.shape, generator=generator, dtype=loc.dtype)
            actions = loc + scale * noise
            next_obs, rewards, step_done = env.step(actions)
            _check_finite(rewards.unsqueeze(1), "reward", t, task_ids, tasks, active)
            m = active.to(obs.dtype)
            o_buf[t] = obs * m[:, None]
            a_buf[t] = actions * m[:, None]
            r_buf[t] = torch.where(active, rewards, torch.zeros_like(rewards))
            m_buf[t] = m
            if success is not None:
                success = success | (env.success & active)
            done = done | step_done
            obs = next_obs
            if done.all():
                break
    return Trajectories(o_buf, a_buf, r_buf, m_buf, task_ids,
                        None if success is None else success.to(obs.dtype))
