"""Episode sampling: N-way K-shot tasks from a :class:`ClassDataset`, or regression tasks from a
:class:`TaskFamily`, drawn from an explicit ``torch.Generator``.

Sampling works on label indices only and is vectorised over the tasks of a batch: choosing the
classes, choosing the examples within each class, and one gather of the examples.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from metalearn._rng import make_generator
from metalearn.data.base import ClassDataset
from metalearn.data.regression import TaskFamily
from metalearn.types import Episode, EpisodeBatch

Transform = Callable[[EpisodeBatch], EpisodeBatch]

MAX_POINTS_PER_TASK = 1_000_000
"""Upper bound on ``k_shot + n_query`` of a regression task: a larger value is a typo that would
allocate gigabytes per batch (classification is bounded by the class sizes instead)."""


def _check_counts(n_way: int | None, k_shot: int, n_query: int, regression: bool) -> None:
    for name, value in (("k_shot", k_shot), ("n_query", n_query)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if k_shot < 1:
        raise ValueError(f"k_shot must be at least 1, got {k_shot}: a task needs support examples")
    if n_query < 1:
        raise ValueError(f"n_query must be at least 1, got {n_query}: a task needs query examples")
    if regression:
        if n_way is not None:
            raise ValueError("regression task families have no classes: pass n_way=None")
        if k_shot + n_query > MAX_POINTS_PER_TASK:
            raise ValueError(
                f"k_shot + n_query = {k_shot} + {n_query} points per task is more than "
                f"{MAX_POINTS_PER_TASK:,} (a batch would need gigabytes): lower k_shot or n_query"
            )
        return
    if not isinstance(n_way, int | np.integer) or isinstance(n_way, bool):
        raise TypeError(f"n_way must be an int, got {n_way!r}")
    if n_way < 2:
        raise ValueError(f"n_way must be at least 2, got {n_way}")


def _physical_memory() -> int:
    """Bytes of RAM of this machine (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _check_batch_memory(n_tasks: int, bytes_per_task: int, what: str) -> None:
    """Refuse a batch that could not fit in this machine's memory (a typo such as meta_batch=1e8
    would otherwise be killed by the OS, or take the machine down with it)."""
    need, have = n_tasks * bytes_per_task, _physical_memory()
    if have and need > have:
        raise ValueError(
            f"{n_tasks:,} tasks of {what} need {need / 2**30:.1f} GiB, more than this machine's "
            f"{have / 2**30:.1f} GiB of memory: lower the number of tasks per batch (train.meta_batch, "
            "n_episodes) or the examples per task"
        )


class _ClassIndex:
    """Example indices grouped by class, padded: ``members[c, :sizes[c]]`` are class c's examples."""

    def __init__(self, dataset: ClassDataset, n_way: int, per_class: int, k_shot: int, n_query: int):
        sizes = dataset.class_sizes()
        if n_way > dataset.num_classes:
            raise ValueError(
                f"n_way={n_way} but the dataset has only {dataset.num_classes} classes: lower n_way "
                f"to at most {dataset.num_classes} or use a split with more classes"
            )
        small = int(np.argmin(sizes))
        if sizes[small] < per_class:
            raise ValueError(
                f"k_shot + n_query = {k_shot} + {n_query} = {per_class} but class "
                f"{dataset.class_names[small]!r} has only {sizes[small]} examples "
                f"({int((sizes < per_class).sum())} classes are that small): lower k_shot or n_query "
                f"to at most {sizes[small]} in total"
                + (f" (the largest feasible k_shot with n_query={n_query} is {sizes[small] - n_query})"
                   if sizes[small] > n_query else "") + ", or drop the small classes"
            )
        order = np.argsort(dataset.labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        width = int(sizes.max())
        cols = np.arange(width)
        pos = np.minimum(starts[:, None] + cols[None, :], len(order) - 1)
        self.members = torch.from_numpy(order[pos])
        self.sizes = torch.from_numpy(sizes)
        self.equal = bool((sizes == width).all())
        self.width = width


class EpisodeSampler:
    """Draws N-way K-shot episodes (or regression tasks) from a seeded generator.

    Args:
        source: A :class:`ClassDataset` (classification) or a :class:`TaskFamily` (regression).
        n_way: Classes per task; ``None`` for a regression family.
        k_shot: Support examples per class (regression: support points per task).
        n_query: Query examples per class (regression: query points per task).
        seed: Run seed; the generator is seeded from ``(seed, rank)`` so ranks draw different tasks.
        rank: Stream id, e.g. the distributed rank.
        transform: Optional per-episode preprocessing applied to every sampled batch
            (see :mod:`metalearn.data.transforms`).
        augment: Optional random augmentation ``augment(batch, generator) -> batch`` (e.g.
            :class:`~metalearn.data.transforms.Augment`) applied before ``transform``, with
            this sampler's generator: reproducible, and resumed by :meth:`load_state_dict`.
            For meta-training only: :class:`FixedEpisodes` never augments.

    Episodes are laid out class by class: ``support_y = [0]*k_shot + [1]*k_shot + ...`` and the
    query likewise with ``n_query`` per class; ``class_ids`` holds the dataset class of each label.

    Raises:
        ValueError / TypeError: infeasible or malformed settings, with the fix in the message.

    Examples:
        >>> from metalearn.data import ArrayDataset
        >>> ds = ArrayDataset(np.random.rand(60, 4), np.repeat(np.arange(6), 10))
        >>> sampler = EpisodeSampler(ds, n_way=3, k_shot=2, n_query=4, seed=0)
        >>> ep = sampler.sample()
        >>> tuple(ep.support_x.shape), tuple(ep.query_x.shape), ep.support_y.tolist()
        ((6, 4), (12, 4), [0, 0, 1, 1, 2, 2])
    """

    def __init__(self, source: ClassDataset | TaskFamily, n_way: int | None, k_shot: int,
                 n_query: int, seed: int = 0, rank: int = 0, transform: Transform | None = None,
                 augment: Callable[[EpisodeBatch, torch.Generator], EpisodeBatch] | None = None):
        self.regression = isinstance(source, TaskFamily)
        if not self.regression and not isinstance(source, ClassDataset):
            raise TypeError(f"source must be a ClassDataset or a TaskFamily, got {type(source).__name__}"
                            " (wrap a torch Dataset in metalearn.data.TorchDataset)")
        if self.regression and augment is not None:
            raise ValueError("augmentation applies to image episodes, not to regression task families")
        _check_counts(n_way, k_shot, n_query, self.regression)
        self.source, self.n_way, self.k_shot, self.n_query = source, n_way, k_shot, n_query
        self.seed, self.rank, self.transform, self.augment = seed, rank, transform, augment
        self.generator = make_generator(seed, rank) if rank else make_generator(seed)
        self.n_sampled = 0
        if not self.regression:
            self._index = _ClassIndex(source, n_way, k_shot + n_query, k_shot, n_query)
            self._support_y = torch.arange(n_way).repeat_interleave(k_shot)
            self._query_y = torch.arange(n_way).repeat_interleave(n_query)

    def _draw_classes(self, n_tasks: int, num_classes: int) -> Tensor:
        """``n_way`` distinct classes per task, uniformly over all subsets."""
        g, n_way = self.generator, self.n_way
        if n_way * n_way > num_classes:  # many ways: rank random keys over all classes
            return torch.rand(n_tasks, num_classes, generator=g).topk(n_way, dim=1).indices
        # Few ways among many classes: draw with replacement and redraw any task whose draw has
        # a repeat (exact rejection sampling; a redraw is needed with probability < 1/2).
        classes = torch.randint(num_classes, (n_tasks, n_way), generator=g)
        while True:
            s = classes.sort(dim=1).values
            bad = (s[:, 1:] == s[:, :-1]).any(dim=1).nonzero().flatten()
            if len(bad) == 0:
                return classes
            classes[bad] = torch.randint(num_classes, (len(bad), n_way), generator=g)

    def draw_indices(self, n_tasks: int) -> tuple[Tensor, Tensor]:
        """Draw classes ``(n_tasks, n_way)`` and example indices ``(n_tasks, n_way, k_shot + n_query)``."""
        g, idx = self.generator, self._index
        num_classes = idx.members.shape[0]
        _check_batch_memory(n_tasks, 16 * self.n_way * idx.width + 8 * num_classes,
                            f"{self.n_way}-way indices")
        classes = self._draw_classes(n_tasks, num_classes)
        keys = torch.rand(n_tasks, self.n_way, idx.width, generator=g)
        if not idx.equal:  # padding slots can never be chosen
            pad = torch.arange(idx.width) >= idx.sizes[classes][..., None]
            keys = keys.masked_fill(pad, 2.0)
        per_class = self.k_shot + self.n_query
        slots = keys.topk(per_class, dim=2, largest=False).indices
        rows = idx.members[classes]  # (T, n_way, width)
        return classes, torch.gather(rows, 2, slots)

    def episodes_from_indices(self, classes: Tensor, examples: Tensor) -> EpisodeBatch:
        """Build the batch for given classes ``(T, n_way)`` and examples ``(T, n_way, k+q)``."""
        t, k = examples.shape[0], self.k_shot
        batch = EpisodeBatch(  # gathered straight into the support / query layout: no extra copy
            support_x=self.source.gather(examples[:, :, :k].reshape(t, -1)),
            support_y=self._support_y.expand(t, -1).clone(),
            query_x=self.source.gather(examples[:, :, k:].reshape(t, -1)),
            query_y=self._query_y.expand(t, -1).clone(),
            class_ids=classes,
        )
        if self.augment is not None:
            batch = self.augment(batch, self.generator)
        return self.transform(batch) if self.transform else batch

    def sample_batch(self, n_tasks: int) -> EpisodeBatch:
        """Sample ``n_tasks`` tasks as an :class:`EpisodeBatch`."""
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
        if self.regression:  # x and y, float32, plus the task parameters
            _check_batch_memory(n_tasks, 16 * (self.k_shot + self.n_query) + 64,
                                f"{self.k_shot}+{self.n_query} points")
        else:  # support and query examples as float32
            numel = math.prod(self.source.item_shape) if self.source.item_shape else 1
            _check_batch_memory(n_tasks, 4 * numel * self.n_way * (self.k_shot + self.n_query),
                                f"{self.n_way}-way {self.k_shot}+{self.n_query}-shot")
        self.n_sampled += n_tasks
        if self.regression:
            batch = self.source.sample_batch(n_tasks, self.k_shot, self.n_query, self.generator)
            return self.transform(batch) if self.transform else batch
        return self.episodes_from_indices(*self.draw_indices(n_tasks))

    def sample(self) -> Episode:
        """Sample one task."""
        return self.sample_batch(1)[0]

    def batches(self, n_tasks: int) -> Iterator[EpisodeBatch]:
        """An endless iterator of batches of ``n_tasks`` tasks."""
        while True:
            yield self.sample_batch(n_tasks)

    def state_dict(self) -> dict:
        """The generator state and counters; ``load_state_dict`` continues the same sequence."""
        return {"generator": self.generator.get_state(), "n_sampled": self.n_sampled,
                "seed": self.seed, "rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed or state.get("rank", self.rank) != self.rank:
            raise ValueError(f"sampler state is for seed={state.get('seed')} rank={state.get('rank')}, "
                             f"this sampler has seed={self.seed} rank={self.rank}")
        self.generator.set_state(state["generator"])
        self.n_sampled = int(state["n_sampled"])


class FixedEpisodes:
    """A fixed, seeded list of evaluation episodes, identical across runs, machines and algorithms.

    The task indices (or, for regression, the tasks themselves) are drawn once at construction;
    ``fingerprint`` is a SHA-256 of them to record with every result.

    Args:
        source, n_way, k_shot, n_query: As for :class:`EpisodeSampler`.
        n_episodes: Number of episodes (600 or more for a result with a tight CI).
        seed: Seed of the episode set (recorded with the result).
        transform: Optional per-episode preprocessing.

    Examples:
        >>> from metalearn.data import SinusoidTasks
        >>> a = FixedEpisodes(SinusoidTasks(), None, 5, 10, n_episodes=3, seed=1)
        >>> b = FixedEpisodes(SinusoidTasks(), None, 5, 10, n_episodes=3, seed=1)
        >>> a.fingerprint == b.fingerprint, len(a), tuple(a[0].query_x.shape)
        (True, 3, (10, 1))
    """

    def __init__(self, source: ClassDataset | TaskFamily, n_way: int | None, k_shot: int,
                 n_query: int, n_episodes: int, seed: int, transform: Transform | None = None):
        if n_episodes < 1:
            raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
        self._sampler = EpisodeSampler(source, n_way, k_shot, n_query, seed=seed, transform=transform)
        self.n_way, self.k_shot, self.n_query, self.seed = n_way, k_shot, n_query, seed
        h = hashlib.sha256()
        if self._sampler.regression:
            self._tasks = self._sampler.sample_batch(n_episodes)
            for t in (self._tasks.support_x, self._tasks.support_y, self._tasks.query_x, self._tasks.query_y):
                h.update(t.numpy().tobytes())
        else:
            self._classes, self._examples = self._sampler.draw_indices(n_episodes)
            h.update(self._classes.numpy().tobytes())
            h.update(self._examples.numpy().tobytes())
        self.fingerprint = h.hexdigest()

    def __len__(self) -> int:
        return len(self._tasks) if self._sampler.regression else len(self._classes)

    def batch(self, start: int, stop: int) -> EpisodeBatch:
        """Episodes ``start .. stop-1`` as one batch."""
        if self._sampler.regression:
            return self._tasks[start:stop]
        return self._sampler.episodes_from_indices(self._classes[start:stop], self._examples[start:stop])

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} out of range for {len(self)} episodes")
        i %= len(self)
        return self.batch(i, i + 1)[0]

    def __iter__(self) -> Iterator[Episode]:
        for b in self.batches(64):
            yield from b

    def batches(self, batch_size: int) -> Iterator[EpisodeBatch]:
        """The episodes in order, as batches of at most ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.batch(start, min(start + batch_size, len(self)))

    def describe(self) -> dict:
        """What to record with a result: the protocol and the fingerprint of the episode set."""
        return {"n_way": self.n_way, "k_shot": self.k_shot, "n_query": self.n_query,
                "n_episodes": len(self), "seed": self.seed, "fingerprint": self.fingerprint}
