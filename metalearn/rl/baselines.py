"""The baselines of the MAML-RL paper (Finn et al. 2017, section 5.3), scored like MAML-TRPO.

Each is a :class:`~metalearn.rl.maml_trpo.MAMLTRPO` with the same interface (``forward_fn``,
``policy_params()``, ``adapt(train) -> params per task``, ``step(train, valid) -> metrics``), so
:func:`~metalearn.rl.maml_trpo.meta_iteration` trains them and an evaluation that rolls out
``train`` with ``policy_params()``, adapts, and rolls out ``valid`` scores them identically:

- :class:`MultiTaskPolicy` ("pretrained" in the paper): one policy trained by the same TRPO
  outer step on the pre-adaptation trajectories of all training tasks (no inner loop while
  training), then fine-tuned at test by the same inner policy-gradient step (lr 0.1).
- :class:`RandomInit`: a randomly initialised policy, never trained, fine-tuned likewise.
- :class:`OraclePolicy`: the task (goal, velocity or direction) appended to the observation by
  :class:`TaskObservation`, trained with TRPO over tasks; it needs no adaptation
  (``adapt`` returns its parameters unchanged). Roll it out in ``oracle.observe(env)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from metalearn.algorithms.functional import detach
from metalearn.rl.maml_trpo import MAMLTRPO, MAMLTRPOConfig
from metalearn.rl.types import Task, Trajectories, VectorTaskEnv
from metalearn.types import Params


def task_vector(task: Task) -> Tensor:
    """The numbers of a task, in key order, as a float vector (what the oracle sees).

    Raises:
        TypeError: a task value that is not a number or a sequence of numbers.

    Examples:
        >>> task_vector({"goal": [0.1, -0.3]}).tolist(), task_vector({"velocity": 1.5}).tolist()
        ([0.10000000149011612, -0.30000001192092896], [1.5])
    """
    parts = []
    for key in sorted(task):
        try:
            parts.append(torch.as_tensor(task[key], dtype=torch.float32).reshape(-1))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"task[{key!r}] = {task[key]!r} is not a number or a sequence of "
                            "numbers: the oracle can only append numeric tasks to the "
                            "observation") from err
    return torch.cat(parts) if parts else torch.zeros(0)


class TaskObservation:
    """A :class:`~metalearn.rl.types.VectorTaskEnv` whose observations end with the task.

    Every observation of environment ``i`` becomes ``(obs_i, task_vector(task_i))`` (the
    environment's own ``task_vector`` when it has one, e.g. a Meta-World goal position); the rest
    (rewards, dones, tasks, held-out test tasks, success) is the wrapped environment's.

    Args:
        env: The environment to wrap.

    Examples:
        >>> from metalearn.rl.envs import Navigation2D
        >>> env = TaskObservation(Navigation2D(num_envs=2, horizon=5))
        >>> env.reset_task([{"goal": [0.1, 0.2]}, {"goal": [-0.3, 0.4]}])
        >>> env.obs_dim, env.reset(torch.Generator()).tolist()
        (4, [[0.0, 0.0, 0.10000000149011612, 0.20000000298023224], [0.0, 0.0, -0.30000001192092896, 0.4000000059604645]])
    """

    def __init__(self, env: VectorTaskEnv):
        self.env = env
        self.num_envs, self.act_dim, self.horizon = env.num_envs, env.act_dim, env.horizon
        self.vector = getattr(env, "task_vector", task_vector)
        probe = env.sample_tasks(1, torch.Generator().manual_seed(0))[0]
        self.task_dim = int(self.vector(probe).numel())
        self.obs_dim = env.obs_dim + self.task_dim
        self._tasks = torch.zeros(self.num_envs, self.task_dim)

    def sample_tasks(self, n: int, generator: torch.Generator) -> list[Task]:
        """The wrapped environment's tasks."""
        return self.env.sample_tasks(n, generator)

    def reset_task(self, task: Task | Sequence[Task]) -> None:
        """Set the tasks of the wrapped environment and remember their vectors."""
        from metalearn.rl.envs import tasks_per_env

        tasks = tasks_per_env(task, self.num_envs)
        self.env.reset_task(tasks)
        self._tasks = torch.stack([self.vector(t) for t in tasks])

    def _with_task(self, obs: Tensor) -> Tensor:
        return torch.cat([obs, self._tasks.to(obs.dtype)], dim=-1)

    def reset(self, generator: torch.Generator) -> Tensor:
        """Reset the wrapped environment; ``(num_envs, obs_dim)`` with the tasks appended."""
        return self._with_task(self.env.reset(generator))

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Step the wrapped environment; the observations get the tasks appended."""
        obs, rewards, done = self.env.step(actions)
        return self._with_task(obs), rewards, done

    def __getattr__(self, name: str):
        # what the wrapper does not define (success, close, ...) is the wrapped environment's;
        # "env" itself is looked up here only before __init__ set it
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)


class MultiTaskPolicy(MAMLTRPO):
    """One policy trained on all training tasks, fine-tuned at test by the inner step.

    ``step`` takes the configured outer step (TRPO by default, or PPO) on the surrogate of the
    *pre-adaptation* trajectories ``train`` (``valid`` is only checked for its task count), with
    no inner loop; ``adapt`` is :class:`MAMLTRPO`'s, the same policy-gradient step at
    ``config.inner_lr`` (0.1).

    Args:
        policy: The policy, e.g. :class:`~metalearn.rl.policies.GaussianMLPPolicy`.
        config: As :class:`MAMLTRPO` (``inner_*`` used only by ``adapt``).

    Examples:
        >>> from metalearn.rl.envs import Navigation2D
        >>> from metalearn.rl.maml_trpo import meta_iteration
        >>> from metalearn.rl.policies import GaussianMLPPolicy
        >>> algo = MultiTaskPolicy(GaussianMLPPolicy(2, 2, hidden=(8,)))
        >>> env = Navigation2D(num_envs=2 * 3, horizon=5)
        >>> g = torch.Generator().manual_seed(0)
        >>> meta_iteration(algo, env, env.sample_tasks(2, g), 3, g)["kl_after"] < 0.01
        True
    """

    def __init__(self, policy: nn.Module, config: MAMLTRPOConfig | None = None):
        super().__init__(policy, config)
        self._pretraining = False

    @contextmanager
    def _without_inner_loop(self) -> Iterator[None]:
        self._pretraining = True
        try:
            yield
        finally:
            self._pretraining = False

    def adapt_task(self, train: Trajectories, adv: Tensor | None = None,
                   first_order: bool | None = None, start: Params | None = None) -> Params:
        """:meth:`MAMLTRPO.adapt_task`, or the starting parameters themselves inside ``step``."""
        if self._pretraining:
            return self.policy_params() if start is None else start
        return super().adapt_task(train, adv, first_order, start)

    def _plain_tasks(self, train: Trajectories, valid: Trajectories) -> list:
        """Per task ``(train, adv, train, adv)``: the surrogate of the pre-adaptation data."""
        if train.n_tasks != valid.n_tasks:
            raise ValueError(f"train has {train.n_tasks} tasks but valid {valid.n_tasks}: "
                             "roll out valid with adapt(train)'s parameters for the same tasks")
        tasks = []
        for k in range(train.n_tasks):
            tr = train.task(k)
            adv = self.advantages(tr)
            tasks.append((tr, adv, tr, adv))
        return tasks

    def step(self, train: Trajectories, valid: Trajectories,
             optimizer: torch.optim.Optimizer | None = None,
             mean: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """One outer step on the pre-adaptation trajectories ``train`` (arguments and metrics as
        :meth:`MAMLTRPO.step`)."""
        tasks = self._plain_tasks(train, valid)
        with self._without_inner_loop():
            if self.config.outer == "ppo":
                return self._ppo_step(tasks, optimizer)
            return self._trpo_step(tasks, mean)


class RandomInit(MultiTaskPolicy):
    """A randomly initialised policy, never trained, fine-tuned at test by the inner step.

    ``step`` changes nothing and reports the surrogate of ``train`` (``loss_before ==
    loss_after``, ``kl_after == 0``, ``step_fraction == 0``), so it runs in the same loop.

    Examples:
        >>> from metalearn.rl.policies import GaussianMLPPolicy
        >>> algo = RandomInit(GaussianMLPPolicy(2, 2, hidden=(8,)))
        >>> traj = Trajectories(torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.randn(3, 4),
        ...                     torch.ones(3, 4), torch.tensor([0, 0, 1, 1]))
        >>> before = [p.clone() for p in algo.parameters()]
        >>> metrics = algo.step(traj, traj)
        >>> metrics["step_fraction"], all(torch.equal(p, q) for p, q in zip(algo.parameters(), before))
        (0.0, True)
    """

    def step(self, train: Trajectories, valid: Trajectories,
             optimizer: torch.optim.Optimizer | None = None,
             mean: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """No update: the metrics of a step that was not taken (``mean`` as :meth:`MAMLTRPO.step`)."""
        tasks = self._plain_tasks(train, valid)
        with self._without_inner_loop(), torch.no_grad():
            loss, _, _ = self._surrogates(tasks, None, first_order=True)
            loss = loss if mean is None else mean(loss.reshape(1))[0]
        return {"loss_before": float(loss), "loss_after": float(loss), "kl_after": 0.0,
                "grad_norm": 0.0, "step_fraction": 0.0, "ls_tries": 0}


class OraclePolicy(MultiTaskPolicy):
    """A policy that sees the task in its observation, trained with TRPO over tasks.

    Roll it out in :meth:`observe` ``(env)``, which appends the task to every observation
    (build its policy with ``obs_dim = env.obs_dim + task size``, e.g. ``OraclePolicy.for_env``).
    ``adapt`` returns the parameters unchanged for every task: the oracle needs no adaptation,
    so its return "after k steps" is its return before.

    Examples:
        >>> from metalearn.rl.envs import Navigation2D
        >>> from metalearn.rl.maml_trpo import meta_iteration
        >>> env = Navigation2D(num_envs=2 * 3, horizon=5)
        >>> oracle = OraclePolicy.for_env(env, hidden=(8,))
        >>> g = torch.Generator().manual_seed(0)
        >>> m = meta_iteration(oracle, oracle.observe(env), env.sample_tasks(2, g), 3, g)
        >>> oracle.policy.obs_dim, m["kl_after"] < 0.01
        (4, True)
    """

    adapts = False
    """Evaluation rolls the oracle out unchanged after each "adaptation step"."""

    @classmethod
    def for_env(cls, env: VectorTaskEnv, config: MAMLTRPOConfig | None = None,
                **policy_kwargs) -> OraclePolicy:
        """An oracle with a :class:`~metalearn.rl.policies.GaussianMLPPolicy` sized for
        ``env``'s observations plus its task vector."""
        from metalearn.rl.policies import GaussianMLPPolicy

        wrapped = TaskObservation(env)
        return cls(GaussianMLPPolicy(wrapped.obs_dim, env.act_dim, **policy_kwargs), config)

    @staticmethod
    def observe(env: VectorTaskEnv) -> TaskObservation:
        """``env`` with the task appended to its observations (what the oracle rolls out in)."""
        return env if isinstance(env, TaskObservation) else TaskObservation(env)

    def adapt(self, train: Trajectories) -> list[Params]:
        """The (detached) parameters themselves, once per task of ``train``."""
        params = detach(self.policy_params())
        return [params] * train.n_tasks
