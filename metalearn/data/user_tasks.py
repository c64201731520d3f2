"""Cold-start recommendation as few-shot regression: every user is a task.

A user's ratings are split into a *support* set (what the recommender is told about the new
user) and a *query* set (the ratings it must predict), by a protocol of the literature:

- **MeLU** (Lee et al., KDD 2019; hoyeoplee/MeLU ``data_generation.py``): users with 13 to 100
  ratings; the query is 10 of them drawn at random, the support the rest (3 to 90).
- **MAMO** (Dong et al., KDD 2020; dongmanqing/Code-for-MAMO ``prepareMovielens.py``): users with
  at least 20 ratings, of which the first 20 by time are kept; the support is the first 15, the
  query the last 5 (the recommender predicts the user's next ratings, never the past).

Users, not ratings, are split into meta-train / validation / test (:func:`split_users`): at
random (seeded, 8:1:1 in the presets), or by time as MAMO does (the users whose first rating
comes last are the new ones). An item-cold variant (``item_cold=True``) holds a seeded share of
the items out of meta-training altogether; the validation and test queries are then ratings of
those items only, so the recommender meets them for the first time.

Episodes are ordinary regression :class:`~metalearn.types.Episode` s: ``x`` is an int64 row of
attribute codes, ``[item_code, item attributes..., user attributes...]`` (laid out by
:attr:`UserTasks.fields`), ``y`` the rating ``(n, 1)`` float32. ``item_code`` is ``1 +`` the
item's index for items rated in meta-training and ``0`` for an item never seen there (it carries
no learned embedding: an unseen item is known by its attributes only). Support sizes differ
between users, so a meta-batch is an :class:`~metalearn.types.EpisodeList` (an
:class:`~metalearn.types.EpisodeBatch` when the sizes agree, as under MAMO); evaluation takes
the users one at a time. Nothing is dropped silently: users outside a protocol's range are
counted by reason (:attr:`UserTasks.skipped`) and the count is printed.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from metalearn._rng import derive_seed, make_generator
from metalearn.data.samplers import EpisodeSampler
from metalearn.types import Episode, EpisodeBatch, EpisodeList

if TYPE_CHECKING:
    from metalearn.data.ratings import RatingsTable


@dataclass(frozen=True)
class RatingProtocol:
    """How a user's ratings become a support and a query set.

    Attributes:
        name: ``"melu"`` or ``"mamo"`` (or your own).
        min_ratings: Users with fewer ratings are skipped (counted).
        max_ratings: Users with more ratings are skipped (counted); ``None``: no upper bound.
        n_query: Query ratings per user.
        keep_first: Keep only each user's first ``keep_first`` ratings by time; ``None``: all.
        n_support: Support ratings per user; ``None``: every kept rating not in the query.
        query: ``"random"`` (drawn, seeded) or ``"latest"`` (the user's last ratings by time,
            the support being the earlier ones).
    """

    name: str
    min_ratings: int
    max_ratings: int | None
    n_query: int
    keep_first: int | None = None
    n_support: int | None = None
    query: Literal["random", "latest"] = "random"

    def __post_init__(self) -> None:
        if self.n_query < 1 or self.min_ratings < self.n_query + 1:
            raise ValueError(f"protocol {self.name!r}: n_query must be >= 1 and min_ratings > n_query "
                             f"(a user needs a support set), got n_query={self.n_query}, "
                             f"min_ratings={self.min_ratings}")
        if self.query not in ("random", "latest"):
            raise ValueError(f"protocol {self.name!r}: query must be 'random' or 'latest', got {self.query!r}")


PROTOCOLS: dict[str, RatingProtocol] = {
    "melu": RatingProtocol("melu", min_ratings=13, max_ratings=100, n_query=10),
    "mamo": RatingProtocol("mamo", min_ratings=20, max_ratings=None, n_query=5, keep_first=20,
                           n_support=15, query="latest"),
}
"""The protocols by name (``data.protocol``)."""


def _protocol(protocol: str | RatingProtocol) -> RatingProtocol:
    if isinstance(protocol, RatingProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: choose one of {sorted(PROTOCOLS)} "
                         "(data.protocol), or pass a RatingProtocol")
    return PROTOCOLS[protocol]


def _rows_by_user(user: np.ndarray, timestamp: np.ndarray, item: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Each user's rating rows, ordered by time (ties by item): ``rows[u]`` int64."""
    order = np.lexsort((item, timestamp, user))
    counts = np.bincount(user, minlength=n_users)
    return np.split(order, np.cumsum(counts)[:-1])


def split_users(first_time: np.ndarray, users: np.ndarray, how: Literal["random", "time"],
                fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Split users into ``train`` / ``val`` / ``test``.

    Args:
        first_time: ``(n_users,)`` timestamp of each user's first rating (for ``how="time"``).
        users: The dense ids of the users to split ``(n,)``.
        how: ``"random"`` (a seeded permutation) or ``"time"`` (MAMO's cold users: ordered by
            first rating, the earliest ``fractions[0]`` meta-train, then validation, the latest
            test; ties by id).
        fractions: ``[train, val, test]``, summing to 1.
        seed: Seed of the random split.

    Returns:
        ``{"train", "val", "test"}`` -> sorted dense user ids; disjoint, covering ``users``.

    Examples:
        >>> s = split_users(np.array([5, 1, 3, 2]), np.arange(4), "time", [0.5, 0.25, 0.25], 0)
        >>> {k: v.tolist() for k, v in s.items()}
        {'train': [1, 3], 'val': [2], 'test': [0]}
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"the user split needs fractions [train, val, test] >= 0 summing to 1 "
                         f"(data.split_fractions), got {list(fractions)}")
    users = np.asarray(users, dtype=np.int64)
    if how == "random":
        order = users[np.random.default_rng(derive_seed(seed, "users")).permutation(len(users))]
    elif how == "time":
        order = users[np.lexsort((users, first_time[users]))]
    else:
        raise ValueError(f"user_split must be 'random' or 'time', got {how!r}")
    n_train = int(round(fractions[0] * len(users)))
    n_val = int(round(fractions[1] * len(users)))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:]}
    return {k: np.sort(v) for k, v in parts.items()}


def cold_items(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``(n_items,)`` bool mask of the items held out of meta-training (item-cold)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the cold item fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(derive_seed(seed, "cold-items"))
    mask = np.zeros(n_items, dtype=bool)
    mask[rng.permutation(n_items)[:int(round(fraction * n_items))]] = True
    return mask


_TOLD: set = set()
"""The skip counts printed so far in this process (each is printed once)."""


class UserTasks:
    """The users of one split of a ratings table, as regression tasks of a protocol.

    Args:
        table: A :class:`~metalearn.data.ratings.RatingsTable`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        protocol: ``"melu"``, ``"mamo"`` or a :class:`RatingProtocol`.
        user_split: ``"random"`` or ``"time"`` (:func:`split_users`).
        fractions: ``[train, val, test]`` shares of the eligible users.
        seed: Seed of the user split and of the cold items.
        item_cold: Hold ``cold_fraction`` of the items out of meta-training; validation and test
            queries are ratings of those items only.
        cold_fraction: Share of the items held out with ``item_cold``.
        quiet: Do not print the count of skipped users.

    Attributes:
        users: ``(n,)`` dense ids of this split's users (eligible under the protocol), sorted.
        fields: ``[[name, cardinality, width], ...]``: the layout of ``x`` (``model.fields``).
        skipped: Users of the whole table left out, by reason (``"fewer than 13 ratings"``, ...).
        item_codes: ``(n_items,)`` the code of each item in ``x[:, 0]`` (0: unseen in meta-training).

    Raises:
        ValueError: an unknown split or protocol, bad fractions, or a split without users.

    Examples:
        >>> from metalearn.data.ratings import RatingsTable
        >>> rng = np.random.default_rng(0)
        >>> user, item = np.repeat(np.arange(40), 20), np.tile(np.arange(20), 40)
        >>> table = RatingsTable(user=user, item=item, rating=rng.integers(1, 6, 800).astype(np.float32),
        ...                      timestamp=np.arange(800), user_ids=tuple(map(str, range(40))),
        ...                      item_ids=tuple(map(str, range(20))), item_titles=None,
        ...                      item_attrs=(), user_attrs=())
        >>> tasks = UserTasks(table, "train", "mamo", fractions=[0.5, 0.25, 0.25], quiet=True)
        >>> len(tasks), tasks.fields
        (20, [['item', 21, 1]])
        >>> ep = tasks.episode(0)
        >>> tuple(ep.support_x.shape), tuple(ep.query_y.shape)
        ((15, 1), (5, 1))
        >>> type(UserTaskSampler(tasks, seed=0).sample_batch(4)).__name__  # equal sizes: stacked
        'EpisodeBatch'
        >>> test = UserEpisodes(UserTasks(table, "test", "melu", quiet=True), seed=2)
        >>> len(test), tuple(test[0].query_x.shape), test.describe()["n_episodes"]
        (4, (10, 1), 4)
    """

    def __init__(self, table: RatingsTable, split: str = "train", protocol: str | RatingProtocol = "melu",
                 user_split: Literal["random", "time"] = "random",
                 fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, item_cold: bool = False,
                 cold_fraction: float = 0.2, quiet: bool = False):
        if split not in ("train", "val", "test"):
            raise ValueError(f"a ratings table has the user splits train, val and test, got {split!r} "
                             "(data.train_split=train data.val_split=val data.test_split=test)")
        self.table, self.split, self.protocol = table, split, _protocol(protocol)
        self.item_cold = item_cold
        p = self.protocol
        rows = _rows_by_user(table.user, table.timestamp, table.item, table.n_users)
        self.cold = cold_items(table.n_items, cold_fraction, seed) if item_cold else np.zeros(table.n_items, bool)
        counts = np.array([len(r) for r in rows])
        few = counts < p.min_ratings
        many = counts > p.max_ratings if p.max_ratings else np.zeros_like(few)
        self.skipped = {f"fewer than {p.min_ratings} ratings": int(few.sum())}
        if p.max_ratings:
            self.skipped[f"more than {p.max_ratings} ratings"] = int(many.sum())
        eligible = np.flatnonzero(~few & ~many)
        first = np.array([table.timestamp[r[0]] if len(r) else 0 for r in rows])
        parts = split_users(first, eligible, user_split, fractions, seed)
        # item-cold: meta-training never sees a rating of a cold item
        self._rows: dict[int, np.ndarray] = {}
        for u in parts["train"]:
            r = rows[u] if not item_cold else rows[u][~self.cold[table.item[rows[u]]]]
            self._rows[int(u)] = r if p.keep_first is None else r[:p.keep_first]
        seen = np.zeros(table.n_items, dtype=bool)
        for r in self._rows.values():
            seen[table.item[r]] = True
        self.item_codes = np.where(seen, np.arange(1, table.n_items + 1), 0).astype(np.int64)
        users = parts[split]
        if split != "train":
            self._rows = {int(u): rows[u] for u in users}
        kept = [u for u in users if self._usable(self._rows[int(u)])]
        if split != "train" and item_cold and len(kept) < len(users):
            self.skipped[f"fewer than {p.n_query} cold-item ratings ({split})"] = len(users) - len(kept)
        if split == "train" and len(kept) < len(users):
            self.skipped["too few ratings once cold items are held out"] = len(users) - len(kept)
        self.users = np.asarray(kept, dtype=np.int64)
        if len(self.users) == 0:
            raise ValueError(f"the {split} split of {table.name} has no user with enough ratings for the "
                             f"{p.name} protocol (skipped: {self.skipped}): use a larger table, another "
                             "protocol (data.protocol) or other data.split_fractions")
        self._item_x = np.concatenate([self.item_codes[:, None]] + [a.codes for a in table.item_attrs], 1)
        self._user_x = np.concatenate([np.zeros((table.n_users, 0), np.int64)]
                                      + [a.codes for a in table.user_attrs], 1)
        self.fields = ([["item", table.n_items + 1, 1]]
                       + [[f"item.{a.name}", a.cardinality, a.codes.shape[1]] for a in table.item_attrs]
                       + [[f"user.{a.name}", a.cardinality, a.codes.shape[1]] for a in table.user_attrs])
        told = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n)
        key = (table.fingerprint, p, user_split, tuple(fractions), seed, item_cold, told)
        if not quiet and told and key not in _TOLD:  # once per table and protocol, not per split
            _TOLD.add(key)
            print(f"{table.name} ({p.name} protocol): skipped {told}; {split} split: {len(self.users)} users",
                  file=sys.stderr)

    def _usable(self, rows: np.ndarray) -> bool:
        p = self.protocol
        if self.split == "train":  # eligible already; with cold items held out, fewer may be left
            return len(rows) > p.n_query
        if not self.item_cold:
            return True
        cold = self.cold[self.table.item[rows]]
        return int(cold.sum()) >= p.n_query and int((~cold).sum()) >= 1

    def __len__(self) -> int:
        return len(self.users)

    @property
    def width(self) -> int:
        """Columns of ``x``."""
        return sum(f[2] for f in self.fields)

    def features(self, users: np.ndarray, items: np.ndarray) -> Tensor:
        """The int64 input rows ``(n, width)`` of ``(user, item)`` pairs given as dense ids ``(n,)``."""
        return torch.from_numpy(np.concatenate([self._item_x[items], self._user_x[users]], 1))

    def features_of(self, user_codes: np.ndarray, items: np.ndarray) -> Tensor:
        """The input rows ``(n, width)`` of a user who is not in the table (attribute codes
        ``(n_user_columns,)``, 0 where unknown) with items given as dense ids ``(n,)``."""
        user = np.broadcast_to(np.asarray(user_codes, np.int64), (len(items), self._user_x.shape[1]))
        return torch.from_numpy(np.concatenate([self._item_x[items], user], 1))

    def support_query(self, index: int, generator: torch.Generator | None = None, *,
                      random_query: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The rating rows of user ``users[index]``'s support and query sets.

        A ``"random"`` query is drawn with ``generator`` (default: seeded by the user's id, so
        the same user always gets the same split). ``random_query`` draws the query at random
        under a ``"latest"`` protocol too (among the ratings it keeps): the meta-training
        sampler's augmentation, never used for evaluation.
        """
        p, rows = self.protocol, self._rows[int(self.users[index])]
        if generator is None:
            generator = make_generator(derive_seed(0, "user", int(self.users[index])))
        if self.item_cold and self.split != "train":
            cold = self.cold[self.table.item[rows]]
            candidates, support = rows[cold], rows[~cold]
        else:
            rows = rows if p.keep_first is None else rows[:p.keep_first]
            candidates, support = rows, None
        if p.query == "latest" and not random_query:
            query = candidates[-p.n_query:]
        else:
            pick = torch.randperm(len(candidates), generator=generator)[:p.n_query].numpy()
            query = candidates[np.sort(pick)]
        if support is None:  # the rest, in time order
            support = candidates[~np.isin(candidates, query)]
        if p.n_support is not None:
            support = support[:p.n_support]
        return support, query

    def episode_from_rows(self, support: np.ndarray, query: np.ndarray) -> Episode:
        """The :class:`Episode` of given support and query rating rows."""
        t = self.table
        y = torch.from_numpy(t.rating.astype(np.float32))
        return Episode(self.features(t.user[support], t.item[support]), y[support].unsqueeze(-1),
                       self.features(t.user[query], t.item[query]), y[query].unsqueeze(-1))

    def episode(self, index: int, generator: torch.Generator | None = None, *,
                random_query: bool = False) -> Episode:
        """User ``users[index]`` as an :class:`Episode` (see :meth:`support_query`)."""
        return self.episode_from_rows(*self.support_query(index, generator, random_query=random_query))

    def train_ratings(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every rating this split's users keep under the protocol (the meta-training data of the
        baselines): ``(user, item_code, rating)``, each ``(n,)``."""
        rows = np.concatenate([self._rows[int(u)] for u in self.users])
        t = self.table
        return (torch.from_numpy(t.user[rows]), torch.from_numpy(self.item_codes[t.item[rows]]),
                torch.from_numpy(t.rating[rows].astype(np.float32)))

    def describe(self) -> dict:
        """The protocol and split, to record with a result."""
        return {"table": self.table.name, "table_fingerprint": self.table.fingerprint,
                "protocol": self.protocol.name, "split": self.split, "users": len(self),
                "item_cold": self.item_cold, "skipped": dict(self.skipped)}


def _stack_or_list(episodes: list[Episode]) -> EpisodeBatch | EpisodeList:
    shapes = {tuple(ep.support_x.shape) for ep in episodes}
    return EpisodeBatch.stack(episodes) if len(shapes) == 1 else EpisodeList(episodes)


class UserTaskSampler:
    """Meta-training batches of users, seeded and resumable (the :class:`EpisodeSampler` of users).

    Each batch holds distinct users drawn uniformly; a user's query set is drawn afresh, at
    random among the ratings the protocol keeps, every time the user is drawn, under MAMO's
    time-ordered protocol too. That is an augmentation of meta-training only: with the
    protocol's one fixed split per user a CNP memorised the meta-training queries in
    development runs (under MAMO its training error kept falling while its validation error
    rose). The validation and test users follow the protocol exactly (:class:`UserEpisodes`).

    ``group_sizes`` draws each batch among users of one support size, so that the batch stacks
    into an :class:`EpisodeBatch` that MAML, MeLU and Meta-SGD map with ``vmap`` (under the
    MeLU protocol support sizes run from 3 to 90, and a mixed batch is mapped one user at a
    time). A first user is drawn uniformly, then the others among the users whose support has
    the same size (all of them when fewer than ``n_tasks``): a size is picked with probability
    proportional to its users, and each user's expected weight in the mean loss is the same
    ``1 / len(tasks)`` as with mixed batches, so the meta-gradient's expectation is unchanged;
    only which users share a batch differs.

    Args:
        tasks: The meta-training :class:`UserTasks`.
        seed: Run seed; the generator is seeded from ``(seed, rank)``.
        rank: Stream id (the distributed rank).
        group_sizes: Batch users of equal support size (see above).

    Examples: see :class:`UserTasks`.
    """

    def __init__(self, tasks: UserTasks, seed: int = 0, rank: int = 0, group_sizes: bool = False):
        self.tasks, self.seed, self.rank, self.group_sizes = tasks, seed, rank, group_sizes
        self.generator = make_generator(seed, rank) if rank else make_generator(seed)
        self.n_sampled = 0
        self._groups: dict[int, np.ndarray] = {}
        self._size_of = np.zeros(0, np.int64)
        if group_sizes:
            g = torch.Generator().manual_seed(0)  # the sizes do not depend on which query is drawn
            self._size_of = np.array([len(tasks.support_query(i, g, random_query=True)[0])
                                      for i in range(len(tasks))], np.int64)
            self._groups = {int(k): np.flatnonzero(self._size_of == k) for k in np.unique(self._size_of)}

    def sample_batch(self, n_tasks: int) -> EpisodeBatch | EpisodeList:
        """``n_tasks`` distinct users: an :class:`EpisodeBatch` when their sets have equal sizes,
        else an :class:`EpisodeList`. With ``group_sizes``, fewer when fewer users share the
        first user's support size (always an :class:`EpisodeBatch`).

        Raises:
            ValueError: more users asked for than the split has.
        """
        picks = self.draw_users(n_tasks)
        return _stack_or_list([self.tasks.episode(i, self.generator, random_query=True) for i in picks])

    def draw_users(self, n_tasks: int) -> list[int]:
        """The indices (into ``tasks``) of the next batch's users; advances the stream."""
        if not 1 <= n_tasks <= len(self.tasks):
            raise ValueError(f"a batch of {n_tasks} users, but the meta-training split has "
                             f"{len(self.tasks)}: set train.meta_batch between 1 and {len(self.tasks)}")
        if self.group_sizes:
            first = int(torch.randint(len(self.tasks), (1,), generator=self.generator))
            group = self._groups[int(self._size_of[first])]
            others = group[group != first]
            order = torch.randperm(len(others), generator=self.generator)[:n_tasks - 1].numpy()
            picks = [first, *others[order].tolist()]
        else:
            picks = torch.randperm(len(self.tasks), generator=self.generator)[:n_tasks].tolist()
        self.n_sampled += len(picks)
        return picks

    def sample(self) -> Episode:
        """One user's task."""
        return self.sample_batch(1)[0]

    # the same seeded stream as EpisodeSampler's: its state methods read only the generator,
    # n_sampled, seed and rank
    state_dict = EpisodeSampler.state_dict
    load_state_dict = EpisodeSampler.load_state_dict


class UserEpisodes:
    """The fixed evaluation tasks of a split: one episode per user, the same for every method.

    Args:
        tasks: The validation or test :class:`UserTasks`.
        seed: Seed of the random query draws (recorded with the result).
        n_episodes: Evaluate the first ``n_episodes`` users only; ``None``: every user.

    Attributes:
        ranking_k: The cut-offs of the nDCG that evaluation reports for these tasks.

    Examples: see :class:`UserTasks`.
    """

    ranking_k = (3, 5, 10)

    def __init__(self, tasks: UserTasks, seed: int, n_episodes: int | None = None):
        if n_episodes is not None and n_episodes < 1:
            raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
        self.tasks, self.seed = tasks, seed
        n = len(tasks) if n_episodes is None else min(n_episodes, len(tasks))
        g = make_generator(seed)
        self._rows = [tasks.support_query(i, g) for i in range(n)]
        h = hashlib.sha256()
        for s, q in self._rows:
            h.update(s.tobytes())
            h.update(q.tobytes())
        h.update(tasks.table.fingerprint.encode())
        self.fingerprint = h.hexdigest()

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} out of range for {len(self)} users")
        return self.tasks.episode_from_rows(*self._rows[i])

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    def rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The rating rows (indices into ``tasks.table``) of episode ``i``'s support and query sets."""
        support, query = self._rows[i]
        return support.copy(), query.copy()

    def user(self, i: int) -> str:
        """The raw id (as in the data files) of the user of episode ``i``."""
        return self.tasks.table.user_ids[int(self.tasks.users[i])]

    def describe(self) -> dict:
        """What to record with a result: the protocol, the users and the fingerprint."""
        sizes = [len(s) for s, _ in self._rows]
        return {**self.tasks.describe(), "n_episodes": len(self), "seed": self.seed,
                "support_sizes": [min(sizes), max(sizes)], "fingerprint": self.fingerprint}
