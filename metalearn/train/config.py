"""Typed run configuration: dataclasses composed in Python, overridable with dotted keys.

A :class:`RunConfig` nests a :class:`DataConfig`, a :class:`ModelConfig`, an
:class:`AlgorithmConfig` and a :class:`TrainConfig`. Presets (``metalearn.presets``) are Python
functions returning a whole ``RunConfig``. From the command line, ``--set key=value`` edits one
field: ``train.steps=200``, ``data.k_shot=5``. The keyword arguments of the chosen backbone and
algorithm constructors are fields too (``model.hidden=64``, ``algorithm.inner_lr=0.4``): they are
type-checked against the constructor's signature, so a new algorithm needs no config code.

Values are parsed as JSON literals (``0.4``, ``true``, ``[40, 40]``, ``null``) or taken as plain
strings, never evaluated as code.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from metalearn.errors import ConfigError


@dataclass
class DataConfig:
    """Where tasks come from and what shape they have."""

    dataset: str = "sinusoid"
    """Task source, a name of ``metalearn.train.data.DATASETS`` (``metalearn list``)."""
    root: str | None = None
    """Data root holding the dataset folders (``None``: ``$METALEARN_DATA``)."""
    train_split: str = "vinyals-train"
    """Class split used for meta-training (image datasets)."""
    val_split: str = "vinyals-val"
    """Class split of the fixed validation episodes."""
    test_split: str = "vinyals-test"
    """Class split of the fixed test episodes (``metalearn eval --split``)."""
    image_size: int = 28
    """Side of the square images after resizing (image datasets)."""
    channels: int = 1
    """Image channels of the ``folder`` dataset, 1 (grey) or 3 (RGB); the others fix their own."""
    n_way: int | None = None
    """Classes per meta-training task; ``None`` for regression."""
    k_shot: int = 10
    """Support examples per class (per task for regression) during meta-training."""
    n_query: int = 10
    """Query examples per class (per task for regression) during meta-training."""
    eval_n_way: int | None = None
    """Classes per validation/test task; ``None``: same as ``n_way``."""
    eval_k_shot: int | None = None
    """Support examples per class at validation/test; ``None``: same as ``k_shot``."""
    eval_n_query: int | None = None
    """Query examples per class at validation/test; ``None``: same as ``n_query``."""
    val_episodes: int = 100
    """Fixed validation episodes evaluated every ``train.val_every`` steps."""
    test_episodes: int = 600
    """Fixed test episodes of ``metalearn eval`` (at least 600 for a reported number)."""
    val_seed: int = 1
    """Seed of the fixed validation episodes."""
    test_seed: int = 2
    """Seed of the fixed test episodes: the same for every method."""

    def eval_shape(self) -> tuple[int | None, int, int]:
        """``(n_way, k_shot, n_query)`` of validation and test episodes."""
        pick = lambda v, d: d if v is None else v  # noqa: E731
        return pick(self.eval_n_way, self.n_way), pick(self.eval_k_shot, self.k_shot), pick(
            self.eval_n_query, self.n_query)


@dataclass
class ModelConfig:
    """The backbone network."""

    backbone: str = "mlp"
    """Backbone name in ``metalearn.models.BACKBONES`` (``metalearn list``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the backbone constructor (set as ``model.<name>=value``)."""
    feature_maps: list[int] | None = None
    """View the backbone's flat features as maps of this shape ``[C, H, W]`` (for algorithms
    that compare feature maps, e.g. Relation Networks); ``None``: flat features."""


@dataclass
class AlgorithmConfig:
    """The meta-learning algorithm."""

    name: str = "maml"
    """Algorithm name in ``metalearn.algorithms.ALGORITHMS`` (``metalearn list``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the algorithm constructor after the backbone
    (set as ``algorithm.<name>=value``, e.g. ``algorithm.inner_lr=0.4``)."""


@dataclass
class TrainConfig:
    """The meta-optimisation."""

    steps: int = 1000
    """Meta-training iterations (outer-loop updates)."""
    meta_batch: int = 4
    """Tasks per meta-update."""
    optimizer: str = "adam"
    """Meta-optimizer: ``adam`` or ``sgd``."""
    lr: float = 1e-3
    """Meta learning rate."""
    weight_decay: float = 0.0
    """L2 weight decay of the meta-optimizer."""
    schedule: str = "constant"
    """Learning-rate schedule: ``constant``, ``step`` (times ``gamma`` every ``step_size``),
    ``cosine`` (to 0) or ``linear`` (to 0; Reptile's annealed meta step)."""
    step_size: int = 2000
    """Steps between learning-rate decays of the ``step`` schedule."""
    gamma: float = 0.5
    """Decay factor of the ``step`` schedule."""
    grad_clip: float | None = None
    """Clip the meta-gradient's global norm to this value; ``None``: no clipping."""
    val_every: int = 500
    """Evaluate on the fixed validation episodes every this many steps (and at the end)."""
    checkpoint_every: int = 500
    """Write the full-state checkpoint every this many steps (and at the end)."""
    log_every: int = 10
    """Write a training-metrics line to ``metrics.jsonl`` every this many steps."""
    seed: int = 0
    """Seed of the initial weights and of the training task sampler."""
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    tensorboard: bool = True
    """Also log to TensorBoard under ``RUN_DIR/tensorboard`` when it is installed."""


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config.json`` in the run directory."""

    name: str = "run"
    """Name of the run (the preset name by default)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Task source and task shape."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone network."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """Meta-learning algorithm."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Meta-optimisation."""
    notes: str = ""
    """Free text: the recipe's source and its deviations from the paper."""

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @staticmethod
    def from_dict(d: dict) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        cfg = RunConfig()
        for key, value in d.items():
            if key not in _SECTIONS:
                _set_field(cfg, key, value, "")
                continue
            section = getattr(cfg, key)
            for k, v in value.items():
                _set_field(section, k, v, key + ".")
        return cfg


_SECTIONS = ("data", "model", "algorithm", "train")


def field_docs(cls) -> dict[str, str]:
    """Field name -> docstring (the string literal after each field) of a config dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and \
                isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def suggest(name: str, choices) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp, key: str) -> Any:
    """Convert ``value`` (a parsed JSON literal or a string) to the annotated type ``tp``.

    Raises:
        ConfigError: naming ``key``, the expected type and the given value.
    """
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key} must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key} must be one of {typing.get_args(tp)}, got {value!r}")
    if origin in (tuple, list) or tp in (tuple, list) or (
            origin is not None and getattr(origin, "__name__", "") == "Sequence"):
        if isinstance(value, str):
            try:
                value = [json.loads(v) for v in value.split(",")]
            except json.JSONDecodeError:
                raise ConfigError(f"{key} must be a list like [40, 40], got {value!r}") from None
        if not isinstance(value, (list, tuple)):
            value = [value] if isinstance(value, (int, float)) else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list like [40, 40], got {value!r}")
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args else Any
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key} must be a JSON object, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def parse_literal(text: str) -> Any:
    """A command-line value: a JSON literal when it parses, otherwise the plain string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _dataclass_hints(obj) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


@dataclass(frozen=True)
class Option:
    """One constructor option of a backbone or algorithm: its type, default and help text."""

    annotation: Any
    default: Any
    doc: str = ""


def _config_class(cls):
    """The dataclass of a constructor's ``config`` parameter (``ProtoNet(backbone, config)``), or None."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        return None
    tp = hints.get("config")
    for cand in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(cand):
            return cand
    return None


def constructor_options(cls, skip: int = 0) -> dict[str, Option]:
    """The options of ``cls``: the fields of its ``config`` dataclass when its constructor takes
    one, otherwise its keyword parameters after ``self`` and ``skip`` positional ones."""
    config_cls = _config_class(cls)
    if config_cls is not None:
        hints = typing.get_type_hints(config_cls)
        docs = field_docs(config_cls)
        return {f.name: Option(hints[f.name],
                               f.default if f.default is not dataclasses.MISSING else None,
                               docs.get(f.name, ""))
                for f in dataclasses.fields(config_cls)}
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an unresolvable annotation: fall back to the default's type
        hints = {}
    params = [p for p in sig.parameters.values()
              if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    out = {}
    for p in params[skip:]:
        tp = hints.get(p.name, p.annotation)
        default = None if p.default is inspect.Parameter.empty else p.default
        if tp is inspect.Parameter.empty and default is not None:
            tp = type(default)
        out[p.name] = Option(tp, default, _arg_doc(cls, p.name))
    return out


def _arg_doc(cls, name: str) -> str:
    """The ``Args:`` entry of ``name`` in a Google-style class docstring."""
    lines = (inspect.getdoc(cls) or "").splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name}:"):
            text = [line.strip()[len(name) + 1:].strip()]
            indent = len(line) - len(line.lstrip())
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) > indent:
                    text.append(nxt.strip())
                else:
                    break
            return " ".join(text)
    return ""


def build_component(cls, options: dict, *args):
    """Instantiate ``cls(*args, config=Config(**options))`` or ``cls(*args, **options)``."""
    config_cls = _config_class(cls)
    if config_cls is not None:
        return cls(*args, config=config_cls(**options))
    return cls(*args, **options)


def _options_target(section_name: str, section) -> tuple[str, dict[str, inspect.Parameter]]:
    """Name and constructor parameters behind ``model.options`` / ``algorithm.options``."""
    if section_name == "model":
        from metalearn.models import BACKBONES

        table, name, what = BACKBONES, section.backbone, "backbone"
        skip = 0
    else:
        from metalearn.algorithms import ALGORITHMS

        table, name, what = ALGORITHMS, section.name, "algorithm"
        skip = 1  # the backbone
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}.{suggest(name, table)} "
                          f"Known: {', '.join(sorted(table))} (see `metalearn list`).")
    return name, constructor_options(table[name], skip)


def all_keys(cfg: RunConfig) -> list[str]:
    """Every settable dotted key of ``cfg``, including the backbone and algorithm options."""
    keys = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _SECTIONS]
    for name in _SECTIONS:
        section = getattr(cfg, name)
        keys += [f"{name}.{f.name}" for f in dataclasses.fields(section) if f.name != "options"]
        if name in ("model", "algorithm"):
            try:
                keys += [f"{name}.{k}" for k in _options_target(name, section)[1]]
            except ConfigError:
                pass
    return keys


def _set_field(obj, key: str, value: Any, prefix: str) -> None:
    hints = _dataclass_hints(obj)
    names = [f.name for f in dataclasses.fields(obj)]
    if key not in names:
        if prefix in ("model.", "algorithm."):
            obj.options[key] = value  # checked by validate() against the constructor
            return
        raise ConfigError(f"unknown config key {prefix + key!r}.{suggest(prefix + key, [prefix + n for n in names])} "
                          f"Keys of {prefix.rstrip('.') or 'the run'}: {', '.join(names)}.")
    tp = hints[key]
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{prefix + key} is a section; set one of its fields, e.g. "
                          f"{prefix + key}.{dataclasses.fields(tp)[0].name}=...")
    setattr(obj, key, coerce(value, tp, prefix + key))


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``key=value`` overrides and validate; returns a new config.

    Args:
        cfg: The base config (not modified).
        overrides: Strings like ``"algorithm.inner_lr=0.4"`` or ``"train.steps=200"``.

    Raises:
        ConfigError: unknown key (with the closest names), value of the wrong type, or
            malformed override.

    Examples:
        >>> cfg = apply_overrides(RunConfig(), ["train.steps=20", "data.k_shot=5"])
        >>> cfg.train.steps, cfg.data.k_shot
        (20, 5)
    """
    cfg = RunConfig.from_dict(cfg.to_dict())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value, e.g. train.steps=200")
        key, text = item.split("=", 1)
        key = key.strip().removeprefix("--")
        parts = key.split(".")
        value = parse_literal(text)
        if len(parts) == 1:
            _set_field(cfg, parts[0], value, "")
        elif len(parts) == 2 and parts[0] in _SECTIONS:
            section = getattr(cfg, parts[0])
            if parts[0] in ("model", "algorithm") and parts[1] not in (
                    "backbone", "name", "options", "feature_maps"):
                _, params = _options_target(parts[0], section)
                if parts[1] not in params:
                    raise ConfigError(
                        f"unknown config key {key!r}.{suggest(key, all_keys(cfg))} Options of "
                        f"{parts[0]} {_options_target(parts[0], section)[0]!r}: "
                        f"{', '.join(params) or '(none)'}.")
                section.options[parts[1]] = coerce(value, params[parts[1]].annotation, key)
            else:
                _set_field(section, parts[1], value, parts[0] + ".")
        else:
            raise ConfigError(f"unknown config key {key!r}.{suggest(key, all_keys(cfg))} Use "
                              f"section.field, sections: {', '.join(_SECTIONS)}.")
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Check every field, including the backbone and algorithm options against their constructors.

    Raises:
        ConfigError: with the fix.
    """
    for section_name in ("model", "algorithm"):
        section = getattr(cfg, section_name)
        name, params = _options_target(section_name, section)
        for k, v in list(section.options.items()):
            if k not in params:
                raise ConfigError(f"{name!r} has no option {section_name}.{k}.{suggest(k, params)} "
                                  f"Its options: {', '.join(params) or '(none)'}.")
            section.options[k] = coerce(v, params[k].annotation, f"{section_name}.{k}")
    from metalearn.train.data import DATASETS

    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.data.dataset!r}.{suggest(cfg.data.dataset, DATASETS)} "
                          f"Known: {', '.join(DATASETS)}.")
    t = cfg.train
    if t.optimizer not in ("adam", "sgd"):
        raise ConfigError(f"train.optimizer must be adam or sgd, got {t.optimizer!r}")
    if t.schedule not in ("constant", "step", "cosine", "linear"):
        raise ConfigError(f"train.schedule must be constant, step, cosine or linear, got {t.schedule!r}")
    for key in ("steps", "meta_batch", "val_every", "checkpoint_every", "log_every", "step_size"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1, got {getattr(t, key)}")
    if not 0 < t.lr < float("inf"):
        raise ConfigError(f"train.lr must be a positive number (e.g. 1e-3 for Adam), got {t.lr}")
    if not 0 <= t.weight_decay < float("inf"):
        raise ConfigError(f"train.weight_decay must be 0 or positive, got {t.weight_decay}")
    if not 0 < t.gamma <= 1:
        raise ConfigError(f"train.gamma (the step schedule's decay factor) must be in (0, 1], got {t.gamma}")
    if t.grad_clip is not None and not 0 < t.grad_clip < float("inf"):
        raise ConfigError(f"train.grad_clip must be positive, or null for no clipping, got {t.grad_clip}")
    d = cfg.data
    if d.channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 (grey) or 3 (RGB), got {d.channels}")
    for key in ("k_shot", "n_query", "val_episodes", "test_episodes"):
        if getattr(d, key) < 1:
            raise ConfigError(f"data.{key} must be at least 1, got {getattr(d, key)}")


def diff(a: RunConfig, b: RunConfig) -> list[str]:
    """Human-readable differences ``key: old -> new`` between two configs."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if k in _SECTIONS:
                out.update(flat(v, f"{k}."))
            elif k == "options":
                out.update(flat(v, prefix))
            else:
                out[prefix + k] = v
        return out

    fa, fb = flat(a.to_dict()), flat(b.to_dict())
    return [f"{k}: {fa.get(k, '(unset)')!r} -> {fb.get(k, '(unset)')!r}"
            for k in sorted(set(fa) | set(fb)) if fa.get(k, "(unset)") != fb.get(k, "(unset)")]
