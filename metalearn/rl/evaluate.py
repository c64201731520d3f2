"""Adaptation measured on fixed, seeded tasks: the average return before adaptation and after
each of a few inner steps, mean ± 95% CI over tasks (:func:`metalearn.eval.metrics.mean_ci95`).

One adaptation step, as in the MAML paper's evaluation: roll out the current (adapted) policy
on the task, take one vanilla policy-gradient step on those trajectories (the algorithm's inner
rule and advantages). The return after ``k`` steps is that of the rollouts with the policy
adapted ``k`` times; each task's return is the mean over its trajectories. ``metalearn eval
RUN`` writes ``RUN/eval_test.json`` on the run's ``eval.test_tasks`` test tasks (seeded by
``eval.test_seed``, a stream distinct from training and validation).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metalearn._rng import make_generator
from metalearn.algorithms.functional import detach
from metalearn.eval.metrics import mean_ci95
from metalearn.rl.config import RLRunConfig
from metalearn.rl.policy_gradient import adapt_policy
from metalearn.rl.types import Task, Trajectories, VectorTaskEnv


@dataclass
class AdaptationResult:
    """Per-task returns after 0, 1, ... adaptation steps.

    Attributes:
        per_task: Adaptation steps -> the mean return of each task's trajectories (``n`` values).
        trajectories: Steps -> the rollouts (kept only when asked, for plots).
        seconds: Wall-clock time of the evaluation.
        success: Steps -> each task's fraction of successful trajectories, for environments that
            report success (Meta-World); empty otherwise.
    """

    per_task: dict[int, list[float]]
    trajectories: dict[int, Trajectories] = field(default_factory=dict)
    seconds: float = 0.0
    success: dict[int, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[int, tuple[float, float]]:
        """Steps -> ``(mean, ci95)`` over tasks."""
        return {k: mean_ci95(v) for k, v in self.per_task.items()}

    def to_dict(self) -> dict:
        """JSON-able: per step, the mean, the 95% CI half-width, the number of tasks and the
        per-task returns (and, with success, its mean and CI over tasks and per-task rates)."""
        out = {str(k): {"mean": m, "ci95": c, "n": len(self.per_task[k]), "per_task": self.per_task[k]}
               for k, (m, c) in self.summary().items()}
        for k, rates in self.success.items():
            m, c = mean_ci95(rates)
            out[str(k)]["success"] = {"mean": m, "ci95": c, "per_task": rates}
        return out


def validation_tasks(cfg: RLRunConfig, env: VectorTaskEnv) -> list[Task]:
    """The run's ``train.val_tasks`` fixed validation tasks (seeded by ``train.val_seed``), drawn
    like the training tasks (``env.sample_tasks``)."""
    return env.sample_tasks(cfg.train.val_tasks, make_generator(cfg.train.val_seed, "tasks"))


def test_tasks(cfg: RLRunConfig, env: VectorTaskEnv, n: int | None = None,
               seed: int | None = None) -> list[Task]:
    """The run's fixed test tasks: ``eval.test_tasks`` of them from ``eval.test_seed``.

    They come from ``env.sample_test_tasks`` when the environment has held-out test tasks
    (Meta-World ML1's test goals), else from ``env.sample_tasks`` like the training tasks.

    Examples:
        >>> from metalearn.rl.envs import Navigation2D
        >>> class HeldOut(Navigation2D):
        ...     def sample_test_tasks(self, n, generator):
        ...         return [{"goal": [9.0, 9.0]}] * n
        >>> test_tasks(RLRunConfig(), HeldOut(), 2), len(test_tasks(RLRunConfig(), Navigation2D(), 2))
        ([{'goal': [9.0, 9.0]}, {'goal': [9.0, 9.0]}], 2)
    """
    sample = getattr(env, "sample_test_tasks", env.sample_tasks)
    return sample(cfg.eval.test_tasks if n is None else n,
                  make_generator(cfg.eval.test_seed if seed is None else seed, "tasks"))


test_tasks.__test__ = False  # a helper, not a test (pytest collects test_* names)


def adaptation_returns(algo, roll, tasks: Sequence[Task], n_per_task: int,
                       generator: torch.Generator, steps: Sequence[int] = (1, 3),
                       keep_trajectories: bool = False) -> AdaptationResult:
    """Return of every task before adaptation and after each number of steps in ``steps``.

    Args:
        algo: A :class:`~metalearn.rl.maml_trpo.MAMLTRPO` (its policy, inner rule, advantages).
        roll: ``roll(params or per-task params, tasks, n_per_task, generator) -> Trajectories``
            (:class:`metalearn.rl.loop.Roller`).
        tasks: The fixed tasks.
        n_per_task: Trajectories per task at each step.
        generator: Rollout randomness (seed it for fixed results).
        steps: Adaptation steps to report besides 0, e.g. ``(1, 3)``.
        keep_trajectories: Keep the rollouts of the reported steps (for the trajectory plot).

    Returns:
        An :class:`AdaptationResult` with steps ``0`` and ``steps``.

    Examples:
        >>> from metalearn.rl.config import apply_rl_overrides
        >>> from metalearn.rl.loop import Roller, build_env, build_rl_algorithm
        >>> cfg = apply_rl_overrides(RLRunConfig(), ["env.horizon=5", "policy.hidden=[8]"])
        >>> env = build_env(cfg, 1)
        >>> algo = build_rl_algorithm(cfg, env)
        >>> res = adaptation_returns(algo, Roller(cfg, algo.forward_fn), env.sample_tasks(3,
        ...     torch.Generator().manual_seed(0)), 2, torch.Generator().manual_seed(1), steps=(1,))
        >>> sorted(res.summary()), len(res.per_task[1])
        ([0, 1], 3)
    """
    start = time.perf_counter()
    report = {0, *steps}
    last = max(report)
    params = [detach(algo.policy_params()) for _ in tasks]
    per_task: dict[int, list[float]] = {}
    success: dict[int, list[float]] = {}
    kept: dict[int, Trajectories] = {}
    for k in range(last + 1):
        traj = roll(params, tasks, n_per_task, generator)
        if k in report:
            per_task[k] = [float(traj.task(i).returns().mean()) for i in range(len(tasks))]
            if traj.success is not None:
                success[k] = [float(traj.task(i).success.mean()) for i in range(len(tasks))]
            if keep_trajectories:
                kept[k] = traj
        if k < last and getattr(algo, "adapts", True):  # an oracle sees the task: nothing to adapt
            params = [detach(adapt_policy(algo.forward_fn, p, traj.task(i), algo.advantages(traj.task(i)),
                                          algo.rule(), 1, first_order=True))
                      for i, p in enumerate(params)]
    return AdaptationResult(per_task, kept, time.perf_counter() - start, success)


def evaluate_run(run_dir: str | os.PathLike, checkpoint: str = "best", n_tasks: int | None = None,
                 seed: int | None = None) -> dict:
    """Evaluate a meta-RL run on its fixed test tasks and write ``RUN/eval_test.json``.

    Args:
        run_dir: The run directory.
        checkpoint: ``best`` or ``last``.
        n_tasks: Test tasks (default ``eval.test_tasks``, 40).
        seed: Test seed (default ``eval.test_seed``).

    Returns:
        The written record: run, checkpoint, step, tasks, seed, and per adaptation step the mean
        return, its 95% CI and the per-task returns.
    """
    from metalearn.rl.loop import Roller, build_env, load_rl_run, write_plots

    algo, cfg, step = load_rl_run(run_dir, checkpoint)
    if n_tasks is not None and n_tasks < 1:
        raise ValueError(f"--episodes (test tasks) must be at least 1, got {n_tasks}")
    seed = cfg.eval.test_seed if seed is None else seed
    if seed in (cfg.train.seed, cfg.train.val_seed):
        raise ValueError(f"--seed {seed} is a training or validation seed of this run: pick another")
    roll = Roller(cfg, algo.forward_fn)
    try:
        tasks = test_tasks(cfg, build_env(cfg, 1), n_tasks, seed)
        result = adaptation_returns(algo, roll, tasks, cfg.eval.trajectories,
                                    make_generator(seed, "rollouts"), steps=cfg.eval.steps)
        record = {"run": cfg.name, "checkpoint": checkpoint, "step": step, "split": "test",
                  "env": cfg.env.name, "horizon": cfg.env.horizon, "tasks": len(tasks), "seed": seed,
                  "trajectories": cfg.eval.trajectories, "returns": result.to_dict(),
                  "seconds": result.seconds}
        path = Path(run_dir) / "eval_test.json"
        path.write_text(json.dumps(record, indent=1))
        write_plots(Path(run_dir), cfg, algo, roll, quiet=True)
    finally:
        roll.close()
    return record


def format_returns(record: dict) -> list[str]:
    """One line per adaptation step: ``before adaptation: -40.12 ± 1.50`` ..."""
    lines = []
    for k, r in record["returns"].items():
        what = "before adaptation" if k == "0" else f"after {k} step{'s' * (k != '1')}"
        success = f", success {r['success']['mean']:.1%} ± {r['success']['ci95']:.1%}" if "success" in r else ""
        lines.append(f"  {what}: {r['mean']:.2f} ± {r['ci95']:.2f}{success}")
    return lines


def eval_command(args) -> int:
    """``metalearn eval RUN`` on a meta-RL run (called by :mod:`metalearn.cli.main`)."""
    record = evaluate_run(args.run_dir, args.checkpoint, args.episodes, args.seed)
    if os.environ.get("RANK", "0") != "0":
        return 0
    print(f"{record['run']} test (checkpoint {args.checkpoint}, iteration {record['step']}): average "
          f"return on {record['tasks']} fixed {record['env']} tasks (seed {record['seed']}), "
          "mean ± 95% CI over tasks:")
    print("\n".join(format_returns(record)))
    if not args.quiet:
        print(f"written {Path(args.run_dir) / 'eval_test.json'} ({record['seconds']:.1f} s)")
    return 0


__all__ = ["AdaptationResult", "adaptation_returns", "eval_command", "evaluate_run", "format_returns",
           "test_tasks", "validation_tasks"]
