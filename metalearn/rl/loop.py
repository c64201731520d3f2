"""The meta-RL training loop: sample tasks, roll out, adapt, roll out again, outer step; log,
validate, checkpoint, plot.

A run directory has the layout of a supervised run (:mod:`metalearn.train.loop`):
``config.json``, ``metrics.jsonl`` (one ``train`` line per iteration with ``return_before`` and
``return_after``, the pre- and post-adaptation returns, with ``success_before`` and
``success_after`` on Meta-World, and ``val`` lines), ``checkpoints/``
(``last``: the full state, generators included; ``best``: the policy with the best validation
return after one adaptation step), ``tensorboard/``, ``learning_curve.png`` and, from
:mod:`metalearn.rl.plots`, ``adaptation_curve.png`` (and ``trajectories.png`` for 2-D
navigation). Resuming from ``last`` equals the uninterrupted run bit for bit: the task and
rollout generators of every rank are in the checkpoint.

Under torchrun each rank draws its own ``meta_batch / world`` tasks (its own seeded streams),
rolls them out and adapts to them; the outer step then equals one process's on the union of
the ranks' tasks: PPO averages the gradients before each optimizer step, and TRPO's step
(``MAMLTRPO.step(..., mean=Ranks.mean)``) averages the surrogate's gradient, every Hessian-vector product
of the KL and the line search's surrogate and KL values, so the conjugate gradient and the line
search run identically on every rank.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from metalearn._rng import make_generator
from metalearn.rl.baselines import MultiTaskPolicy, OraclePolicy, RandomInit
from metalearn.rl.config import (
    RLRunConfig,
    apply_rl_overrides,
    is_rl_config,
    rl_changes,
    validate_rl,
)
from metalearn.rl.maml_trpo import MAMLTRPO
from metalearn.rl.policies import GaussianMLPPolicy, check_action_space
from metalearn.rl.rollout import rollout
from metalearn.rl.types import Task, Trajectories, VectorTaskEnv
from metalearn.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from metalearn.train.config import ConfigError
from metalearn.train.distributed import Ranks, check_meta_batch, check_resume_world, world_size
from metalearn.train.distributed import setup as setup_distributed
from metalearn.train.loop import NonFiniteLossError
from metalearn.train.runlog import RunLogger, is_run_dir, plot_learning_curve


def build_env(cfg: RLRunConfig, num_envs: int) -> VectorTaskEnv:
    """The configured environment with ``num_envs`` copies.

    Raises:
        ConfigError: the environment needs an extra that is not installed (the pip command),
            its action space is not continuous, or it refuses a value (an unknown Meta-World
            task, a horizon beyond its limit).
    """
    from metalearn.rl.envs import env_builder

    try:
        env = env_builder(cfg.env.name)(num_envs=num_envs, horizon=cfg.env.horizon)
    except ImportError as e:
        raise ConfigError(f"env.name={cfg.env.name} needs the meta-RL extra: {e}") from None
    except ValueError as e:
        raise ConfigError(f"env.name={cfg.env.name}: {e}") from None
    space = getattr(env, "single_action_space", None) or getattr(env, "action_space", None)
    if space is not None:
        try:
            check_action_space(space)
        except TypeError as e:
            raise ConfigError(f"env.name={cfg.env.name}: {e}") from None
    return OraclePolicy.observe(env) if cfg.method == "oracle" else env


class Roller:
    """Rolls out tasks in groups of at most ``env.num_envs`` environments (0: all at once),
    building one environment per group size on first use.

    Args:
        cfg: The run config (environment name, horizon, ``env.num_envs``).
        forward: The policy as a pure function.
    """

    def __init__(self, cfg: RLRunConfig, forward):
        self.cfg, self.forward = cfg, forward
        self.envs: dict[int, VectorTaskEnv] = {}

    def env(self, n: int) -> VectorTaskEnv:
        if n not in self.envs:
            self.envs[n] = build_env(self.cfg, n)
        return self.envs[n]

    def __call__(self, params, tasks: Sequence[Task], n_per_task: int,
                 generator: torch.Generator) -> Trajectories:
        """Trajectories of every task (one parameter dict, or one per task)."""
        group = len(tasks) if not self.cfg.env.num_envs else max(1, self.cfg.env.num_envs // n_per_task)
        parts = []
        for start in range(0, len(tasks), group):
            chunk = list(tasks[start:start + group])
            p = params if isinstance(params, dict) else list(params[start:start + group])
            parts.append(rollout(self.env(len(chunk) * n_per_task), self.forward, p, chunk,
                                 n_per_task, generator))
        return cat_trajectories(parts)

    def close(self) -> None:
        for env in self.envs.values():
            if hasattr(env, "close"):
                env.close()


def cat_trajectories(parts: Sequence[Trajectories]) -> Trajectories:
    """Trajectories of several task groups as one batch, task ids renumbered in order."""
    if len(parts) == 1:
        return parts[0]
    ids, n = [], 0
    for p in parts:
        ids.append(p.task_ids + n)
        n += p.n_tasks
    success = None if parts[0].success is None else torch.cat([p.success for p in parts])
    return Trajectories(*(torch.cat([getattr(p, f) for p in parts], 1) for f in ("obs", "actions", "rewards", "mask")),
                        torch.cat(ids), success)


def build_rl_algorithm(cfg: RLRunConfig, env: VectorTaskEnv) -> MAMLTRPO:
    """The policy and algorithm of ``cfg`` sized for ``env`` (seeded by ``train.seed``)."""
    torch.manual_seed(cfg.train.seed)
    policy = GaussianMLPPolicy(env.obs_dim, env.act_dim, hidden=tuple(cfg.policy.hidden),
                               init_std=cfg.policy.init_std)
    return METHODS[cfg.method](policy, cfg.algorithm)


METHODS = {"maml": MAMLTRPO, "multitask": MultiTaskPolicy, "random": RandomInit, "oracle": OraclePolicy}
"""``method`` -> the algorithm class (an oracle's environment appends the task, :func:`build_env`)."""


class _AveragingOptimizer:
    """An optimizer whose ``step`` first averages the gradients over the ranks (PPO outer step)."""

    def __init__(self, opt: torch.optim.Optimizer, params: list, ranks: Ranks):
        self.opt, self.params, self.ranks = opt, params, ranks

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.ranks.average_gradients(self.params)
        self.opt.step()


def outer_step(algo: MAMLTRPO, train: Trajectories, valid: Trajectories, ranks: Ranks,
               opt: torch.optim.Optimizer | None) -> dict[str, float]:
    """The outer update of one meta-iteration on this rank's share of the tasks."""
    if ranks.world == 1:
        return algo.step(train, valid, optimizer=opt)
    if algo.config.outer == "trpo":
        return algo.step(train, valid, mean=ranks.mean)
    params = [p for p in algo.parameters() if p.requires_grad]
    metrics = algo.step(train, valid, optimizer=_AveragingOptimizer(opt, params, ranks))
    means = ranks.mean(torch.tensor(list(metrics.values()), dtype=torch.float64))
    return dict(zip(metrics, means.tolist()))


@dataclass
class RLTrainResult:
    """What :func:`train_rl` returns."""

    run_dir: Path
    iterations: int
    best_step: int | None
    best: float | None
    metrics: dict
    seconds: float


def train_generators(seed: int, rank: int) -> dict[str, torch.Generator]:
    """This rank's task and rollout generators (independent streams per rank)."""
    return {"tasks": make_generator(seed, "rl-tasks", rank), "rollouts": make_generator(seed, "rl-rollouts", rank)}


def train_rl(cfg: RLRunConfig, out: str | os.PathLike, resume: bool = False, force: bool = False,
             quiet: bool = False, stop_after: int | None = None) -> RLTrainResult:
    """Meta-train ``cfg`` into the run directory ``out``.

    Args:
        cfg: The run config (validated here).
        out: Run directory, created if missing; without ``resume`` it must hold no run yet.
        resume: Continue from ``out/checkpoints/last`` (``cfg`` must equal the saved config but
            for a higher ``train.meta_iterations``).
        force: Resume even with another config.
        quiet: Print nothing.
        stop_after: Stop (after checkpointing) once this many iterations are done, as if
            interrupted.

    Returns:
        An :class:`RLTrainResult`.

    Raises:
        ConfigError: invalid config, a missing extra, a discrete action space, resuming with
            another config.
        DistributedError: a meta-batch that the torchrun ranks cannot share equally.
        CheckpointError: resuming without a checkpoint, or starting over an existing run.
        NonFiniteLossError: the environment returned NaN/inf (task and step named); the last
            good checkpoint is kept.

    Examples:
        >>> import tempfile
        >>> from metalearn.rl.config import apply_rl_overrides
        >>> cfg = apply_rl_overrides(RLRunConfig(), ["env.horizon=5", "train.meta_iterations=1",
        ...     "train.meta_batch=2", "train.trajectories=2", "train.val_tasks=2", "policy.hidden=[8]",
        ...     "train.tensorboard=false"])
        >>> train_rl(cfg, tempfile.mkdtemp(), quiet=True).iterations
        1
    """
    start_time = time.perf_counter()
    validate_rl(cfg)
    check_meta_batch(cfg.train.meta_batch, world_size())  # before any rendezvous
    build_env(cfg, 1)  # a missing extra or a discrete action space, before the folder is touched
    ranks, _ = setup_distributed(torch.device("cpu"))
    try:
        return _train(cfg, Path(out), ranks, start_time, resume, force, quiet, stop_after)
    finally:
        ranks.close()


def _open_run(cfg: RLRunConfig, run_dir: Path, resume: bool, force: bool, ranks: Ranks, say) -> dict | None:
    ckpt = run_dir / "checkpoints"
    saved = None
    if resume:
        saved = load_checkpoint(ckpt, "last")
        found = rl_changes(RLRunConfig.from_dict(saved["config"]), cfg)
        longer = found.pop("train.meta_iterations", None)
        if longer is not None and longer[1] < saved["step"]:
            found["train.meta_iterations"] = longer
        if found and not force:
            lines = "\n  ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in found.items())
            raise ConfigError(f"the config differs from the one this run was started with:\n  {lines}\n"
                              "resume without --preset/--set to keep it (raising train.meta_iterations "
                              "is allowed), or pass --force")
        if longer is not None and longer[1] >= saved["step"]:
            say(f"extending the run from {longer[0]} to {longer[1]} meta-iterations")
    elif (ckpt / "last.json").exists():
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it or choose "
                              "another --out folder")
    elif run_dir.is_dir() and not is_run_dir(run_dir) and any(run_dir.iterdir()):
        raise CheckpointError(f"{run_dir} is not a metalearn run directory and holds other files: "
                              "train into a new or empty --out folder")
    ranks.barrier()
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    return saved


def _train(cfg: RLRunConfig, run_dir: Path, ranks: Ranks, start_time: float, resume: bool,
           force: bool, quiet: bool, stop_after: int | None) -> RLTrainResult:
    from metalearn.rl.evaluate import adaptation_returns, validation_tasks

    t, main = cfg.train, ranks.is_main
    say = (lambda *a: None) if quiet or not main else (lambda *a: print(*a, file=sys.stderr, flush=True))
    saved = _open_run(cfg, run_dir, resume, force, ranks, say)
    ckpt = run_dir / "checkpoints"
    n_local = t.meta_batch // ranks.world
    probe = build_env(cfg, 1)
    algo = build_rl_algorithm(cfg, probe)
    roll = Roller(cfg, algo.forward_fn)
    params = [p for p in algo.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=t.outer_lr) if cfg.algorithm.outer == "ppo" else None
    gens = train_generators(t.seed, ranks.rank)
    step, best, best_step, before = 0, None, None, 0.0
    if saved is not None:
        s = saved["state"]
        load_model_state(algo, s["model"])
        if opt is not None:
            opt.load_state_dict(s["optimizer"])
        check_resume_world(len(s["generators"]), ranks.world)
        for name, state in s["generators"][ranks.rank].items():
            gens[name].set_state(state)
        step, best, best_step = saved["step"], saved["extra"].get("best"), saved["extra"].get("best_step")
        before = float(saved["extra"].get("time_s", 0.0))
        say(f"resuming {run_dir} at meta-iteration {step}")
    saved_step = step if saved is not None else None
    clock = lambda: before + time.perf_counter() - start_time  # noqa: E731
    logger = RunLogger(run_dir, resume_step=step if resume else None, tensorboard=t.tensorboard,
                       run_name=cfg.name, params=cfg.to_dict(), clock=clock) if main else None
    val_tasks = validation_tasks(cfg, probe)
    end = t.meta_iterations if stop_after is None else min(t.meta_iterations, stop_after)
    metrics: dict = {}
    last_print = 0.0
    try:
        while step < end:
            try:
                tasks = probe.sample_tasks(n_local, gens["tasks"])
                train = roll(algo.policy_params(), tasks, t.trajectories, gens["rollouts"])
                valid = roll(algo.adapt(train), tasks, t.trajectories, gens["rollouts"])
            except FloatingPointError as e:
                kept = f"the last good checkpoint (meta-iteration {saved_step}) is kept in {ckpt}" \
                    if saved_step is not None else "no checkpoint was written yet"
                raise NonFiniteLossError(f"{e} at meta-iteration {step + 1}: training stopped; {kept}") from None
            metrics = outer_step(algo, train, valid, ranks, opt)
            means = [train.returns().mean(), valid.returns().mean()]
            if train.success is not None:  # Meta-World: the fraction of successful trajectories
                means += [train.success.mean(), valid.success.mean()]
            means = ranks.mean(torch.stack(means).double()).tolist()
            metrics = {"loss": metrics["loss_before"], **metrics, "return_before": means[0],
                       "return_after": means[1]}
            if train.success is not None:
                metrics.update(success_before=means[2], success_after=means[3])
            step += 1
            if main and (step % t.log_every == 0 or step == t.meta_iterations):
                logger.log(step, "train", metrics)
            if main and not quiet and (time.perf_counter() - last_print > 30 or step == end or step == 1):
                last_print = time.perf_counter()
                say(f"{cfg.name} iteration {step}/{t.meta_iterations}: return before adaptation "
                    f"{metrics['return_before']:.2f}, after {metrics['return_after']:.2f}"
                    + (f" | best val {best:.2f}" if best is not None else ""))
            if main and (step % t.eval_every == 0 or step == t.meta_iterations):
                val = adaptation_returns(algo, roll, val_tasks, t.trajectories, make_generator(t.val_seed, "rollouts"),
                                         steps=(1,))
                (m0, c0), (m1, c1) = val.summary()[0], val.summary()[1]
                logger.log(step, "val", {"metric": "return", "mean": m1, "ci95": c1, "before": m0,
                                         "before_ci95": c0})
                improved = best is None or m1 > best
                if improved:
                    best, best_step = m1, step
                    save_checkpoint(ckpt, "best", {"model": algo.state_dict()}, step=step,
                                    config=cfg.to_dict(), extra={"val": val.to_dict()})
                say(f"iteration {step}: validation return {m0:.2f} ± {c0:.2f} before, {m1:.2f} ± {c1:.2f} "
                    "after one step" + (" (best)" if improved else ""))
            if step % t.checkpoint_every == 0 or step == end:
                states = ranks.gather({k: g.get_state() for k, g in gens.items()})
                if main:
                    state = {"model": algo.state_dict(), "generators": states,
                             "optimizer": opt.state_dict() if opt is not None else {}}
                    save_checkpoint(ckpt, "last", state, step=step, config=cfg.to_dict(),
                                    extra={"best": best, "best_step": best_step, "time_s": clock()})
                saved_step = step
    finally:
        if logger is not None:
            logger.close()
        roll.close()
    if main and step == t.meta_iterations:
        write_plots(run_dir, cfg, algo, roll, quiet)
    ranks.barrier()
    return RLTrainResult(run_dir, step, best_step, best, metrics, time.perf_counter() - start_time)


def write_plots(run_dir: Path, cfg: RLRunConfig, algo: MAMLTRPO, roll: Roller, quiet: bool = False) -> list[Path]:
    """``learning_curve.png``, ``adaptation_curve.png`` and, for 2-D navigation,
    ``trajectories.png`` (a few test goals before and after each ``eval.steps``)."""
    try:
        from metalearn.rl.evaluate import test_tasks
        from metalearn.rl.plots import plot_adaptation_curve, plot_trajectories
        written = [plot_learning_curve(run_dir, title=cfg.name), plot_adaptation_curve(run_dir, cfg.name)]
        if cfg.env.name == "navigation2d":
            written.append(plot_trajectories(run_dir, cfg, algo, roll, test_tasks(cfg, roll.env(1))[:4]))
        return written
    except ImportError:
        if not quiet:
            print(f"{cfg.name}: plots not drawn: matplotlib is not installed (pip install "
                  "'metalearn[train]'); metrics.jsonl holds the curves", file=sys.stderr)
        return []


def load_rl_run(run_dir: str | os.PathLike, tag: str = "best") -> tuple[MAMLTRPO, RLRunConfig, int]:
    """The algorithm of a meta-RL run with the weights of checkpoint ``tag``.

    Returns:
        ``(algo, cfg, step)``.

    Raises:
        CheckpointError: no such checkpoint (train first).
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {run_dir} is not a run directory")
    cfg = RLRunConfig.from_dict(json.loads(cfg_path.read_text()))
    saved = load_checkpoint(run_dir / "checkpoints", tag)
    algo = build_rl_algorithm(cfg, build_env(cfg, 1))
    load_model_state(algo, saved["state"]["model"], source=str(run_dir / "checkpoints" / tag))
    return algo, cfg, int(saved["step"])


def is_rl_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir/config.json`` is a meta-RL run's."""
    try:
        return is_rl_config(json.loads((Path(run_dir) / "config.json").read_text()))
    except (OSError, ValueError):
        return False


def train_command(args, presets: dict) -> int:
    """``metalearn train`` for a meta-RL preset or run (called by :mod:`metalearn.cli.main` with
    the preset table ``metalearn.presets.RL_PRESETS``, a higher layer)."""
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.preset is None:
        base = RLRunConfig.from_dict(json.loads((Path(args.out) / "config.json").read_text()))
    else:
        base = presets[args.preset]()
    cfg = apply_rl_overrides(base, overrides)
    if args.name:
        cfg.name = args.name
    elif args.preset is not None and set(rl_changes(base, cfg)) - {"train.device", "train.tensorboard"}:
        cfg.name = base.name + "+modified"
    if args.show_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    out = Path(args.out or Path("runs") / cfg.name)
    rank0 = os.environ.get("RANK", "0") == "0"
    if not args.quiet and rank0:
        outer = cfg.algorithm.outer.upper()
        what = {"maml": f"MAML-{outer}", "multitask": f"a multi-task policy ({outer})",
                "random": "a random initialisation (no training)",
                "oracle": f"an oracle policy that sees the task ({outer})"}[cfg.method]
        print(f"training {cfg.name}: {what} on {cfg.env.name} "
              f"(horizon {cfg.env.horizon}), {cfg.train.meta_iterations} meta-iterations of "
              f"{cfg.train.meta_batch} tasks x {cfg.train.trajectories} trajectories -> {out}", flush=True)
    if args.overwrite and not args.resume and rank0 and is_run_dir(out):
        from metalearn.train.runlog import remove_run_files

        remove_run_files(out, keep=("config.json",))
        for extra in ("adaptation_curve.png", "trajectories.png"):
            (out / extra).unlink(missing_ok=True)
    result = train_rl(cfg, out, resume=args.resume, force=args.force, quiet=args.quiet)
    if rank0:
        best = f"best validation return {result.best:.2f} at iteration {result.best_step}" \
            if result.best is not None else "no validation"
        print(f"done: {result.iterations} meta-iterations in {result.seconds:.0f} s; {best}")
        print(f"checkpoints: {out / 'checkpoints'}  curves: {out / 'learning_curve.png'}, "
              f"{out / 'adaptation_curve.png'}  metrics: {out / 'metrics.jsonl'}")
    return 0


__all__ = ["RLTrainResult", "Roller", "build_env", "build_rl_algorithm", "cat_trajectories",
           "is_rl_run", "load_rl_run", "outer_step", "train_command", "train_generators", "train_rl",
           "write_plots"]
