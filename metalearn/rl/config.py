"""Typed configuration of a meta-RL run, saved as ``config.json``, overridable with dotted keys.

An :class:`RLRunConfig` nests an :class:`EnvConfig` (which task distribution), a
:class:`PolicyConfig`, the algorithm's own :class:`~metalearn.rl.maml_trpo.MAMLTRPOConfig`
(``algorithm.inner_lr``, ``algorithm.outer=ppo``, ``algorithm.first_order=true``), an
:class:`RLTrainConfig` and an :class:`RLEvalConfig`. ``metalearn train --preset
maml-trpo-navigation2d --set train.meta_iterations=50`` edits it like a supervised
:class:`~metalearn.train.config.RunConfig`: values are parsed and type-checked by the same
helpers (:func:`~metalearn.train.config.parse_literal`, :func:`~metalearn.train.config.coerce`).

Three seeded task streams never overlap: training tasks come from ``train.seed`` (and the rank),
validation tasks from ``train.val_seed``, the fixed test tasks of ``metalearn eval`` from
``eval.test_seed``; :func:`validate_rl` refuses equal seeds.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Literal

from metalearn.rl.maml_trpo import MAMLTRPOConfig
from metalearn.train.config import ConfigError, coerce, parse_literal, suggest


@dataclass
class EnvConfig:
    """The task distribution."""

    name: str = "navigation2d"
    """A name of ``metalearn.rl.envs.ENVIRONMENTS`` (navigation2d, halfcheetah-vel, halfcheetah-dir)
    or ``ml1-<task>``, Meta-World ML1 on a v3 task (ml1-reach-v3, ml1-push-v3, ...)."""
    horizon: int = 100
    """Steps per trajectory (the paper: 100 for 2-D navigation, 200 for HalfCheetah; ours for
    Meta-World ML1: 150, at most its max_path_length 500)."""
    num_envs: int = 0
    """Environments stepped together; 0: every trajectory of a rank's meta-batch at once. Smaller
    values roll the tasks out in groups (less memory for MuJoCo); a multiple of the
    trajectories per task."""


@dataclass
class PolicyConfig:
    """The Gaussian MLP policy."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths (64-64 tanh in the paper)."""
    init_std: float = 1.0
    """Initial standard deviation of every action coordinate."""


@dataclass
class RLTrainConfig:
    """Meta-training."""

    meta_iterations: int = 500
    """Outer updates (500 for 2-D navigation in the paper)."""
    meta_batch: int = 20
    """Tasks per meta-iteration, the total over torchrun ranks (20; 40 for HalfCheetah)."""
    trajectories: int = 20
    """Trajectories per task and phase (before and after adaptation)."""
    seed: int = 0
    """Seed of the initial weights and of the training tasks and rollouts."""
    val_seed: int = 1
    """Seed of the fixed validation tasks (distinct from train.seed and eval.test_seed)."""
    val_tasks: int = 10
    """Fixed validation tasks, evaluated after one adaptation step every eval_every iterations."""
    eval_every: int = 50
    """Validate every this many meta-iterations (and at the end); the best is checkpoints/best."""
    checkpoint_every: int = 50
    """Write the full-state checkpoint every this many meta-iterations (and at the end)."""
    log_every: int = 1
    """Write a metrics.jsonl line (returns before and after adaptation) every this many iterations."""
    outer_lr: float = 1e-3
    """Adam learning rate of the PPO outer step (unused by TRPO)."""
    device: str = "cpu"
    """``cpu`` or ``auto``: rollouts step the environments on the CPU, the policy stays there too."""
    tensorboard: bool = True
    """Also log to TensorBoard under ``RUN_DIR/tensorboard`` when it is installed."""


@dataclass
class RLEvalConfig:
    """The fixed test tasks of ``metalearn eval``."""

    test_tasks: int = 40
    """Number of fixed test tasks."""
    test_seed: int = 2
    """Seed of the test tasks and their rollouts (distinct from the train and validation seeds)."""
    steps: list[int] = field(default_factory=lambda: [1, 3])
    """Adaptation steps reported besides 0 (each: roll out the current policy, one PG step)."""
    trajectories: int = 20
    """Trajectories per task at each step."""


@dataclass
class RLRunConfig:
    """Everything that defines a meta-RL run; saved as ``config.json`` in the run directory.

    Examples:
        >>> cfg = apply_rl_overrides(RLRunConfig(), ["train.meta_iterations=5", "algorithm.outer=ppo"])
        >>> cfg.train.meta_iterations, cfg.algorithm.outer, RLRunConfig.from_dict(cfg.to_dict()) == cfg
        (5, 'ppo', True)
    """

    name: str = "rl-run"
    """Name of the run (the preset name by default)."""
    method: Literal["maml", "multitask", "random", "oracle"] = "maml"
    """What is trained (:mod:`metalearn.rl.baselines` for the others): ``maml`` (MAML-TRPO, or
    PPO with ``algorithm.outer=ppo``), ``multitask`` (one policy trained on all training tasks
    without an inner loop, fine-tuned at test with the same inner step), ``random`` (a random
    initialisation fine-tuned likewise; its training steps change nothing) or ``oracle`` (the
    task appended to the observation: no adaptation needed)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Task distribution."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Policy network."""
    algorithm: MAMLTRPOConfig = field(default_factory=MAMLTRPOConfig)
    """MAML-TRPO / PPO hyperparameters."""
    train: RLTrainConfig = field(default_factory=RLTrainConfig)
    """Meta-training."""
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)
    """Fixed test tasks."""
    notes: str = ""
    """Free text: the recipe's source and its deviations from the paper."""

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @staticmethod
    def from_dict(d: dict) -> RLRunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        cfg = RLRunConfig()
        for key, value in d.items():
            if key in SECTIONS and isinstance(value, dict):
                for k, v in value.items():
                    set_key(cfg, f"{key}.{k}", v)
            else:
                set_key(cfg, key, value)
        return cfg


SECTIONS = ("env", "policy", "algorithm", "train", "eval")


def is_rl_config(d: dict) -> bool:
    """Whether a ``config.json`` dict is a meta-RL run's (it has an ``env`` section)."""
    return isinstance(d.get("env"), dict)


def all_keys() -> list[str]:
    """Every settable dotted key."""
    keys = [f.name for f in dataclasses.fields(RLRunConfig) if f.name not in SECTIONS]
    hints = typing.get_type_hints(RLRunConfig)
    return keys + [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(hints[s])]


def set_key(cfg: RLRunConfig, key: str, value) -> None:
    """Set dotted ``key`` of ``cfg`` to ``value``, converted to the field's annotated type.

    Raises:
        ConfigError: unknown key (with the closest names) or a value of the wrong type.
    """
    parts = key.split(".")
    obj = cfg
    if len(parts) == 2 and parts[0] in SECTIONS:
        obj = getattr(cfg, parts[0])
    elif len(parts) != 1 or parts[0] in SECTIONS:
        raise ConfigError(f"unknown config key {key!r}.{suggest(key, all_keys())} Use section.field; "
                          f"sections: {', '.join(SECTIONS)}.")
    names = [f.name for f in dataclasses.fields(obj)]
    if parts[-1] not in names:
        prefix = parts[0] + "." if len(parts) == 2 else ""
        raise ConfigError(f"unknown config key {key!r}.{suggest(key, all_keys())} Keys of "
                          f"{prefix.rstrip('.') or 'the run'}: {', '.join(names)}.")
    setattr(obj, parts[-1], coerce(value, typing.get_type_hints(type(obj))[parts[-1]], key))


def apply_rl_overrides(cfg: RLRunConfig, overrides: list[str]) -> RLRunConfig:
    """Apply ``key=value`` overrides (``train.meta_iterations=50``) and validate; a new config.

    Raises:
        ConfigError: a malformed override, an unknown key, a wrong type, an invalid value.
    """
    cfg = RLRunConfig.from_dict(cfg.to_dict())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value, e.g. train.meta_iterations=50")
        key, text = item.split("=", 1)
        set_key(cfg, key.strip().removeprefix("--"), parse_literal(text))
    validate_rl(cfg)
    return cfg


def _positive(value: int, key: str, hint: str = "") -> None:
    if value < 1:
        raise ConfigError(f"{key} must be at least 1, got {value}{hint}")


def validate_rl(cfg: RLRunConfig) -> None:
    """Check every value that the types alone do not (ranges, names, seeds).

    Raises:
        ConfigError: naming the key and the fix.

    Examples:
        >>> validate_rl(RLRunConfig())
        >>> cfg = RLRunConfig()
        >>> cfg.env.horizon = 0
        >>> validate_rl(cfg)
        Traceback (most recent call last):
        ...
        metalearn.errors.ConfigError: env.horizon must be at least 1, got 0 (the MAML paper uses 100 for 2-D navigation, 200 for HalfCheetah)
    """
    from metalearn.rl.envs import ENV_FAMILIES, ENVIRONMENTS, env_builder

    try:
        env_builder(cfg.env.name)
    except KeyError:
        known = [*ENVIRONMENTS, *(f"{prefix}<task>" for prefix in ENV_FAMILIES)]
        raise ConfigError(f"env.name={cfg.env.name!r} is no environment.{suggest(cfg.env.name, ENVIRONMENTS)} "
                          f"Known: {', '.join(known)} (ml1-<task>: a Meta-World v3 task, e.g. "
                          "ml1-reach-v3).") from None
    _positive(cfg.env.horizon, "env.horizon",
              " (the MAML paper uses 100 for 2-D navigation, 200 for HalfCheetah)")
    t, e = cfg.train, cfg.eval
    for key, value in (("train.meta_iterations", t.meta_iterations), ("train.meta_batch", t.meta_batch),
                       ("train.trajectories", t.trajectories), ("train.val_tasks", t.val_tasks),
                       ("train.eval_every", t.eval_every), ("train.checkpoint_every", t.checkpoint_every),
                       ("train.log_every", t.log_every), ("eval.test_tasks", e.test_tasks),
                       ("eval.trajectories", e.trajectories), ("algorithm.inner_steps", cfg.algorithm.inner_steps)):
        _positive(value, key)
    if cfg.env.num_envs < 0 or cfg.env.num_envs % t.trajectories or (
            cfg.env.num_envs and cfg.env.num_envs % e.trajectories):
        raise ConfigError(f"env.num_envs={cfg.env.num_envs} must be 0 (all at once) or a multiple of "
                          f"train.trajectories={t.trajectories} and eval.trajectories={e.trajectories}")
    if not e.steps or any(s < 1 for s in e.steps):
        raise ConfigError(f"eval.steps={e.steps} must list adaptation steps >= 1, e.g. [1, 3]")
    if any(not h >= 1 for h in cfg.policy.hidden):
        raise ConfigError(f"policy.hidden={cfg.policy.hidden} must list layer widths >= 1, e.g. [64, 64]")
    if cfg.algorithm.inner_lr <= 0 or cfg.algorithm.max_kl <= 0 or t.outer_lr <= 0:
        raise ConfigError("algorithm.inner_lr, algorithm.max_kl and train.outer_lr must be positive")
    seeds = {"train.seed": t.seed, "train.val_seed": t.val_seed, "eval.test_seed": e.test_seed}
    if len(set(seeds.values())) < 3:
        raise ConfigError(f"the task streams must be distinct, got {seeds}: give train.seed, "
                          "train.val_seed and eval.test_seed three different values")
    if t.device not in ("cpu", "auto"):
        raise ConfigError(f"train.device={t.device!r}: meta-RL runs on the CPU (the environments step "
                          "there, and the small policy is fastest beside them); use train.device=cpu")


def rl_changes(a: RLRunConfig, b: RLRunConfig) -> dict[str, tuple]:
    """Dotted key -> ``(value in a, value in b)`` for every field that differs."""
    def flat(cfg: RLRunConfig) -> dict:
        out = {}
        for k, v in cfg.to_dict().items():
            if isinstance(v, dict):
                out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                out[k] = v
        return out

    fa, fb = flat(a), flat(b)
    return {k: (fa[k], fb[k]) for k in fa if fa[k] != fb[k]}


__all__ = ["EnvConfig", "PolicyConfig", "RLEvalConfig", "RLRunConfig", "RLTrainConfig",
           "apply_rl_overrides", "is_rl_config", "rl_changes", "set_key", "validate_rl"]
