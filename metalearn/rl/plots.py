"""Pictures of a meta-RL run (matplotlib, Agg backend; ``pip install 'metalearn[train]'``).

* ``adaptation_curve.png`` (:func:`plot_adaptation_curve`): the average return before and after
  adaptation over meta-training, like the MAML paper's Figure 5 (training meta-batches, and the
  fixed validation tasks with their 95% CI).
* ``trajectories.png`` (:func:`plot_trajectories`, 2-D navigation): the paths of a few test goals
  before adaptation and after each of ``eval.steps`` adaptation steps, goals marked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from metalearn._rng import make_generator
from metalearn.rl.types import Task
from metalearn.train.runlog import read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_adaptation_curve(run_dir: str | os.PathLike, title: str = "") -> Path:
    """Draw ``RUN_DIR/adaptation_curve.png`` from ``metrics.jsonl``.

    Training lines give ``return_before`` / ``return_after`` (the meta-batch's returns with the
    meta-parameters and after the inner step); validation lines give the fixed validation
    tasks' ``before`` and ``mean`` (after one step) with their 95% CI.

    Returns:
        Path of the PNG.
    """
    plt = _pyplot()
    run_dir = Path(run_dir)
    lines = read_metrics(run_dir / "metrics.jsonl")
    train = [x for x in lines if x["kind"] == "train" and "return_before" in x]
    val = [x for x in lines if x["kind"] == "val" and "before" in x]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = [x["step"] for x in train]
    ax.plot(steps, [x["return_before"] for x in train], color="C0", lw=1, alpha=0.8,
            label="before adaptation (meta-batch)")
    ax.plot(steps, [x["return_after"] for x in train], color="C1", lw=1, alpha=0.8,
            label="after 1 step (meta-batch)")
    if val:
        vs = [x["step"] for x in val]
        ax.errorbar(vs, [x["before"] for x in val], yerr=[x["before_ci95"] for x in val], fmt="o",
                    color="C0", ms=4, capsize=2, label="before (validation tasks, 95% CI)")
        ax.errorbar(vs, [x["mean"] for x in val], yerr=[x["ci95"] for x in val], fmt="s",
                    color="C1", ms=4, capsize=2, label="after 1 step (validation tasks, 95% CI)")
    ax.set(xlabel="meta-iteration", ylabel="average return", title=title or run_dir.name)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = run_dir / "adaptation_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_trajectories(run_dir: str | os.PathLike, cfg, algo, roll, tasks: Sequence[Task],
                      n_per_task: int = 2) -> Path:
    """Draw ``RUN_DIR/trajectories.png``: 2-D navigation paths to ``tasks``' goals before
    adaptation and after each of ``cfg.eval.steps`` steps (one panel each), goals as stars.

    The rollouts are seeded by ``eval.test_seed`` (the same picture every time).

    Returns:
        Path of the PNG.
    """
    from metalearn.rl.evaluate import adaptation_returns

    plt = _pyplot()
    result = adaptation_returns(algo, roll, tasks, n_per_task, make_generator(cfg.eval.test_seed, "plot"),
                                steps=cfg.eval.steps, keep_trajectories=True)
    shown = sorted(result.trajectories)
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.8), squeeze=False)
    for ax, k in zip(axes[0], shown):
        traj = result.trajectories[k]
        for i, task in enumerate(tasks):
            color = f"C{i % 10}"
            own = traj.task(i)
            for b in range(own.n_trajectories):
                n = int(own.mask[:, b].sum())
                xy = own.obs[:n, b]
                ax.plot(xy[:, 0], xy[:, 1], color=color, lw=1, alpha=0.8)
            ax.plot(*task["goal"], marker="*", ms=14, color=color, markeredgecolor="k")
        ax.plot(0, 0, "ko", ms=4)
        mean = sum(result.per_task[k]) / len(result.per_task[k])
        ax.set(title=("before adaptation" if k == 0 else f"after {k} step{'s' * (k != 1)}")
               + f"\nreturn {mean:.1f}", xlim=(-0.6, 0.6), ylim=(-0.6, 0.6), aspect="equal")
    fig.suptitle(f"{cfg.name}: {len(tasks)} test goals (stars), {n_per_task} trajectories each")
    fig.tight_layout()
    out = Path(run_dir) / "trajectories.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


__all__ = ["plot_adaptation_curve", "plot_trajectories"]
