"""Typed run configuration: dataclasses composed in Python, overridable with dotted keys.

A :class:`RunConfig` nests a :class:`DataConfig`, a :class:`ModelConfig`, an
:class:`AlgorithmConfig` and a :class:`TrainConfig`. Presets (``metalearn.presets``) are Python
functions returning a whole ``RunConfig``. From the command line, ``--set key=value`` edits one
field: ``train.steps=200``, ``data.k_shot=5``. The options of the chosen backbone and algorithm
are fields too (``model.hidden=64``, ``algorithm.inner_lr=0.4``, or with the section spelled out,
``algorithm.options.inner_lr=0.4``). They are resolved once into the component's typed config
(:meth:`AlgorithmConfig.resolve` -> e.g. ``MAMLConfig``; :meth:`ModelConfig.resolve` -> a
dataclass of the backbone constructor's keyword arguments), so a new algorithm needs no config
code, and the saved ``config.json`` holds every option, defaults included.

Values are parsed as JSON literals (``0.4``, ``true``, ``[40, 40]``, ``null``) or taken as plain
strings, never evaluated as code.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import sys
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from metalearn.errors import ConfigError

# The name tables (ALGORITHMS, BACKBONES, DATASETS) are imported where they are used: they
# import torch, which `metalearn train --help` (these dataclasses' docs) does not need.


@dataclass
class DataConfig:
    """Where tasks come from and what shape they have."""

    dataset: str = "sinusoid"
    """Task source, a name of ``metalearn.data.registry.DATASETS`` (``metalearn list``)."""
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
    rotations: bool = False
    """Omniglot's Lake splits (``background``, ``evaluation``, ``all``): add each character's
    90/180/270 degree rotations as new classes (the ``vinyals-*`` splits hold them already)."""
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    """``folder`` dataset of one flat ``ROOT/<class>/`` folder: fractions ``[train, val, test]``
    of its classes in each split (written to ``RUN_DIR/splits.json``)."""
    split_seed: int = 0
    """Seed of that class split of a flat ``folder`` dataset."""
    augment: list[Literal["crop", "flip", "rotate"]] = field(default_factory=list)
    """Random augmentation of meta-training images, in this order, each image its own draw from
    the sampler's generator: ``crop`` (shift by up to ``augment_padding`` pixels, zero-padded),
    ``flip`` (left-right, p=1/2), ``rotate`` (up to +-``augment_degrees``). Never applied to the
    fixed validation and test episodes."""
    augment_padding: int = 4
    """Zero padding in pixels of the ``crop`` augmentation."""
    augment_degrees: float = 10.0
    """Largest angle of the ``rotate`` augmentation."""
    fold: int = 1
    """Text intent datasets (``banking77``, ``clinc150``, ``hwu64``): which of the five
    ProtAugment class folds (1-5) gives the train/val/test intents."""
    tokenizer: str = "wordpiece"
    """Text datasets: ``wordpiece`` or ``bpe`` (a vocabulary trained with ``tokenizers`` on the
    meta-training classes' texts only, saved with the run), or the path of a pretrained model
    folder (or ``tokenizer.json``) whose tokenizer is used as it is."""
    vocab_size: int = 8000
    """Text datasets: size of the trained vocabulary (``model.vocab_size`` must be at least this)."""
    max_length: int = 64
    """Text datasets: tokens per text; longer texts are truncated (said once), shorter padded."""
    lowercase: bool = True
    """Text datasets: lower-case before tokenising (a trained vocabulary only)."""
    text_column: str = "text"
    """``data.dataset=text-file``: the column (CSV/TSV header, JSONL key) holding the texts."""
    label_column: str = "label"
    """``data.dataset=text-file``: the column holding the class names."""
    protocol: Literal["melu", "mamo"] = "melu"
    """Ratings datasets (each user a task, :mod:`metalearn.data.user_tasks`): ``melu`` (users
    with 13-100 ratings; 10 random ones are the query, the rest the support) or ``mamo`` (each
    user's first 20 ratings by time: the first 15 the support, the last 5 the query)."""
    user_split: Literal["random", "time"] = "random"
    """Ratings datasets: split the users into train/val/test by ``data.split_fractions`` at
    random (seeded by ``data.split_seed``) or by time (MAMO: the users who arrived last are the
    test users)."""
    item_cold: bool = False
    """Ratings datasets: hold ``data.cold_fraction`` of the items out of meta-training; the
    validation and test queries are then ratings of those unseen items only."""
    cold_fraction: float = 0.2
    """Ratings datasets with ``data.item_cold``: the share of items held out (seeded by
    ``data.split_seed``)."""
    group_sizes: bool = False
    """Ratings datasets: draw each meta-training batch among users of one support size, so that
    MAML, MeLU and Meta-SGD map it with ``vmap`` instead of one user at a time (the expected
    meta-gradient is unchanged: :class:`~metalearn.data.user_tasks.UserTaskSampler`)."""

    episodes: Literal["n-way", "meta-dataset"] = "n-way"
    """How classification tasks are drawn: ``n-way`` (every task ``n_way``-way ``k_shot``-shot
    with ``n_query`` queries per class) or ``meta-dataset`` (the Meta-Dataset protocol,
    Triantafillou et al. 2020, :mod:`metalearn.data.metadataset`: 5 to 50 ways, imbalanced
    shots, up to 10 queries per class; ``n_way``, ``k_shot`` and ``n_query`` are then unused)."""
    hierarchy: Literal["auto", "none", "names", "domains", "wordnet"] = "auto"
    """Meta-Dataset episodes: the class hierarchy each episode is drawn within
    (:mod:`metalearn.data.hierarchy`). ``auto``: the dataset's own, as Meta-Dataset does
    (Omniglot: one alphabet per episode; ``folder-tree``: one group folder; ``clinc150``: one
    domain; ``md-ilsvrc``: one WordNet node), none for other datasets; ``none``: flat; ``names``:
    the first ``/``-separated part of the class names; ``domains``: CLINC150's domains.json;
    ``wordnet``: ILSVRC's WordNet DAG."""
    sources: list[dict] = field(default_factory=list)
    """Multi-source training (Meta-Dataset): further datasets, each a JSON object of ``data``
    fields that differ from this section's, plus an optional ``name`` (default: its dataset) and
    ``train`` (``false``: evaluated, never trained on, e.g. Traffic Signs), e.g.
    ``[{"dataset": "folder", "root": "/data/flowers", "channels": 1, "name": "flowers"}]``. The
    source of each training episode is drawn with ``source_weights``; validation and test report
    each source with its own CI."""
    source_weights: list[float] | None = None
    """Multi-source: the probability weight of each training source (this section's dataset
    first, then ``sources``); ``None``: uniform, as Meta-Dataset samples its sources."""

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
    """Keyword arguments of the backbone constructor (set as ``model.<name>=value``); after
    :func:`validate`, all of them, typed (:meth:`resolve`)."""
    feature_maps: list[int] | None = None
    """View the backbone's flat features as maps of this shape ``[C, H, W]`` (for algorithms
    that compare feature maps, e.g. Relation Networks); ``None``: flat features."""
    weights: str | None = None
    """Pretrained backbone weights to start meta-training from: a ``.safetensors`` file or a
    ``.pt``/``.pth`` state dict (read with ``weights_only=True``; a prefix such as ``backbone.``
    is found); ``None``: random initialisation. Only the start: a resumed run continues from its
    checkpoint."""

    def resolve(self):
        """The backbone's options as its typed options dataclass (:func:`options_class`).

        Raises:
            ConfigError: unknown backbone or option (with the closest names), or a value of the
                wrong type.
        """
        from metalearn.models import BACKBONES

        return _resolve("model", self.backbone, self.options, BACKBONES, "backbone", skip=0)


@dataclass
class AlgorithmConfig:
    """The meta-learning algorithm."""

    name: str = "maml"
    """Algorithm name in ``metalearn.algorithms.ALGORITHMS`` (``metalearn list``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Fields of the algorithm's config dataclass (set as ``algorithm.<name>=value``, e.g.
    ``algorithm.inner_lr=0.4``); after :func:`validate`, all of them, typed (:meth:`resolve`)."""

    def resolve(self):
        """The options as the algorithm's own config, e.g. a ``MAMLConfig`` for ``maml``.

        Raises:
            ConfigError: unknown algorithm or option (with the closest names), or a value of
                the wrong type.
        """
        from metalearn.algorithms import ALGORITHMS

        return _resolve("algorithm", self.name, self.options, ALGORITHMS, "algorithm", skip=1)


@dataclass
class TrainConfig:
    """The meta-optimisation."""

    steps: int = 1000
    """Meta-training iterations (outer-loop updates)."""
    meta_batch: int = 4
    """Tasks per meta-update."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """Meta-optimizer: ``adam``, ``adamw`` (weight decay decoupled from the gradient) or ``sgd``."""
    lr: float = 1e-3
    """Meta learning rate."""
    weight_decay: float = 0.0
    """L2 weight decay of the meta-optimizer."""
    schedule: Literal["constant", "step", "cosine", "linear"] = "constant"
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
    loggers: list[Literal["mlflow", "wandb"]] = field(default_factory=list)
    """Experiment trackers to log to as well, e.g. ``["mlflow"]`` (``pip install
    'metalearn[mlflow]'``) or ``["wandb"]``; where they log comes from their environment
    variables (``MLFLOW_TRACKING_URI``, ``WANDB_PROJECT``, ``WANDB_MODE``...)."""


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
    """Field name -> help text of a config dataclass: the string literal after each field, or
    the ``doc`` metadata of the fields of an :func:`options_class` made from a constructor.

    Python keeps no attribute docstrings at runtime (PEP 224 was rejected), so reading them
    from the class source with ``ast`` is the simplest way; fields of a parent class (e.g.
    ``MAMLConfig``'s in ``MetaSGDConfig``) are read from the parent's source.
    """
    docs: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # made at runtime: no source
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                    isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and \
                    isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    for f in dataclasses.fields(cls):
        if f.metadata.get("doc"):
            docs[f.name] = f.metadata["doc"]
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
        choices = typing.get_args(tp)
        if value in choices:
            return value
        names = [str(c) for c in choices]
        raise ConfigError(f"{key} must be {', '.join(names[:-1])} or {names[-1]}, got {value!r}."
                          + suggest(str(value), names))
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
    """One option of a backbone or algorithm: its type, default and help text."""

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


@functools.cache
def options_class(cls, skip: int = 0) -> type:
    """The typed config of component ``cls``, the type its options resolve to.

    An algorithm's own config dataclass when its constructor takes one (``MAML(backbone,
    config: MAMLConfig)``). For a constructor with keyword arguments instead (the backbones:
    ``Conv4(in_channels=1, hidden=64, ...)``), a dataclass made once from its signature, named
    e.g. ``Conv4Options``: one field per parameter after ``self`` and ``skip`` positional ones,
    with the annotation, the default and the ``Args:`` entry of the class docstring as help.
    """
    config_cls = _config_class(cls)
    if config_cls is not None:
        return config_cls
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an unresolvable annotation: fall back to the default's type
        hints = {}
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    fields = []
    for p in params[skip:]:
        tp = hints.get(p.name, p.annotation)
        if tp is inspect.Parameter.empty:
            tp = Any if p.default in (inspect.Parameter.empty, None) else type(p.default)
        default = dataclasses.MISSING if p.default is inspect.Parameter.empty else p.default
        fields.append((p.name, tp, field(default=default, metadata={"doc": _arg_doc(cls, p.name)})))
    made = dataclasses.make_dataclass(f"{cls.__name__}Options", fields)
    made.__module__ = __name__
    return made


def component_options(config_cls) -> dict[str, Option]:
    """Name -> :class:`Option` of each field of a typed component config (``metalearn list``)."""
    hints, docs = typing.get_type_hints(config_cls), field_docs(config_cls)
    return {f.name: Option(hints[f.name], None if f.default is dataclasses.MISSING else f.default,
                           docs.get(f.name, "")) for f in dataclasses.fields(config_cls)}


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


def _component(name: str, table: dict, what: str, skip: int) -> type:
    """The typed config class behind ``model.options`` / ``algorithm.options``."""
    if name not in table:
        raise ConfigError(f"unknown {what} {name!r}.{suggest(name, table)} "
                          f"Known: {', '.join(sorted(table))} (see `metalearn list`).")
    return options_class(table[name], skip)


def _resolve(section: str, name: str, options: dict, table: dict, what: str, skip: int):
    config_cls = _component(name, table, what, skip)
    hints = typing.get_type_hints(config_cls)
    values = {}
    for k, v in options.items():
        if k not in hints:
            raise ConfigError(f"{name!r} has no option {section}.{k}.{suggest(k, hints)} "
                              f"Its options: {', '.join(hints) or '(none)'}.")
        values[k] = coerce(v, hints[k], f"{section}.{k}")
    try:
        return config_cls(**values)
    except TypeError as e:  # a constructor argument without a default that was not set
        raise ConfigError(f"{what} {name!r} needs its options {e}: set them as {section}.<name>=value") from None


def _section_options(cfg: RunConfig, section: str) -> type:
    from metalearn.algorithms import ALGORITHMS
    from metalearn.models import BACKBONES

    if section == "model":
        return _component(cfg.model.backbone, BACKBONES, "backbone", 0)
    return _component(cfg.algorithm.name, ALGORITHMS, "algorithm", 1)


def build_component(cls, resolved, *args):
    """Instantiate ``cls(*args, config=resolved)`` or ``cls(*args, **fields of resolved)``.

    Args:
        cls: A backbone or algorithm class.
        resolved: Its typed config (:meth:`ModelConfig.resolve`, :meth:`AlgorithmConfig.resolve`).
        *args: Positional arguments before the config (an algorithm's backbone).
    """
    if _config_class(cls) is not None:
        return cls(*args, config=resolved)
    return cls(*args, **{f.name: getattr(resolved, f.name) for f in dataclasses.fields(resolved)})


def all_keys(cfg: RunConfig) -> list[str]:
    """Every settable dotted key of ``cfg``, including the backbone and algorithm options."""
    keys = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _SECTIONS]
    for name in _SECTIONS:
        section = getattr(cfg, name)
        keys += [f"{name}.{f.name}" for f in dataclasses.fields(section) if f.name != "options"]
        if name in ("model", "algorithm"):
            try:
                keys += [f"{name}.{f.name}" for f in dataclasses.fields(_section_options(cfg, name))]
            except ConfigError:
                pass
    return keys


def _set_field(obj, key: str, value: Any, prefix: str) -> None:
    hints = _dataclass_hints(obj)
    names = [f.name for f in dataclasses.fields(obj)]
    if key not in names:
        if prefix in ("model.", "algorithm."):
            obj.options[key] = value  # checked by validate(), which resolves the options
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
        overrides: Strings like ``"train.steps=200"``, ``"algorithm.inner_lr=0.4"`` or
            ``"algorithm.options.inner_lr=0.4"`` (the same option). Applied in order.
            ``model.backbone=NAME`` (a different backbone) keeps the options NAME takes and
            drops the others, saying so on stderr (:func:`_switch_backbone`); options given
            after it are checked against NAME. ``data.image_size`` and Conv4's
            ``model.image_size`` are set independently (the run's first step names a mismatch
            that the model cannot take).

    Raises:
        ConfigError: unknown key (with the closest names), value of the wrong type,
            malformed override, or an option given for a backbone that a later
            ``model.backbone`` does not take.

    Examples:
        >>> cfg = apply_overrides(RunConfig(), ["train.steps=20", "data.k_shot=5"])
        >>> cfg.train.steps, cfg.data.k_shot
        (20, 5)
    """
    cfg = RunConfig.from_dict(cfg.to_dict())
    set_model_options: set[str] = set()  # model options given in these overrides
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value, e.g. train.steps=200")
        key, text = item.split("=", 1)
        key = key.strip().removeprefix("--")
        parts = key.split(".")
        if len(parts) == 3 and parts[0] in ("model", "algorithm") and parts[1] == "options":
            parts = [parts[0], parts[2]]  # algorithm.options.inner_lr is algorithm.inner_lr
        value = parse_literal(text)
        if len(parts) == 1:
            _set_field(cfg, parts[0], value, "")
        elif len(parts) == 2 and parts[0] in _SECTIONS:
            section = getattr(cfg, parts[0])
            if parts[0] in ("model", "algorithm") and parts[1] not in (
                    f.name for f in dataclasses.fields(section)):
                hints = typing.get_type_hints(_section_options(cfg, parts[0]))
                if parts[1] not in hints:
                    name = cfg.model.backbone if parts[0] == "model" else cfg.algorithm.name
                    raise ConfigError(
                        f"unknown config key {key!r}.{suggest(key, all_keys(cfg))} Options of "
                        f"{parts[0]} {name!r}: {', '.join(hints) or '(none)'}.")
                section.options[parts[1]] = coerce(value, hints[parts[1]], key)
                if parts[0] == "model":
                    set_model_options.add(parts[1])
            elif parts[:2] == ["model", "backbone"]:
                old = cfg.model.backbone
                _set_field(section, parts[1], value, "model.")
                if cfg.model.backbone != old:
                    _switch_backbone(cfg.model, old, set_model_options)
            else:
                _set_field(section, parts[1], value, parts[0] + ".")
        else:
            raise ConfigError(f"unknown config key {key!r}.{suggest(key, all_keys(cfg))} Use "
                              f"section.field, sections: {', '.join(_SECTIONS)}.")
    validate(cfg)
    return cfg


def _switch_backbone(model: ModelConfig, old: str, given: set[str]) -> None:
    """After ``model.backbone`` changed from ``old``: keep the options the new backbone takes.

    Options of the same name mean the same thing across the backbones (``in_channels``,
    ``out_features``, ``norm``), so their values carry over; the others (Conv4's ``hidden``
    when switching to ResNet-12) are dropped, said once on stderr, and the new backbone's own
    options take their defaults when :func:`validate` resolves them. An option given in the
    same overrides that the new backbone does not take is an error, not a silent drop.

    Raises:
        ConfigError: an unknown backbone (with the closest names), or a dropped option that
            the overrides set.
    """
    from metalearn.models import BACKBONES

    hints = typing.get_type_hints(_component(model.backbone, BACKBONES, "backbone", 0))
    dropped = {k: v for k, v in model.options.items() if k not in hints}
    lost = sorted(given & set(dropped))
    if lost:
        raise ConfigError(f"{', '.join('model.' + k for k in lost)} was set, but backbone "
                          f"{model.backbone!r} has no such option; its options: {', '.join(hints)} "
                          f"(`metalearn list --options {model.backbone}`)")
    model.options = {k: v for k, v in model.options.items() if k in hints}
    if dropped:
        listed = ", ".join(f"{k}={json.dumps(v)}" for k, v in dropped.items())
        print(f"metalearn: model.backbone={model.backbone}: dropped options {listed} that "
              f"{model.backbone} does not take (it was {old})", file=sys.stderr)


def validate(cfg: RunConfig) -> None:
    """Check every field, and resolve the backbone and algorithm options into their typed
    configs: afterwards ``options`` holds every option of the component, typed (what
    ``config.json`` saves).

    Raises:
        ConfigError: with the fix.
    """
    for section in (cfg.model, cfg.algorithm):
        section.options = _plain(dataclasses.asdict(section.resolve()))
    from metalearn.data.registry import DATASETS
    from metalearn.data.transforms import Augment

    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.data.dataset!r}.{suggest(cfg.data.dataset, DATASETS)} "
                          f"Known: {', '.join(DATASETS)}.")
    t = cfg.train
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
    f = d.split_fractions
    if len(f) != 3 or any(not x > 0 for x in f) or abs(sum(f) - 1) > 1e-6:
        raise ConfigError(f"data.split_fractions must be three positive fractions [train, val, test] "
                          f"summing to 1, e.g. [0.7, 0.15, 0.15], got {f}")
    if d.rotations and (d.dataset != "omniglot" or d.train_split.startswith("vinyals")):
        raise ConfigError("data.rotations adds rotation classes to Omniglot's Lake splits: set "
                          "data.dataset=omniglot data.train_split=background (the vinyals-* splits "
                          f"hold 4 rotations already); now dataset={d.dataset!r}, train_split={d.train_split!r}")
    entry = DATASETS[d.dataset]
    if d.augment:
        if not entry.images:
            kind = "a text dataset" if entry.text else "a regression task family"
            raise ConfigError(f"data.augment applies to image datasets; {d.dataset!r} is {kind}: "
                              "set data.augment=[]")
    if entry.text:
        _validate_text(cfg)
    if entry.ratings:
        _validate_ratings(cfg)
    elif d.group_sizes:
        raise ConfigError(f"data.group_sizes batches users of one support size, but {d.dataset} is not a "
                          "ratings dataset (each user a task): drop data.group_sizes")
    if d.episodes == "meta-dataset" or d.sources:
        _validate_sources(cfg, DATASETS)
    try:  # the augmentation's own checks (operations, padding, degrees)
        Augment(d.augment, d.augment_padding, d.augment_degrees)
    except ValueError as e:
        raise ConfigError(f"data.augment / augment_padding / augment_degrees: {e}") from None


TRAINED_TOKENIZERS = ("wordpiece", "bpe")
"""``data.tokenizer`` values that train a vocabulary; any other value is a pretrained one's path."""


def _validate_text(cfg: RunConfig) -> None:
    """The text fields of ``data`` and their agreement with a from-scratch text backbone."""
    d, options = cfg.data, cfg.model.options
    if not 1 <= d.fold <= 5:
        raise ConfigError(f"data.fold selects one of the five ProtAugment class folds: 1 to 5, got {d.fold}")
    if not 1 <= d.max_length <= 4096:
        raise ConfigError(f"data.max_length (tokens per text) must be in 1..4096, got {d.max_length}")
    trained = d.tokenizer in TRAINED_TOKENIZERS
    if trained and d.vocab_size < 100:
        raise ConfigError(f"data.vocab_size must be at least 100 tokens, got {d.vocab_size}")
    if not trained and not Path(d.tokenizer).expanduser().exists():
        raise ConfigError(f"data.tokenizer={d.tokenizer!r}: choose {' or '.join(TRAINED_TOKENIZERS)} "
                          "(a vocabulary trained on the meta-training classes), or the path of a "
                          "pretrained model folder or tokenizer.json (that path does not exist)")
    rows = options.get("vocab_size")
    if trained and isinstance(rows, int) and rows < d.vocab_size:
        raise ConfigError(f"model.vocab_size={rows} is smaller than data.vocab_size={d.vocab_size}: "
                          f"the embedding needs a row per token; set model.vocab_size={d.vocab_size}")
    positions = options.get("max_length")
    if isinstance(positions, int) and positions < d.max_length:
        raise ConfigError(f"model.max_length={positions} is shorter than data.max_length={d.max_length}: "
                          f"set model.max_length={d.max_length} (or shorten data.max_length)")


def _validate_ratings(cfg: RunConfig) -> None:
    """The fields of a ratings dataset's run (each user a task)."""
    d = cfg.data
    splits = (d.train_split, d.val_split, d.test_split)
    if splits != ("train", "val", "test"):
        raise ConfigError(f"a ratings dataset splits its users into train, val and test: set "
                          f"data.train_split=train data.val_split=val data.test_split=test (now {list(splits)})")
    if d.n_way is not None or d.eval_n_way is not None:
        raise ConfigError("users are regression tasks (ratings), not classes: set data.n_way=null")
    if d.protocol not in ("melu", "mamo"):
        raise ConfigError(f"data.protocol must be melu or mamo, got {d.protocol!r}")
    if d.user_split not in ("random", "time"):
        raise ConfigError(f"data.user_split must be random or time, got {d.user_split!r}")
    if not 0 < d.cold_fraction < 1:
        raise ConfigError(f"data.cold_fraction must be in (0, 1), got {d.cold_fraction}")


SOURCE_KEYS = ("name", "train")
"""Keys of a ``data.sources`` entry besides the ``data`` fields it overrides."""


def source_configs(d: DataConfig) -> dict[str, tuple[DataConfig, bool]]:
    """Every source of a run: name -> (its ``DataConfig``, whether it is trained on); this
    section's own dataset first (named by ``data.dataset``), then ``data.sources`` in order.

    Raises:
        ConfigError: a source entry with an unknown field, or two sources of the same name.
    """
    out = {d.dataset: (d, True)}
    names = {f.name for f in dataclasses.fields(DataConfig)} - {"sources", "source_weights"}
    for i, entry in enumerate(d.sources):
        if not isinstance(entry, dict):
            raise ConfigError(f"data.sources[{i}] must be a JSON object of data fields, got {entry!r}")
        unknown = [k for k in entry if k not in names and k not in SOURCE_KEYS]
        if unknown:
            raise ConfigError(f"data.sources[{i}]: unknown field(s) {unknown}; a source sets data fields "
                              f"(dataset, root, train_split, ...) and optionally {' and '.join(SOURCE_KEYS)}."
                              + suggest(str(unknown[0]), sorted(names)))
        fields = {k: v for k, v in entry.items() if k not in SOURCE_KEYS}
        hints = typing.get_type_hints(DataConfig)
        typed = {k: coerce(v, hints[k], f"data.sources[{i}].{k}") for k, v in fields.items()}
        cfg = dataclasses.replace(d, sources=[], source_weights=None, **typed)
        name = str(entry.get("name", cfg.dataset))
        if name in out:
            raise ConfigError(f"data.sources[{i}] is named {name!r} like another source: give each a "
                              'distinct "name"')
        out[name] = (cfg, bool(entry.get("train", True)))
    return out


def _validate_sources(cfg: RunConfig, datasets: dict) -> None:
    """The fields of a Meta-Dataset or multi-source run."""
    d = cfg.data
    sources = source_configs(d)
    for name, (c, _) in sources.items():
        if c.dataset not in datasets:
            raise ConfigError(f"data.sources: {name!r} has unknown dataset {c.dataset!r}."
                              f"{suggest(c.dataset, datasets)}")
        entry = datasets[c.dataset]
        if entry.ratings or not (entry.images or entry.text):
            raise ConfigError(f"source {name!r} ({c.dataset}) is not a classification dataset: "
                              "Meta-Dataset episodes and multiple sources are for classes of images or texts")
        if c.n_way is None and c.episodes == "n-way":
            raise ConfigError(f"source {name!r} draws n-way episodes but has no data.n_way: set it or "
                              "data.episodes=meta-dataset")
    trained = [n for n, (_, t) in sources.items() if t]
    if d.source_weights is not None:
        w = d.source_weights
        if len(w) != len(trained) or any(not (x >= 0) for x in w) or not sum(w) > 0:
            raise ConfigError(f"data.source_weights={w} must give one weight >= 0 per training source "
                              f"({', '.join(trained)}), not all zero")
    if not sources[d.dataset][1]:
        raise ConfigError("the data section's own dataset is always trained on: list evaluation-only "
                          'sources in data.sources with "train": false')


def _plain(d: dict) -> dict:
    """``d`` as JSON gives it back (tuples become lists), as saved in ``config.json``."""
    return json.loads(json.dumps(d))


def _resolved_dict(cfg: RunConfig) -> dict:
    """``cfg.to_dict()`` with the component options resolved, defaults included, where they
    resolve: a config saved before options were saved whole compares equal to its resolution."""
    d = cfg.to_dict()
    for name in ("model", "algorithm"):
        try:
            d[name]["options"] = _plain(dataclasses.asdict(getattr(cfg, name).resolve()))
        except ConfigError:  # invalid: compare what was written
            pass
    return d


def changes(a: RunConfig, b: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> ``(value in a, value in b)`` for every field that differs (options compared
    after resolution, so an option left at its default equals the default written out; an
    option one side lacks is ``"(unset)"``)."""
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

    fa, fb = flat(_resolved_dict(a)), flat(_resolved_dict(b))
    return {k: (fa.get(k, "(unset)"), fb.get(k, "(unset)")) for k in sorted(set(fa) | set(fb))
            if fa.get(k, "(unset)") != fb.get(k, "(unset)")}


def diff(a: RunConfig, b: RunConfig) -> list[str]:
    """Human-readable differences ``key: old -> new`` between two configs (:func:`changes`)."""
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes(a, b).items()]


def resume_changes(saved: RunConfig, new: RunConfig, step: int) -> tuple[list[str], str | None]:
    """What resuming a run stopped at ``step`` with ``new`` instead of its ``saved`` config changes.

    Raising ``train.steps`` ("train it longer") is no conflict, and neither is a field that
    follows from it: an algorithm's ``anneal_steps`` (Reptile's meta-step annealing) that
    equalled the old ``train.steps`` and equals the new one. Lowering ``train.steps`` and
    every other change are conflicts (they would make the resumed run another recipe). A
    ``cosine`` or ``linear`` schedule is a function of ``train.steps``: extended, it decays over
    the new length from the current step on (said in the note).

    Args:
        saved: The config the run was started with (its checkpoint's).
        new: The config it is resumed with.
        step: Completed steps of the checkpoint.

    Returns:
        ``(conflicts, note)``: the conflicting changes as ``key: old -> new`` lines, and a
        one-line note for an extension (``"extending the run from 60 to 90 steps"``) or ``None``.
    """
    found = changes(saved, new)
    old_steps, new_steps = saved.train.steps, new.train.steps
    if "train.steps" not in found or new_steps < max(old_steps, step):
        return diff(saved, new), None
    allowed = {"train.steps"}
    if found.get("algorithm.anneal_steps") == (old_steps, new_steps):
        allowed.add("algorithm.anneal_steps")
    conflicts = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in found.items() if k not in allowed]
    note = f"extending the run from {old_steps} to {new_steps} steps"
    if "algorithm.anneal_steps" in allowed:
        note += " (and algorithm.anneal_steps with it)"
    if new.train.schedule in ("cosine", "linear"):
        note += f"; the {new.train.schedule} learning-rate schedule now ends at step {new_steps}"
    return conflicts, note
