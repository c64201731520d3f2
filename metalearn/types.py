"""The one task type that flows from sampler to algorithm to evaluator.

An :class:`Episode` is one few-shot task: a *support* set (the task's training data) and a
*query* set (its test data). Classification labels are remapped to ``0 .. n_way - 1``;
``class_ids`` keeps the dataset's original class index of each of those ``n_way`` classes.
Regression tasks use the same type, with float targets and ``class_ids=None``.

An :class:`EpisodeBatch` is the same with a leading task dimension, built by stacking episodes
of equal shape. Algorithms take an ``EpisodeBatch`` for meta-training and the support half of an
``Episode`` for adaptation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

Params = dict[str, Tensor]
"""Named parameters or buffers of a module, as plain tensors (``torch.func`` style)."""

_TENSOR_FIELDS = ("support_x", "support_y", "query_x", "query_y", "class_ids", "task_params")


def _move(obj, device, non_blocking: bool):
    changes = {
        name: getattr(obj, name).to(device, non_blocking=non_blocking)
        for name in _TENSOR_FIELDS
        if getattr(obj, name) is not None
    }
    return dataclasses.replace(obj, **changes)


@dataclass(frozen=True)
class Episode:
    """One few-shot task.

    Attributes:
        support_x: Support inputs, shape ``(n_support, *x_shape)``; for N-way K-shot
            classification ``n_support = n_way * k_shot``, ordered class by class.
        support_y: Support targets, shape ``(n_support,)`` (int64 labels in ``0..n_way-1``)
            or ``(n_support, *y_shape)`` (float regression targets).
        query_x: Query inputs, shape ``(n_query_total, *x_shape)``.
        query_y: Query targets, like ``support_y``.
        class_ids: Original dataset class index of each remapped label, shape ``(n_way,)``;
            ``None`` for regression tasks.
        task_params: Optional parameters that generated a synthetic task (for example the
            amplitude and phase of a sinusoid), shape ``(n_params,)``; ``None`` otherwise.

    Examples:
        >>> ep = Episode(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(4, 3),
        ...              torch.tensor([0, 0, 1, 1]), class_ids=torch.tensor([7, 3]))
        >>> ep.n_way, ep.is_classification
        (2, True)
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    class_ids: Tensor | None = None
    task_params: Tensor | None = None

    def __post_init__(self) -> None:
        if self.support_x.shape[0] != self.support_y.shape[0]:
            raise ValueError(
                f"support_x has {self.support_x.shape[0]} examples but support_y has "
                f"{self.support_y.shape[0]}: give one target per support example."
            )
        if self.query_x.shape[0] != self.query_y.shape[0]:
            raise ValueError(
                f"query_x has {self.query_x.shape[0]} examples but query_y has "
                f"{self.query_y.shape[0]}: give one target per query example."
            )
        if self.support_x.shape[1:] != self.query_x.shape[1:]:
            raise ValueError(
                f"support inputs have shape {tuple(self.support_x.shape[1:])} but query inputs "
                f"{tuple(self.query_x.shape[1:])}: both sets of a task must share the input shape."
            )

    @property
    def is_classification(self) -> bool:
        """True when the targets are integer class labels."""
        return not torch.is_floating_point(self.support_y)

    @property
    def n_way(self) -> int:
        """Number of classes of a classification task."""
        if self.class_ids is not None:
            return int(self.class_ids.shape[0])
        if not self.is_classification:
            raise AttributeError("a regression episode has no n_way")
        return int(self.support_y.max().item()) + 1

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Episode:
        """Return a copy with every tensor on ``device``."""
        return _move(self, device, non_blocking)


@dataclass(frozen=True)
class EpisodeBatch:
    """Episodes of equal shape stacked along a leading task dimension.

    Attributes:
        support_x: ``(n_tasks, n_support, *x_shape)``.
        support_y: ``(n_tasks, n_support)`` or ``(n_tasks, n_support, *y_shape)``.
        query_x: ``(n_tasks, n_query_total, *x_shape)``.
        query_y: ``(n_tasks, n_query_total)`` or ``(n_tasks, n_query_total, *y_shape)``.
        class_ids: ``(n_tasks, n_way)`` or ``None``.
        task_params: ``(n_tasks, n_params)`` or ``None``.

    Examples:
        >>> ep = Episode(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(4, 3),
        ...              torch.tensor([0, 0, 1, 1]), class_ids=torch.tensor([7, 3]))
        >>> batch = EpisodeBatch.stack([ep, ep])
        >>> len(batch), tuple(batch.support_x.shape)
        (2, (2, 2, 3))
        >>> batch[1].class_ids.tolist()
        [7, 3]
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    class_ids: Tensor | None = None
    task_params: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.support_x.shape[0]
        for name in _TENSOR_FIELDS:
            t = getattr(self, name)
            if t is not None and t.shape[0] != n:
                raise ValueError(
                    f"EpisodeBatch.{name} has {t.shape[0]} tasks but support_x has {n}: "
                    "every field needs the same leading task dimension."
                )

    @staticmethod
    def stack(episodes: Sequence[Episode]) -> EpisodeBatch:
        """Stack episodes of identical shapes into a batch.

        Raises:
            ValueError: if ``episodes`` is empty or two episodes differ in a field's shape
                (sample them with the same ``n_way``, ``k_shot`` and ``n_query``).
        """
        if len(episodes) == 0:
            raise ValueError("cannot stack an empty list of episodes")
        fields = {}
        for name in _TENSOR_FIELDS:
            values = [getattr(ep, name) for ep in episodes]
            present = [v is not None for v in values]
            if not any(present):
                fields[name] = None
                continue
            if not all(present):
                raise ValueError(f"some episodes have {name} and others do not; cannot stack them")
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) != 1:
                raise ValueError(
                    f"episodes differ in {name} shape {sorted(shapes)}: an EpisodeBatch needs "
                    "tasks of equal shape (same n_way, k_shot and n_query for every task)."
                )
            fields[name] = torch.stack(values)
        return EpisodeBatch(**fields)

    def __len__(self) -> int:
        return int(self.support_x.shape[0])

    @property
    def n_tasks(self) -> int:
        """Number of tasks in the batch."""
        return len(self)

    @property
    def is_classification(self) -> bool:
        """True when the targets are integer class labels."""
        return not torch.is_floating_point(self.support_y)

    def __getitem__(self, i: int | slice) -> Episode | EpisodeBatch:
        """``batch[i]`` is task ``i`` as an :class:`Episode`; ``batch[a:b]`` is a smaller batch."""
        cls = EpisodeBatch if isinstance(i, slice) else Episode
        return cls(**{name: (t[i] if (t := getattr(self, name)) is not None else None)
                      for name in _TENSOR_FIELDS})

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def split(self, n_parts: int) -> list[EpisodeBatch]:
        """Split the task dimension into ``n_parts`` equal batches (for example one per rank).

        Raises:
            ValueError: if ``n_parts`` does not divide the number of tasks.
        """
        n = len(self)
        if n_parts <= 0 or n % n_parts:
            divisors = [d for d in range(1, n + 1) if n % d == 0]
            raise ValueError(f"cannot split {n} tasks into {n_parts} equal parts; valid: {divisors}")
        size = n // n_parts
        return [self[i * size : (i + 1) * size] for i in range(n_parts)]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> EpisodeBatch:
        """Return a copy with every tensor on ``device``."""
        return _move(self, device, non_blocking)


class EpisodeList(list):
    """A meta-batch of episodes of different shapes, kept as a list (never padded).

    Users of a recommender have different numbers of ratings, so their support sets differ in
    size and cannot be stacked; the learners map such a batch task by task
    (:func:`metalearn.algorithms.checks.as_batch`). It adds to ``list`` only what the training
    loop asks of a batch: :meth:`to` and :attr:`n_tasks`.

    Examples:
        >>> a = Episode(torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(1, 3), torch.zeros(1, 1))
        >>> b = Episode(torch.zeros(5, 3), torch.zeros(5, 1), torch.zeros(1, 3), torch.zeros(1, 1))
        >>> batch = EpisodeList([a, b]).to("cpu")
        >>> batch.n_tasks, [len(ep.support_x) for ep in batch]
        (2, [2, 5])
    """

    @property
    def n_tasks(self) -> int:
        """Number of tasks in the batch."""
        return len(self)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> EpisodeList:
        """Return a copy with every episode's tensors on ``device``."""
        return EpisodeList(ep.to(device, non_blocking) for ep in self)


@runtime_checkable
class Predictor(Protocol):
    """What ``algorithm.adapt(support)`` returns: maps query inputs to outputs.

    ``predictor(query_x)`` with ``query_x`` of shape ``(n, *x_shape)`` returns logits of
    shape ``(n, n_way)`` for classification or predictions of shape ``(n, *y_shape)`` for
    regression.
    """

    def __call__(self, query_x: Tensor) -> Tensor: ...


@runtime_checkable
class Algorithm(Protocol):
    """The contract every meta-learning algorithm meets (a Protocol, not a base class).

    ``meta_loss(batch)`` returns the scalar meta-training loss over an :class:`EpisodeBatch`
    (differentiable with respect to the algorithm's meta-parameters, ``algorithm.parameters()``)
    and a dict of float metrics. ``adapt(support_x, support_y)`` returns a :class:`Predictor`
    for a new task and never changes the meta-parameters.
    """

    def meta_loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, float]]: ...

    def adapt(self, support_x: Tensor, support_y: Tensor) -> Predictor: ...
