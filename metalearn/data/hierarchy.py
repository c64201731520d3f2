"""Class hierarchies that choose the candidate classes of a Meta-Dataset episode.

Meta-Dataset (Triantafillou et al., ICLR 2020) does not draw an episode's classes from the whole
class set of every source: Omniglot draws one alphabet uniformly and then the ways within it
(a two-level hierarchy), and ImageNet draws one internal node of the WordNet DAG uniformly among
those spanning 5..392 leaves and takes its leaves, subsampled to at most 50 (reference:
``meta_dataset/data/sampling.py`` and ``imagenet_specification.py``).

Both are *class pools*: objects with ``draw_pool(generator) -> (class indices, draw_ways)`` and
``describe() -> dict``, which the episode sampler of :mod:`metalearn.data.metadataset` calls
once per episode (the protocol is structural, so nothing here imports the sampler).

- :class:`ClassHierarchy`: groups of classes, one group per episode, uniformly; the sampler then
  draws the number of ways among the group's classes (``draw_ways=True``).
- :class:`ClassDAG`: a DAG of named nodes over the dataset's classes (its leaves); one eligible
  node per episode, its leaves taken as the ways (``draw_ways=False``).

Builders: :func:`omniglot_alphabets`, :func:`clinc_domains` and :func:`read_folder_tree` (any
``root/<group>/<class>/<image>`` tree).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from metalearn.data.base import ClassDataset
from metalearn.data.folders import ImageFolder, _decode_files
from metalearn.data.images import IMAGE_EXTENSIONS, image_size_tuple

_REPORTED: set[str] = set()  # skip notices already printed (each is printed once per process)


def _uniform_index(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator).item())


def _frozen(indices: Iterable[int]) -> np.ndarray:
    array = np.array(sorted(indices), dtype=np.int64)
    array.flags.writeable = False  # handed out by draw_pool: a caller cannot corrupt the pool
    return array


class ClassHierarchy:
    """Two levels: named groups of classes; each episode draws one group uniformly.

    Args:
        groups: Group name -> the dataset class indices of its classes. A class belongs to at
            most one group; classes in no group are never drawn.
        n_classes: Number of classes of the dataset (every index must lie in ``0 .. n_classes-1``).
        min_classes: Groups with fewer classes cannot give a 5-way episode (Meta-Dataset's
            minimum number of ways) and are left out.
        on_small: ``"skip"``: leave small groups out, record them in :attr:`skipped` and print
            one notice to stderr; ``"refuse"``: raise an error that names them.
        class_names: The dataset's class names (index order), optional; needed by
            :meth:`subset` to follow a ``subset_classes`` view given by names.

    Attributes:
        groups: Group name -> int64 class indices (sorted, read-only) of the groups in use.
        skipped: Group name -> size of each group left out as too small.

    ``draw_pool(generator)`` returns ``(groups[name], True)`` for a name drawn uniformly: the
    sampler draws the number of ways within that group.

    Raises:
        ValueError: an index out of range or repeated, a class in two groups, small groups with
            ``on_small="refuse"``, or no group with ``min_classes`` classes.

    Examples:
        >>> h = ClassHierarchy({"a": [0, 1, 2, 3, 4], "b": [5, 6, 7, 8, 9], "c": [10]}, 11)
        >>> sorted(h.groups), h.skipped
        (['a', 'b'], {'c': 1})
        >>> pool, draw_ways = h.draw_pool(torch.Generator().manual_seed(0))
        >>> draw_ways, len(pool)
        (True, 5)
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], n_classes: int, min_classes: int = 5,
                 on_small: Literal["skip", "refuse"] = "skip", *,
                 class_names: Sequence[str] | None = None):
        if on_small not in ("skip", "refuse"):
            raise ValueError(f"on_small must be 'skip' or 'refuse', got {on_small!r}")
        if min_classes < 1:
            raise ValueError(f"min_classes must be at least 1, got {min_classes}")
        if class_names is not None and len(class_names) != n_classes:
            raise ValueError(f"{len(class_names)} class names for n_classes={n_classes}: give one "
                             "name per class of the dataset")
        if not groups:
            raise ValueError("a class hierarchy needs at least one group of classes")
        owner: dict[int, str] = {}
        self._all_groups: dict[str, np.ndarray] = {}
        for name, members in groups.items():
            idx = np.asarray(members, dtype=np.int64).reshape(-1)
            bad = idx[(idx < 0) | (idx >= n_classes)]
            if bad.size:
                raise ValueError(f"group {name!r} holds class index {int(bad[0])}, outside "
                                 f"0..{n_classes - 1}: the dataset has {n_classes} classes")
            if len(np.unique(idx)) != len(idx):
                raise ValueError(f"group {name!r} lists a class twice: list each class once")
            for c in idx.tolist():
                if c in owner:
                    raise ValueError(f"class {c} is in groups {owner[c]!r} and {name!r}: a two-level "
                                     "hierarchy puts each class in one group (use ClassDAG for "
                                     "classes with several parents)")
                owner[c] = name
            self._all_groups[str(name)] = _frozen(idx.tolist())
        self.n_classes, self.min_classes, self.on_small = int(n_classes), int(min_classes), on_small
        self.class_names = None if class_names is None else list(class_names)
        small = {g: len(c) for g, c in self._all_groups.items() if len(c) < min_classes}
        if small and on_small == "refuse":
            raise ValueError(f"{len(small)} groups have fewer than {min_classes} classes: "
                             f"{_listing(small)}; pass on_small='skip' to leave them out, or merge them")
        self.skipped: dict[str, int] = small
        self.groups: dict[str, np.ndarray] = {g: c for g, c in self._all_groups.items() if g not in small}
        if not self.groups:
            raise ValueError(f"no group has {min_classes} or more classes (sizes: {_listing(small)}): "
                             "lower min_classes or use a flat pool of all classes")
        self._names = sorted(self.groups)  # draw order independent of the mapping's order
        if small:
            notice = (f"class hierarchy: skipped {len(small)} of {len(self._all_groups)} groups with "
                      f"fewer than {min_classes} classes: {_listing(small)}")
            if notice not in _REPORTED:
                _REPORTED.add(notice)
                print(notice, file=sys.stderr)

    def draw_pool(self, generator: torch.Generator) -> tuple[np.ndarray, bool]:
        """One group, drawn uniformly: ``(its class indices (int64, sorted, read-only), True)``."""
        return self.groups[self._names[_uniform_index(len(self._names), generator)]], True

    def describe(self) -> dict:
        """JSON-able summary: kind, group sizes, skipped groups and the rule's settings."""
        return {"kind": "hierarchy", "n_classes": self.n_classes, "n_groups": len(self.groups),
                "min_classes": self.min_classes, "on_small": self.on_small,
                "group_sizes": {g: len(self.groups[g]) for g in self._names},
                "skipped": dict(self.skipped)}

    def __repr__(self) -> str:
        return (f"ClassHierarchy({len(self.groups)} groups over {self.n_classes} classes, "
                f"{len(self.skipped)} skipped)")

    @staticmethod
    def from_class_names(names: Sequence[str], sep: str = "/", level: int = 0, min_classes: int = 5,
                         on_small: Literal["skip", "refuse"] = "skip") -> ClassHierarchy:
        """Group classes by the first ``level + 1`` components of their names.

        Args:
            names: The dataset's class names in class-index order, e.g. Omniglot's
                ``"Alphabet/character07"`` (or ``".../rot090"`` with rotations).
            sep: The separator of name components.
            level: 0 groups by the first component, 1 by the first two, and so on; every name
                needs at least ``level + 2`` components (a group part and a class part).

        Raises:
            ValueError: a name has too few components (the message shows it).

        Examples:
            >>> names = [f"greek/c{i}" for i in range(5)] + ["runes/c0", "runes/c1"]
            >>> h = ClassHierarchy.from_class_names(names)
            >>> {g: c.tolist() for g, c in h.groups.items()}, h.skipped
            ({'greek': [0, 1, 2, 3, 4]}, {'runes': 2})
        """
        if level < 0:
            raise ValueError(f"level must be 0 or more, got {level}")
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            parts = name.split(sep)
            if len(parts) < level + 2:
                raise ValueError(f"class name {name!r} has {len(parts)} component(s) split by {sep!r}; "
                                 f"level={level} needs at least {level + 2} (group{sep}...{sep}class): "
                                 "pass the right sep or a lower level")
            groups.setdefault(sep.join(parts[:level + 1]), []).append(i)
        return ClassHierarchy(groups, len(names), min_classes, on_small, class_names=names)

    def subset(self, names_or_indices: Sequence[str] | Sequence[int]) -> ClassHierarchy:
        """The hierarchy of ``dataset.subset_classes(names_or_indices)``.

        That view keeps the given classes relabelled ``0 .. k-1`` in the given order; this maps
        every group (also those skipped here, which may still be small or not) to the new
        indices, drops the classes left out and applies ``min_classes`` / ``on_small`` again.

        Args:
            names_or_indices: Exactly what was passed to ``subset_classes``: class indices of
                this hierarchy's dataset, or class names (needs ``class_names``).

        Raises:
            ValueError: names without ``class_names``, an unknown name or an index out of range.

        Examples:
            >>> h = ClassHierarchy.from_class_names([f"g{i // 6}/c{i}" for i in range(18)])
            >>> sub = h.subset([12, 13, 14, 15, 16, 17, 0, 1])   # as ds.subset_classes([...])
            >>> {g: c.tolist() for g, c in sub.groups.items()}, sub.skipped
            ({'g2': [0, 1, 2, 3, 4, 5]}, {'g0': 2})
        """
        if len(names_or_indices) and isinstance(names_or_indices[0], str):
            if self.class_names is None:
                raise ValueError("this hierarchy has no class names: pass class indices, or build it "
                                 "with class_names=dataset.class_names")
            position = {n: i for i, n in enumerate(self.class_names)}
            missing = [n for n in names_or_indices if n not in position]
            if missing:
                raise ValueError(f"{len(missing)} classes are not in this hierarchy, e.g. {missing[:3]}")
            chosen = np.array([position[n] for n in names_or_indices], dtype=np.int64)
        else:
            chosen = np.asarray(names_or_indices, dtype=np.int64).reshape(-1)
            if chosen.size and (chosen.min() < 0 or chosen.max() >= self.n_classes):
                raise ValueError(f"class indices must lie in 0..{self.n_classes - 1}")
        new = np.full(self.n_classes, -1, dtype=np.int64)
        new[chosen] = np.arange(len(chosen))
        groups = {g: new[c][new[c] >= 0] for g, c in self._all_groups.items()}
        names = None if self.class_names is None else [self.class_names[c] for c in chosen]
        return ClassHierarchy({g: c for g, c in groups.items() if len(c)}, len(chosen),
                              self.min_classes, self.on_small, class_names=names)


def _listing(sizes: Mapping[str, int], most: int = 10) -> str:
    items = [f"{name} ({size})" for name, size in sorted(sizes.items())]
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


class ClassDAG:
    """ImageNet-style class DAG: each episode takes the leaves of one eligible internal node.

    The graph is given by ``(parent, child)`` name pairs; a child may have several parents.
    Only the dataset's classes (``leaves``) and their ancestors are kept (so a full WordNet
    ``is_a`` file works for any class subset); in that graph each leaf must have no children.
    A node spans the leaves below it; the *eligible* nodes are the internal nodes spanning
    ``min_leaves .. max_leaves`` leaves (Meta-Dataset: 5 and ``MAX_SPANNING_LEAVES_ELIGIBLE =
    392``). ``draw_pool`` draws one eligible node uniformly and returns its leaves, subsampled
    uniformly without replacement to ``max_classes`` when it spans more, with ``False``: the
    sampler takes them all as the ways. Leaf sets are computed once, at construction.

    Args:
        edges: ``(parent, child)`` pairs of node names.
        leaves: The dataset's class names in class-index order (e.g. WordNet ids ``n01440764``).
        min_leaves, max_leaves: The span of an eligible node.
        max_classes: At most this many leaves per episode (Meta-Dataset's 50 ways).

    Attributes:
        eligible: The eligible node names, sorted.

    Raises:
        ValueError: a cycle (the message shows it), a leaf with children or without a parent,
            a repeated leaf, bad bounds, or no eligible node.

    Examples:
        >>> edges = [("root", "a"), ("root", "b")] + [("a", f"x{i}") for i in range(6)] \\
        ...     + [("b", f"x{i}") for i in range(3, 9)]
        >>> dag = ClassDAG(edges, [f"x{i}" for i in range(9)], max_leaves=8, max_classes=4)
        >>> dag.eligible, dag.leaves_of("b").tolist()
        (['a', 'b'], [3, 4, 5, 6, 7, 8])
        >>> pool, draw_ways = dag.draw_pool(torch.Generator().manual_seed(0))
        >>> len(pool), draw_ways
        (4, False)
    """

    def __init__(self, edges: Iterable[tuple[str, str]], leaves: Sequence[str], min_leaves: int = 5,
                 max_leaves: int = 392, max_classes: int = 50):
        if not 1 <= min_leaves <= max_leaves:
            raise ValueError(f"need 1 <= min_leaves <= max_leaves, got {min_leaves} and {max_leaves}")
        if max_classes < 1:
            raise ValueError(f"max_classes must be at least 1, got {max_classes}")
        leaves = [str(x) for x in leaves]
        leaf_index = {name: i for i, name in enumerate(leaves)}
        if len(leaf_index) != len(leaves):
            repeated = sorted({x for x in leaves if leaves.count(x) > 1})
            raise ValueError(f"leaves must be distinct class names; repeated: {repeated[:5]}")
        children: dict[str, set[str]] = {}
        parents: dict[str, set[str]] = {}
        for edge in edges:
            parent, child = (str(x) for x in edge)
            children.setdefault(parent, set()).add(child)
            parents.setdefault(child, set()).add(parent)
        _check_acyclic(children, parents)
        orphans = [x for x in leaves if x not in parents]
        if orphans:
            raise ValueError(f"{len(orphans)} leaves have no parent in the edges, e.g. {orphans[:3]}: "
                             "every class must lie below some node (check the edge file and the names)")
        # Keep the leaves and their ancestors only: a full WordNet file has many other nodes.
        kept, frontier = set(leaves), deque(leaves)
        while frontier:
            for p in parents.get(frontier.popleft(), ()):
                if p not in kept:
                    kept.add(p)
                    frontier.append(p)
        inner = [x for x in leaves if children.get(x, set()) & kept]
        if inner:
            below = sorted(children[inner[0]] & kept)[:3]
            raise ValueError(f"{len(inner)} classes have other classes below them, e.g. {inner[0]!r} "
                             f"above {below}: a class must be a leaf of the DAG")
        # Leaf sets bottom-up (children before parents), each computed once.
        span: dict[str, frozenset[int]] = {x: frozenset((i,)) for x, i in leaf_index.items()}
        for node in _bottom_up(kept, children):
            if node not in span:
                span[node] = frozenset().union(*(span[c] for c in children[node] if c in kept))
        internal = {x: s for x, s in span.items() if x not in leaf_index}
        self.eligible = sorted(x for x, s in internal.items() if min_leaves <= len(s) <= max_leaves)
        if not self.eligible:
            sizes = sorted(len(s) for s in internal.values())
            raise ValueError(f"no internal node spans {min_leaves}..{max_leaves} leaves (the "
                             f"{len(sizes)} internal nodes span {sizes[:5]}..{sizes[-5:]} leaves): "
                             "widen min_leaves/max_leaves or check the edges")
        self._leaves = {x: _frozen(internal[x]) for x in self.eligible}
        self.leaves = leaves
        self.n_nodes, self.min_leaves, self.max_leaves = len(kept), min_leaves, max_leaves
        self.max_classes = max_classes

    def leaves_of(self, node: str) -> np.ndarray:
        """The class indices (int64, sorted) spanned by an eligible node."""
        if node not in self._leaves:
            raise KeyError(f"{node!r} is not an eligible node (spanning {self.min_leaves}.."
                           f"{self.max_leaves} leaves); see .eligible")
        return self._leaves[node]

    def draw_pool(self, generator: torch.Generator) -> tuple[np.ndarray, bool]:
        """One eligible node, drawn uniformly: ``(its leaves, at most max_classes of them, False)``."""
        pool = self._leaves[self.eligible[_uniform_index(len(self.eligible), generator)]]
        if len(pool) > self.max_classes:
            pick = torch.randperm(len(pool), generator=generator)[: self.max_classes].numpy()
            pool = np.sort(pool[pick])
        return pool, False

    def describe(self) -> dict:
        """JSON-able summary: kind, graph size, the eligible span and the class cap."""
        return {"kind": "dag", "n_nodes": self.n_nodes, "n_leaves": len(self.leaves),
                "n_eligible": len(self.eligible), "min_leaves": self.min_leaves,
                "max_leaves": self.max_leaves, "max_classes": self.max_classes}

    def __repr__(self) -> str:
        return (f"ClassDAG({len(self.leaves)} leaves, {self.n_nodes} nodes, "
                f"{len(self.eligible)} eligible)")

    @staticmethod
    def from_wordnet(is_a_path: str | os.PathLike, leaves: Sequence[str], **kwargs) -> ClassDAG:
        """Read ImageNet's ``wordnet.is_a.txt`` (one ``parent child`` pair of WordNet ids per line).

        Args:
            is_a_path: The file (shipped with the ImageNet devkit and Meta-Dataset).
            leaves: The dataset's class names (WordNet ids) in class-index order.
            **kwargs: ``min_leaves``, ``max_leaves``, ``max_classes`` of :class:`ClassDAG`.

        Raises:
            ValueError: a line that is not two ids (its number is in the message).

        Examples:
            >>> import tempfile
            >>> path = Path(tempfile.mkdtemp()) / "wordnet.is_a.txt"
            >>> _ = path.write_text("".join(f"n0 n{i}\\n" for i in range(1, 7)))
            >>> ClassDAG.from_wordnet(path, [f"n{i}" for i in range(1, 7)]).eligible
            ['n0']
        """
        edges = []
        with open(is_a_path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise ValueError(f"{is_a_path}:{number}: expected 'parent child' (two WordNet ids), "
                                     f"got {line.strip()!r}")
                edges.append((fields[0], fields[1]))
        return ClassDAG(edges, leaves, **kwargs)


def _check_acyclic(children: Mapping[str, set[str]], parents: Mapping[str, set[str]]) -> None:
    """Kahn's algorithm; on failure, walk parents inside the remainder to show one cycle."""
    nodes = set(children) | set(parents)
    indegree = {x: len(parents.get(x, ())) for x in nodes}
    frontier = deque(x for x, d in indegree.items() if d == 0)
    done = 0
    while frontier:
        done += 1
        for c in children.get(frontier.popleft(), ()):
            indegree[c] -= 1
            if indegree[c] == 0:
                frontier.append(c)
    if done == len(nodes):
        return
    left = {x for x, d in indegree.items() if d > 0}
    path, node = [], min(left)
    while node not in path:  # every remaining node has a remaining parent: this walk must loop
        path.append(node)
        node = min(p for p in parents[node] if p in left)
    cycle = path[path.index(node):][::-1]
    raise ValueError(f"the class graph has a cycle: {' -> '.join([*cycle, cycle[0]])}; "
                     "a hierarchy must be acyclic (remove one of these edges)")


def _bottom_up(nodes: set[str], children: Mapping[str, set[str]]) -> list[str]:
    """``nodes`` ordered so that each comes after all its children (the graph is acyclic)."""
    order, seen = [], set()
    for start in sorted(nodes):
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(sorted(children.get(start, set()) & nodes)))]
        while stack:  # iterative post-order DFS: no recursion limit, whatever the depth
            node, it = stack[-1]
            child = next(it, None)
            if child is None:
                order.append(node)
                stack.pop()
            elif child not in seen:
                seen.add(child)
                stack.append((child, iter(sorted(children.get(child, set()) & nodes))))
    return order


def omniglot_alphabets(dataset: ClassDataset, min_classes: int = 5,
                       on_small: Literal["skip", "refuse"] = "skip") -> ClassHierarchy:
    """Omniglot's bilevel hierarchy: one alphabet per episode, as Meta-Dataset samples it.

    Class names are ``"Alphabet/characterNN"`` (``".../rotDDD"`` with rotations, which stay in
    their alphabet).

    Examples:
        >>> names = [f"Greek/character{i:02d}" for i in range(1, 25)]
        >>> ds = ClassDataset(np.zeros((24, 1)), np.arange(24), names)
        >>> omniglot_alphabets(ds).describe()["group_sizes"]
        {'Greek': 24}
    """
    return ClassHierarchy.from_class_names(dataset.class_names, "/", 0, min_classes, on_small)


def clinc_domains(class_names: Sequence[str], domains_json_path: str | os.PathLike,
                  min_classes: int = 5, on_small: Literal["skip", "refuse"] = "skip") -> ClassHierarchy:
    """CLINC150's 10 domains (15 intents each) as groups: one domain per episode.

    Args:
        class_names: The intents of the dataset (or split) in class-index order.
        domains_json_path: ``domains.json``: ``{"domain": ["intent", ...], ...}``. Intents of
            other splits are ignored; a split holding few intents of a domain may skip it.

    Raises:
        ValueError: the file is not a domain -> intents mapping, an intent is in two domains,
            or some of ``class_names`` are in no domain (they are listed).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "domains.json"
        >>> _ = path.write_text('{"bank": ["a", "b", "c", "d", "e"], "home": ["f"]}')
        >>> h = clinc_domains(["a", "b", "c", "d", "e", "f"], path)
        >>> h.groups["bank"].tolist(), h.skipped
        ([0, 1, 2, 3, 4], {'home': 1})
    """
    with open(domains_json_path, encoding="utf-8") as f:
        domains = json.load(f)
    if not isinstance(domains, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in domains.values()):
        raise ValueError(f"{domains_json_path}: expected a JSON object mapping each domain to a list "
                         "of intent names, e.g. {\"banking\": [\"transfer\", ...], ...}")
    domain_of: dict[str, str] = {}
    for domain, intents in domains.items():
        for intent in intents:
            if intent in domain_of:
                raise ValueError(f"{domains_json_path}: intent {intent!r} is in domains "
                                 f"{domain_of[intent]!r} and {domain!r}; list it once")
            domain_of[intent] = domain
    missing = [c for c in class_names if c not in domain_of]
    if missing:
        raise ValueError(f"{len(missing)} intents are in no domain of {domains_json_path}: "
                         f"{missing[:10]}; add them to a domain (out-of-scope queries stay apart)")
    groups: dict[str, list[int]] = {}
    for i, intent in enumerate(class_names):
        groups.setdefault(domain_of[intent], []).append(i)
    return ClassHierarchy(groups, len(class_names), min_classes, on_small, class_names=class_names)


def read_folder_tree(root: str | os.PathLike, image_size: int | Sequence[int] = 84, channels: int = 3,
                     min_classes: int = 5, on_small: Literal["skip", "refuse"] = "skip",
                     skip_corrupt: bool = False, cache: str | os.PathLike | None = None
                     ) -> tuple[ClassDataset, ClassHierarchy]:
    """Images in a two-level tree ``root/<group>/<class>/<image>``: the classes and their groups.

    Class names are ``"group/class"``, sorted; images are decoded once (Lanczos, grey or RGB)
    into the same versioned cache as :class:`~metalearn.data.folders.ImageFolder`.

    Args:
        root: The folder of group folders.
        image_size: Side (or ``(h, w)``) after the resize.
        channels: 1 (grey) or 3 (RGB).
        min_classes, on_small: As in :class:`ClassHierarchy`.
        skip_corrupt, cache: As in :class:`~metalearn.data.folders.ImageFolder`.

    Returns:
        ``(dataset, hierarchy)``: a :class:`ClassDataset` of ``(channels, H, W)`` images and the
        :class:`ClassHierarchy` of its groups.

    Raises:
        FileNotFoundError: ``root`` is missing or has no group folders.
        ValueError: images where group or class folders were expected, or a class folder
            without images (the message says what was expected where).

    Examples:
        >>> from PIL import Image
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for g, c in [("g", f"c{i}") for i in range(5)]:
        ...     (root / g / c).mkdir(parents=True)
        ...     Image.new("L", (8, 8)).save(root / g / c / "0.png")
        >>> ds, h = read_folder_tree(root, 8, 1, cache=root / "cache")
        >>> ds.class_names[0], sorted(h.groups), ds.item_shape
        ('g/c0', ['g'], (1, 8, 8))
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    root = Path(root).expanduser()
    expected = f"expected {root}/<group>/<class>/<image>"
    if not root.is_dir():
        raise FileNotFoundError(f"folder tree {root} does not exist or is not a folder: {expected}")
    _no_images_here(root, "group folders", expected)
    files, labels, class_names, ignored = [], [], [], 0
    groups = _subfolders(root, "group folders", expected)
    for group in groups:
        _no_images_here(root / group, "class folders", expected)
        for cls in _subfolders(root / group, "class folders", expected):
            entries = sorted(p for p in (root / group / cls).iterdir() if p.is_file())
            images = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
            ignored += len(entries) - len(images)
            if not images:
                raise ValueError(f"{root / group / cls} holds no image files ({expected}): add images "
                                 "or remove the folder")
            name = f"{group}/{cls}"
            class_names.append(name)
            files += images
            labels += [name] * len(images)
    if ignored:
        warnings.warn(f"{root}: ignored {ignored} files that are not images", stacklevel=2)
    key = "tree-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    array, int_labels, _ = _decode_files(key, files, labels, class_names, image_size_tuple(image_size),
                                         channels, skip_corrupt, cache)
    dataset = ClassDataset(array, int_labels, class_names)
    return dataset, ClassHierarchy.from_class_names(class_names, "/", 0, min_classes, on_small)


def _subfolders(folder: Path, what: str, expected: str) -> list[str]:
    try:
        return ImageFolder.class_folders(folder)
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} has no {what}: {expected}") from None


def _no_images_here(folder: Path, what: str, expected: str) -> None:
    images = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if images:
        raise ValueError(f"{folder} holds images ({images[0]!r} ...) where {what} were expected: "
                         f"{expected} (a one-level root/<class>/<image> folder is an ImageFolder)")
