"""Meta-Dataset episodes: variable-way, variable-shot, imbalanced tasks, as Triantafillou et al.
sample them.

Triantafillou et al., "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few
Examples", ICLR 2020. The rules follow the reference ``meta_dataset/data/sampling.py``
(google-research/meta-dataset); each is a small pure function here, fed with random numbers
drawn by the caller from an explicit ``torch.Generator``:

* ways: :func:`sample_num_ways`, uniform in ``[5, min(50, #classes)]``;
* query per class: :func:`compute_num_query`, ``min(10, floor(smallest class / 2))``;
* support size: :func:`sample_support_size`, ``min(sum_c ceil(beta * min(100, n_c - q)), 500)``
  with ``beta ~ U(0, 1]``;
* shots per class: :func:`sample_shots`, proportional to ``n_c * exp(w_c)``,
  ``w_c ~ U[log 0.5, log 2]``, at least one each.

Where an episode's classes come from is a :class:`ClassPool`: every class of the dataset
(:class:`FlatPool`, the default) or one node of a class hierarchy
(:mod:`metalearn.data.hierarchy`). :class:`MetaDatasetSampler` draws meta-training episodes,
:class:`MetaDatasetEpisodes` the fixed, seeded validation and test episodes, and
:class:`MultiSourceSampler` draws the source of each episode among several datasets. Episodes
differ in shape, so a meta-batch is a :class:`~metalearn.types.EpisodeList`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from metalearn._rng import make_generator
from metalearn.data.base import ClassDataset
from metalearn.data.samplers import EpisodeSampler
from metalearn.types import Episode, EpisodeBatch, EpisodeList

Augmentation = Callable[[EpisodeBatch, torch.Generator], EpisodeBatch]

_SPARSE_MIN_CLASS = 4096
"""Classes larger than this (and 8 times the examples an episode takes from them) draw their
examples by rejection instead of ranking a random key per example (QuickDraw-sized classes)."""


# --------------------------------------------------------------------------- the rules


def sample_num_ways(n_classes: int, generator: torch.Generator, min_ways: int = 5,
                    max_ways: int = 50, name: str = "dataset") -> int:
    """Number of ways of one episode, uniform in ``[min_ways, min(max_ways, n_classes)]``.

    Args:
        n_classes: Classes the episode may use (the dataset's, or one hierarchy node's).
        generator: Source of the draw.
        min_ways: Fewest ways (Meta-Dataset: 5).
        max_ways: Most ways (Meta-Dataset: 50).
        name: The source, for the error message.

    Returns:
        The number of ways (an int).

    Raises:
        ValueError: ``n_classes < min_ways``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> ways = [sample_num_ways(7, g) for _ in range(200)]
        >>> min(ways), max(ways)
        (5, 7)
    """
    if n_classes < min_ways:
        raise ValueError(
            f"source {name!r} offers {n_classes} classes but an episode needs at least "
            f"min_ways={min_ways}: use a split (or hierarchy node) with at least {min_ways} "
            f"classes or lower min_ways"
        )
    high = min(max_ways, n_classes)
    return int(torch.randint(min_ways, high + 1, (1,), generator=generator))


def compute_num_query(class_sizes: np.ndarray | Sequence[int], max_query: int = 10,
                      class_names: Sequence[str] | None = None, name: str = "dataset") -> int:
    """Query examples per class: ``min(max_query, floor(min(class_sizes) / 2))``, equal for every
    class of the episode (the query set is balanced).

    Args:
        class_sizes: Examples of each chosen class, shape ``(n_way,)``.
        max_query: Most query examples per class (Meta-Dataset: 10).
        class_names: Optional names of the chosen classes, for the error message.
        name: The source, for the error message.

    Returns:
        The number of query examples per class (an int, at least 1).

    Raises:
        ValueError: a class has fewer than 2 examples (it cannot give a query and a support example).

    Examples:
        >>> compute_num_query([40, 7, 100]), compute_num_query([40, 30]), compute_num_query([3, 9])
        (3, 10, 1)
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    small = int(np.argmin(sizes))
    if sizes[small] < 2:
        label = class_names[small] if class_names is not None else f"at position {small}"
        raise ValueError(
            f"class {label!r} of source {name!r} has {int(sizes[small])} example(s); a "
            "Meta-Dataset episode needs at least 2 per class (one query, one support): drop the "
            "classes with fewer than 2 examples (ClassDataset.subset_classes)"
        )
    return int(min(max_query, int(sizes.min()) // 2))


def sample_support_size(remaining: np.ndarray | Sequence[int], beta: float, max_support: int = 500,
                        max_per_class: int = 100) -> int:
    """Size of the support set: ``min(sum_c ceil(beta * min(max_per_class, remaining_c)), max_support)``.

    Args:
        remaining: Examples of each chosen class left after the query, ``n_c - q``, shape ``(n_way,)``.
        beta: The episode's draw from ``U(0, 1]`` (the caller draws it from its generator).
        max_support: Largest support set (Meta-Dataset: 500).
        max_per_class: Largest contribution of one class to the size (Meta-Dataset: 100); a bound
            on the size, not on that class's shots.

    Returns:
        The support size ``S`` (an int, at least ``n_way``).

    Raises:
        ValueError: ``beta`` outside ``(0, 1]``, a class with nothing left, or ``max_support``
            below the number of ways.

    Examples:
        >>> sample_support_size([3, 150, 40], beta=0.5)   # ceil(1.5) + ceil(50) + ceil(20)
        72
        >>> sample_support_size([300] * 8, beta=1.0)      # 8 * 100, capped at 500
        500
    """
    rest = np.asarray(remaining, dtype=np.int64)
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must lie in (0, 1], got {beta}")
    if rest.min() < 1:
        raise ValueError(f"every class needs an example left for the support after the query, got {rest.tolist()}")
    if max_support < len(rest):
        raise ValueError(
            f"max_support={max_support} is smaller than the {len(rest)} ways of the episode (one "
            f"support example each): raise max_support to at least {len(rest)} or lower max_ways"
        )
    contrib = np.ceil(beta * np.minimum(max_per_class, rest)).astype(np.int64)
    return int(min(int(contrib.sum()), max_support))


def sample_shots(class_sizes: np.ndarray | Sequence[int], remaining: np.ndarray | Sequence[int],
                 support_size: int, log_weights: np.ndarray | Sequence[float]) -> np.ndarray:
    """Support shots of each class, roughly proportional to the class sizes, at least one each.

    ``p_c = n_c exp(w_c) / sum_j n_j exp(w_j)`` and ``k_c = min(floor(p_c (S - N)) + 1, remaining_c)``
    where ``N`` is the number of ways and ``S`` the support size.

    Args:
        class_sizes: Examples ``n_c`` of each chosen class, shape ``(n_way,)``.
        remaining: Examples left after the query, ``n_c - q``, shape ``(n_way,)``.
        support_size: The support size ``S`` (:func:`sample_support_size`).
        log_weights: The episode's draws ``w_c ~ U[log 0.5, log 2]``, shape ``(n_way,)``.

    Returns:
        int64 array of shots, shape ``(n_way,)``.

    Raises:
        ValueError: mismatched shapes, ``support_size`` below the number of ways, a class with
            nothing left.

    Examples:
        >>> sample_shots([10, 30], [8, 28], support_size=22, log_weights=[0.0, 0.0]).tolist()
        [6, 16]
    """
    sizes = np.asarray(class_sizes, dtype=np.float64)
    rest = np.asarray(remaining, dtype=np.int64)
    w = np.asarray(log_weights, dtype=np.float64)
    if not sizes.shape == rest.shape == w.shape or sizes.ndim != 1:
        raise ValueError(f"class_sizes, remaining and log_weights must be (n_way,) arrays, got "
                         f"shapes {sizes.shape}, {rest.shape}, {w.shape}")
    n_way = len(sizes)
    if support_size < n_way:
        raise ValueError(f"support_size={support_size} is smaller than the {n_way} ways (one support "
                         "example each): draw it with sample_support_size")
    if rest.min() < 1:
        raise ValueError(f"every class needs an example left for the support after the query, got {rest.tolist()}")
    p = sizes * np.exp(w)
    p /= p.sum()
    wanted = np.floor(p * (support_size - n_way)).astype(np.int64) + 1
    return np.minimum(wanted, rest)


# --------------------------------------------------------------------------- class pools


@runtime_checkable
class ClassPool(Protocol):
    """Where an episode's classes come from."""

    def draw_pool(self, generator: torch.Generator) -> tuple[np.ndarray, bool]:
        """Candidate classes of one episode (int64 class indices of the dataset) and whether the
        sampler still draws the number of ways among them (True: ways ~ U[5, min(50, len(pool))])
        or takes them all (False, e.g. an ImageNet DAG node already subsampled to <= 50)."""
        ...

    def describe(self) -> dict:
        """JSON-able description, recorded with results."""
        ...


class FlatPool:
    """Every class of the dataset, the number of ways drawn among them (Meta-Dataset's default).

    Args:
        n_classes: Classes of the dataset.

    Examples:
        >>> classes, draw_ways = FlatPool(4).draw_pool(torch.Generator())
        >>> classes.tolist(), draw_ways
        ([0, 1, 2, 3], True)
    """

    def __init__(self, n_classes: int):
        if n_classes < 1:
            raise ValueError(f"a FlatPool needs at least one class, got n_classes={n_classes}")
        self.n_classes = int(n_classes)
        self._classes = np.arange(self.n_classes, dtype=np.int64)
        self._classes.setflags(write=False)

    def draw_pool(self, generator: torch.Generator) -> tuple[np.ndarray, bool]:
        return self._classes, True

    def describe(self) -> dict:
        return {"kind": "flat", "n_classes": self.n_classes}


# --------------------------------------------------------------------------- the sampler


@dataclass(frozen=True)
class _Plan:
    """The indices of one episode: what :class:`MetaDatasetEpisodes` stores and fingerprints."""

    classes: np.ndarray  # (n_way,) dataset class indices
    shots: np.ndarray  # (n_way,) support examples per class
    n_query: int  # query examples per class
    support: np.ndarray  # (sum(shots),) example indices, class by class
    query: np.ndarray  # (n_way * n_query,) example indices, class by class

    def digest(self, h) -> None:
        h.update(np.array([len(self.classes), self.n_query, len(self.support)], np.int64).tobytes())
        for a in (self.classes, self.shots, self.support, self.query):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())


def _check_rules(min_ways, max_ways, max_query, max_support, max_support_per_class,
                 min_log_weight, max_log_weight) -> None:
    for key, value in (("min_ways", min_ways), ("max_ways", max_ways), ("max_query", max_query),
                       ("max_support", max_support), ("max_support_per_class", max_support_per_class)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")
    if min_ways > max_ways:
        raise ValueError(f"min_ways={min_ways} is above max_ways={max_ways}: lower min_ways or raise max_ways")
    if not (math.isfinite(min_log_weight) and math.isfinite(max_log_weight)) or min_log_weight > max_log_weight:
        raise ValueError(f"log weights need finite min_log_weight <= max_log_weight, got "
                         f"[{min_log_weight}, {max_log_weight}]")


class MetaDatasetSampler:
    """Draws Meta-Dataset episodes from one source, seeded and resumable.

    Per episode: the candidate classes come from ``pool.draw_pool``; the number of ways is drawn
    among them (:func:`sample_num_ways`) when the pool says so, else all are taken; the classes
    are chosen uniformly without replacement; the query per class, the support size and the
    shots follow :func:`compute_num_query`, :func:`sample_support_size` and :func:`sample_shots`.
    Within each class a random permutation gives the query (its first ``q`` examples) and the
    support (the next ``k_c``). The support is ordered class by class with labels
    ``0 .. n_way-1``; ``class_ids`` holds the dataset class of each label. Support and query are
    fetched with one ``dataset.gather`` per episode.

    Args:
        dataset: The source's classes.
        seed: Run seed; the generator is seeded from ``(seed, rank)``.
        rank: Stream id (the distributed rank): ranks draw different episodes.
        pool: Where the classes come from (default :class:`FlatPool` over every class).
        min_ways, max_ways: Bounds of the number of ways.
        max_query: Most query examples per class.
        max_support: Largest support set.
        max_support_per_class: Largest contribution of one class to the support size.
        min_log_weight, max_log_weight: Range of the log-weights of the class proportions.
        fixed: ``(n_way, k_shot, n_query)``: the classic N-way K-shot special case (classes still
            from the pool), same output type.
        augment: Optional random augmentation ``augment(batch, generator) -> batch`` (e.g.
            :class:`~metalearn.data.transforms.Augment`) with this sampler's generator, as
            :class:`~metalearn.data.samplers.EpisodeSampler`; meta-training only
            (:class:`MetaDatasetEpisodes` never augments).
        name: The source's name, used in error messages.

    Raises:
        ValueError / TypeError: infeasible settings (too few classes, a class with fewer than 2
            examples, fixed shapes the classes cannot give), with the fix in the message.

    Examples:
        >>> from metalearn.data import ArrayDataset
        >>> ds = ArrayDataset(np.random.rand(240, 3), np.repeat(np.arange(12), 20))
        >>> ep = MetaDatasetSampler(ds, seed=0).sample()
        >>> 5 <= ep.n_way <= 12, ep.support_y.unique().tolist() == list(range(ep.n_way))
        (True, True)
        >>> ep = MetaDatasetSampler(ds, fixed=(5, 1, 3)).sample()
        >>> tuple(ep.support_x.shape), tuple(ep.query_x.shape)
        ((5, 3), (15, 3))
    """

    def __init__(self, dataset: ClassDataset, seed: int = 0, rank: int = 0,
                 pool: ClassPool | None = None, min_ways: int = 5, max_ways: int = 50,
                 max_query: int = 10, max_support: int = 500, max_support_per_class: int = 100,
                 min_log_weight: float = math.log(0.5), max_log_weight: float = math.log(2),
                 fixed: tuple[int, int, int] | None = None, augment: Augmentation | None = None,
                 name: str | None = None):
        if not isinstance(dataset, ClassDataset):
            raise TypeError(f"dataset must be a ClassDataset, got {type(dataset).__name__} "
                            "(wrap a torch Dataset in metalearn.data.TorchDataset)")
        self.name = name if name is not None else type(dataset).__name__
        _check_rules(min_ways, max_ways, max_query, max_support, max_support_per_class,
                     min_log_weight, max_log_weight)
        self.dataset, self.seed, self.rank, self.augment = dataset, seed, rank, augment
        self.min_ways, self.max_ways, self.max_query = int(min_ways), int(max_ways), int(max_query)
        self.max_support, self.max_support_per_class = int(max_support), int(max_support_per_class)
        self.min_log_weight, self.max_log_weight = float(min_log_weight), float(max_log_weight)
        self.pool = pool if pool is not None else FlatPool(dataset.num_classes)
        if not isinstance(self.pool, ClassPool):
            raise TypeError(f"pool must have draw_pool(generator) and describe(), got {type(self.pool).__name__}")
        if isinstance(self.pool, FlatPool) and self.pool.n_classes != dataset.num_classes:
            raise ValueError(f"FlatPool has {self.pool.n_classes} classes but source {self.name!r} has "
                             f"{dataset.num_classes}: build it as FlatPool(dataset.num_classes)")
        sizes = dataset.class_sizes().astype(np.int64)
        self._sizes = sizes
        self.fixed = None if fixed is None else tuple(int(v) for v in fixed)
        self._check_feasible(fixed)
        order = np.argsort(dataset.labels, kind="stable")
        self._order = torch.from_numpy(order.astype(np.int64))
        self._starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.generator = make_generator(seed, rank) if rank else make_generator(seed)
        self.n_sampled = 0

    def _check_feasible(self, fixed) -> None:
        sizes, name, n_classes = self._sizes, self.name, self.dataset.num_classes
        if fixed is not None:
            if len(fixed) != 3:
                raise ValueError(f"fixed must be (n_way, k_shot, n_query), got {fixed!r}")
            n_way, k_shot, n_query = self.fixed
            if n_way < 2 or k_shot < 1 or n_query < 1:
                raise ValueError(f"fixed=(n_way, k_shot, n_query) needs n_way >= 2, k_shot >= 1 and "
                                 f"n_query >= 1, got {fixed!r}")
            if n_way > n_classes:
                raise ValueError(f"fixed n_way={n_way} but source {name!r} has only {n_classes} classes: "
                                 f"lower n_way to at most {n_classes} or use a split with more classes")
            small = int(np.argmin(sizes))
            if sizes[small] < k_shot + n_query:
                raise ValueError(
                    f"fixed k_shot + n_query = {k_shot} + {n_query} but class "
                    f"{self.dataset.class_names[small]!r} of source {name!r} has only {sizes[small]} "
                    f"examples: lower k_shot + n_query to at most {sizes[small]} or drop the small classes"
                )
            return
        if n_classes < self.min_ways:
            raise ValueError(
                f"source {name!r} has {n_classes} classes but a Meta-Dataset episode needs at least "
                f"min_ways={self.min_ways}: use a split with at least {self.min_ways} classes, "
                "merge sources, or lower min_ways"
            )
        small = np.nonzero(sizes < 2)[0]
        if len(small):
            raise ValueError(
                f"class {self.dataset.class_names[small[0]]!r} of source {name!r} has "
                f"{int(sizes[small[0]])} example(s) ({len(small)} classes have fewer than 2): a "
                "Meta-Dataset episode needs at least 2 per class (one query, one support); drop them "
                "with dataset.subset_classes([c for c, n in enumerate(dataset.class_sizes()) if n >= 2])"
            )
        if self.max_support < min(self.max_ways, n_classes):
            raise ValueError(
                f"max_support={self.max_support} is below the {min(self.max_ways, n_classes)} ways an "
                f"episode of source {name!r} may have (one support example each): raise max_support "
                "or lower max_ways"
            )

    # -- one episode's indices

    def _choose_classes(self, g: torch.Generator) -> np.ndarray:
        pool, draw_ways = self.pool.draw_pool(g)
        pool = np.asarray(pool, dtype=np.int64).reshape(-1)
        if len(pool) and (pool.min() < 0 or pool.max() >= len(self._sizes)):
            raise ValueError(f"the class pool {self.pool.describe()} gave class indices outside "
                             f"0..{len(self._sizes) - 1} of source {self.name!r}: build it for this dataset")
        if self.fixed is not None or draw_ways:
            if self.fixed is not None:
                n_way = self.fixed[0]
                if len(pool) < n_way:
                    raise ValueError(f"the class pool of source {self.name!r} gave {len(pool)} classes, "
                                     f"fewer than fixed n_way={n_way}: lower n_way or use a pool with "
                                     "larger groups")
            else:
                n_way = sample_num_ways(len(pool), g, self.min_ways, self.max_ways, self.name)
            return pool[torch.randperm(len(pool), generator=g)[:n_way].numpy()]
        if not self.min_ways <= len(pool) <= self.max_ways:
            raise ValueError(
                f"the class pool {self.pool.describe()} of source {self.name!r} gave {len(pool)} "
                f"classes to take whole, outside [min_ways, max_ways] = [{self.min_ways}, "
                f"{self.max_ways}]: make the pool give between {self.min_ways} and {self.max_ways}"
            )
        return pool

    def _positions(self, sizes: np.ndarray, take: np.ndarray, g: torch.Generator) -> Tensor:
        """For each class ``c``, the first ``take[c]`` entries of a random permutation of
        ``0 .. sizes[c]-1``, as rows of an ``(n_way, max(take))`` tensor (rows padded past ``take[c]``)."""
        width = int(take.max())
        out = torch.empty(len(sizes), width, dtype=torch.int64)
        sparse = (sizes > _SPARSE_MIN_CLASS) & (sizes >= 8 * width)
        dense = np.nonzero(~sparse)[0]
        if len(dense):
            n = torch.from_numpy(sizes[dense])
            keys = torch.rand(len(dense), max(int(n.max()), width), generator=g)
            keys.masked_fill_(torch.arange(keys.shape[1]) >= n[:, None], 2.0)  # padding never chosen
            # the smallest keys in increasing order: a prefix of a uniform random permutation
            out[torch.from_numpy(dense)] = keys.topk(width, dim=1, largest=False).indices
        rows = np.nonzero(sparse)[0]
        if len(rows):
            n = torch.from_numpy(sizes[rows])[:, None]
            draw = (torch.rand(len(rows), width, generator=g, dtype=torch.float64) * n).long()
            while True:  # redraw repeated values (later occurrences): uniform over distinct tuples
                value, where = draw.sort(dim=1, stable=True)
                again = torch.zeros_like(draw, dtype=torch.bool)
                again.scatter_(1, where[:, 1:], value[:, 1:] == value[:, :-1])
                if not again.any():
                    break
                fresh = (torch.rand(len(rows), width, generator=g, dtype=torch.float64) * n).long()
                draw = torch.where(again, fresh, draw)
            out[torch.from_numpy(rows)] = draw
        return out

    def draw_plan(self) -> _Plan:
        """Draw the indices of one episode from this sampler's generator (no examples fetched).

        Returns:
            The plan: ``classes`` ``(n_way,)``, ``shots`` ``(n_way,)``, ``n_query`` per class and
            the example indices ``support`` ``(sum(shots),)`` and ``query`` ``(n_way * n_query,)``,
            class by class; :meth:`episode_from_plan` fetches them.

        Examples:
            >>> from metalearn.data import ArrayDataset
            >>> sampler = MetaDatasetSampler(ArrayDataset(np.random.rand(90, 2), np.repeat(np.arange(6), 15)))
            >>> plan = sampler.draw_plan()
            >>> len(plan.support) == int(plan.shots.sum()), len(plan.query) == len(plan.classes) * plan.n_query
            (True, True)
            >>> sampler.episode_from_plan(plan).n_way == len(plan.classes)
            True
        """
        g = self.generator
        classes = self._choose_classes(g)
        sizes = self._sizes[classes]
        n_way = len(classes)
        if self.fixed is not None:
            q = self.fixed[2]
            shots = np.full(n_way, self.fixed[1], dtype=np.int64)
        else:
            names = [self.dataset.class_names[c] for c in classes] if sizes.min() < 2 else None
            q = compute_num_query(sizes, self.max_query, names, self.name)
            remaining = sizes - q
            beta = 1.0 - float(torch.rand((), generator=g, dtype=torch.float64))  # U(0, 1]
            support_size = sample_support_size(remaining, beta, self.max_support, self.max_support_per_class)
            u = torch.rand(n_way, generator=g, dtype=torch.float64).numpy()
            log_w = self.min_log_weight + (self.max_log_weight - self.min_log_weight) * u
            shots = sample_shots(sizes, remaining, support_size, log_w)
        take = q + shots
        cols = np.arange(int(take.max()))
        used = torch.from_numpy(cols < take[:, None])
        pos = self._positions(sizes, take, g).where(used, 0)  # past take[c]: padding
        examples = self._order[torch.from_numpy(self._starts[classes])[:, None] + pos].numpy()
        in_support = (cols >= q) & (cols < take[:, None])  # row-major: class by class
        return _Plan(classes=classes, shots=shots, n_query=q, support=examples[in_support],
                     query=examples[:, :q].reshape(-1))

    def episode_from_plan(self, plan: _Plan, augment: bool = True) -> Episode:
        """Fetch the examples of a plan (one ``gather``) and build the :class:`Episode`."""
        n_support = len(plan.support)
        x = self.dataset.gather(torch.from_numpy(np.concatenate([plan.support, plan.query])))
        ways = torch.arange(len(plan.classes))
        episode = Episode(
            support_x=x[:n_support], support_y=ways.repeat_interleave(torch.from_numpy(plan.shots)),
            query_x=x[n_support:], query_y=ways.repeat_interleave(plan.n_query),
            class_ids=torch.from_numpy(plan.classes.copy()),
        )
        if augment and self.augment is not None:
            episode = self.augment(EpisodeBatch.stack([episode]), self.generator)[0]
        return episode

    # -- public sampling API

    def sample(self) -> Episode:
        """Draw one episode."""
        self.n_sampled += 1
        return self.episode_from_plan(self.draw_plan())

    def sample_batch(self, n_tasks: int) -> EpisodeList:
        """Draw ``n_tasks`` episodes (of different shapes) as an :class:`EpisodeList`."""
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
        return EpisodeList(self.sample() for _ in range(n_tasks))

    def batches(self, n_tasks: int) -> Iterator[EpisodeList]:
        """An endless iterator of meta-batches of ``n_tasks`` episodes."""
        while True:
            yield self.sample_batch(n_tasks)

    def rules(self) -> dict:
        """The rule settings, JSON-able (recorded with results)."""
        return {"min_ways": self.min_ways, "max_ways": self.max_ways, "max_query": self.max_query,
                "max_support": self.max_support, "max_support_per_class": self.max_support_per_class,
                "min_log_weight": self.min_log_weight, "max_log_weight": self.max_log_weight,
                "fixed": list(self.fixed) if self.fixed is not None else None}

    # Resumable exactly as EpisodeSampler: the generator state, n_sampled, seed and rank.
    state_dict = EpisodeSampler.state_dict
    load_state_dict = EpisodeSampler.load_state_dict


class MetaDatasetEpisodes:
    """The fixed, seeded Meta-Dataset episodes of a validation or test split.

    The index plan of every episode is drawn at construction (indices only, cheap), identical
    across runs, processes and algorithms; ``fingerprint`` is a SHA-256 of the plan to record with
    every result. Episode ``i`` equals the ``i``-th episode of a :class:`MetaDatasetSampler` with
    the same seed and settings (never augmented).

    Args:
        dataset: The split's classes.
        n_episodes: Number of episodes (600 or more for the leaderboard's CI).
        seed: Seed of the episode set.
        pool: Where the classes come from (default every class).
        name: The source's name (errors and :meth:`describe`).
        **rules: The rule settings of :class:`MetaDatasetSampler` (``min_ways``, ``max_ways``,
            ``max_query``, ``max_support``, ``max_support_per_class``, ``min_log_weight``,
            ``max_log_weight``, ``fixed``).

    Examples:
        >>> from metalearn.data import ArrayDataset
        >>> ds = ArrayDataset(np.random.rand(160, 2), np.repeat(np.arange(8), 20))
        >>> a, b = MetaDatasetEpisodes(ds, 4, seed=1), MetaDatasetEpisodes(ds, 4, seed=1)
        >>> a.fingerprint == b.fingerprint, len(a), a.describe()["protocol"]
        (True, 4, 'meta-dataset')
    """

    def __init__(self, dataset: ClassDataset, n_episodes: int, seed: int,
                 pool: ClassPool | None = None, name: str | None = None, **rules):
        if "augment" in rules:
            raise ValueError("validation and test episodes are never augmented: drop augment= "
                             "(give it to the meta-training MetaDatasetSampler)")
        if n_episodes < 1:
            raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
        self._sampler = MetaDatasetSampler(dataset, seed=seed, pool=pool, name=name, **rules)
        self.seed, self.name = seed, self._sampler.name
        self._plans = [self._sampler.draw_plan() for _ in range(n_episodes)]
        h = hashlib.sha256()
        for plan in self._plans:
            plan.digest(h)
        self.fingerprint = h.hexdigest()

    def __len__(self) -> int:
        return len(self._plans)

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} out of range for {len(self)} episodes")
        return self._sampler.episode_from_plan(self._plans[i], augment=False)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    def describe(self) -> dict:
        """What to record with a result: the protocol, the pool, the rules and the fingerprint."""
        return {"protocol": "meta-dataset", "source": self.name, "n_episodes": len(self),
                "seed": self.seed, "fingerprint": self.fingerprint,
                "pool": self._sampler.pool.describe(), **self._sampler.rules()}


class MultiSourceSampler:
    """Episodes from several sources, the source of each drawn with the given weights.

    The source draws come from this sampler's own generator (seeded from ``(seed, rank)``);
    each episode is then drawn by that source's own sampler.

    Args:
        samplers: Source name -> its :class:`MetaDatasetSampler` (at least one).
        weights: Probability weights of the sources, in the order of ``samplers`` (uniform when
            ``None``); non-negative, finite, not all zero.
        seed: Seed of the source draws.
        rank: Stream id (the distributed rank).

    Attributes:
        last_sources: The source of each episode of the last :meth:`sample` / :meth:`sample_batch`.

    Raises:
        ValueError: no samplers, or weights that do not match the sources.

    Examples:
        >>> from metalearn.data import ArrayDataset
        >>> a = ArrayDataset(np.random.rand(120, 2), np.repeat(np.arange(6), 20))
        >>> b = ArrayDataset(np.random.rand(140, 2), np.repeat(np.arange(7), 20))
        >>> multi = MultiSourceSampler({"a": MetaDatasetSampler(a), "b": MetaDatasetSampler(b)}, [1, 3])
        >>> batch = multi.sample_batch(4)
        >>> len(batch), len(multi.last_sources), set(multi.last_sources) <= {"a", "b"}
        (4, 4, True)
    """

    def __init__(self, samplers: dict[str, MetaDatasetSampler], weights: Sequence[float] | None = None,
                 seed: int = 0, rank: int = 0):
        if not samplers:
            raise ValueError("MultiSourceSampler needs at least one source sampler")
        self.samplers = dict(samplers)
        self.names = list(self.samplers)
        self.seed, self.rank = seed, rank
        self.weights = self._check_weights(weights)
        self._probs = torch.tensor(self.weights, dtype=torch.float64)
        self.generator = make_generator(seed, "multi-source", rank)
        self.last_sources: list[str] = []
        self.n_sampled = 0

    def _check_weights(self, weights) -> list[float]:
        names = ", ".join(self.names)
        if weights is None:
            return [1.0 / len(self.names)] * len(self.names)
        w = np.asarray(list(weights), dtype=np.float64)
        if w.shape != (len(self.names),):
            raise ValueError(f"{len(w)} weights for {len(self.names)} sources ({names}): give one weight "
                             "per source, in that order, or None for uniform")
        if not np.isfinite(w).all():
            raise ValueError(f"weights of sources ({names}) must be finite numbers, got {w.tolist()}")
        if (w < 0).any():
            raise ValueError(f"weights of sources ({names}) must be non-negative, got {w.tolist()}")
        if w.sum() <= 0:
            raise ValueError(f"weights of sources ({names}) are all zero: give at least one source a "
                             "positive weight")
        return (w / w.sum()).tolist()

    def sample(self) -> Episode:
        """One episode; ``last_sources`` names its source."""
        return self.sample_batch(1)[0]

    def sample_batch(self, n_tasks: int) -> EpisodeList:
        """``n_tasks`` episodes, each from a source drawn with the weights."""
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
        picks = torch.multinomial(self._probs, n_tasks, replacement=True, generator=self.generator)
        self.last_sources = [self.names[i] for i in picks.tolist()]
        self.n_sampled += n_tasks
        return EpisodeList(self._global_ids(self.samplers[s].sample(), s) for s in self.last_sources)

    @property
    def class_offsets(self) -> dict[str, int]:
        """Source name -> the offset of its classes in the union of all sources' classes: episodes'
        ``class_ids`` are global (``offset + the class's index in its source``), so a classifier
        pretrained on every source (Baseline, TSA) sees distinct labels for distinct classes."""
        offsets, total = {}, 0
        for name in self.names:
            offsets[name] = total
            total += self.samplers[name].dataset.num_classes
        return offsets

    @property
    def num_classes(self) -> int:
        """Classes of all sources together."""
        return sum(s.dataset.num_classes for s in self.samplers.values())

    def _global_ids(self, episode: Episode, source: str) -> Episode:
        offset = self.class_offsets[source]
        if not offset or episode.class_ids is None:
            return episode
        return dataclasses.replace(episode, class_ids=episode.class_ids + offset)

    def batches(self, n_tasks: int) -> Iterator[EpisodeList]:
        """An endless iterator of meta-batches of ``n_tasks`` episodes."""
        while True:
            yield self.sample_batch(n_tasks)

    def state_dict(self) -> dict:
        """Its own generator and counters and every source sampler's state."""
        return {"generator": self.generator.get_state(), "n_sampled": self.n_sampled,
                "seed": self.seed, "rank": self.rank, "sources": list(self.names),
                "samplers": {name: s.state_dict() for name, s in self.samplers.items()}}

    def load_state_dict(self, state: dict) -> None:
        if list(state["sources"]) != self.names:
            raise ValueError(f"sampler state is for sources {state['sources']}, this sampler has {self.names}")
        if state.get("seed", self.seed) != self.seed or state.get("rank", self.rank) != self.rank:
            raise ValueError(f"sampler state is for seed={state.get('seed')} rank={state.get('rank')}, "
                             f"this sampler has seed={self.seed} rank={self.rank}")
        self.generator.set_state(state["generator"])
        self.n_sampled = int(state["n_sampled"])
        for name, s in self.samplers.items():
            s.load_state_dict(state["samplers"][name])
