"""Your own ``torch.utils.data.Dataset`` as a :class:`ClassDataset`, read lazily.

Episode samplers need two things of a dataset: every example's label, without decoding the
examples, and :meth:`~ClassDataset.gather` of the few examples a batch of tasks uses.
:class:`TorchDataset` reads the labels once (from a ``targets`` or ``labels`` attribute when the
dataset has one, else by indexing every item once) and decodes an item only when a task draws
it, through ``dataset[i]``. Decoded items are kept in a small LRU cache: episodic training
draws the same examples again and again (a 5-way 1-shot step touches a few dozen of them, from a
pool of a few thousand), so when ``__getitem__`` decodes a file or runs a transform, keeping
the results in memory saves most of that work after the first pass.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from metalearn.data.base import ClassDataset, as_float_images
from metalearn.data.regression import TaskFamily
from metalearn.data.user_tasks import UserTasks

DEFAULT_CACHE_BYTES = 256 * 2**20
"""Default budget of :class:`TorchDataset`'s cache of decoded items (256 MiB)."""


def _item_tensor(x) -> Tensor:
    """One example as a tensor: tensors as they are, NumPy arrays shared, PIL images as
    ``(C, H, W)`` uint8 (``(1, H, W)`` for grey), which :meth:`TorchDataset.gather` then scales."""
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if hasattr(x, "getbands"):  # a PIL image: HWC (or HW) uint8
        array = torch.from_numpy(np.array(x))
        return array[None] if array.ndim == 2 else array.permute(2, 0, 1).contiguous()
    if isinstance(x, np.ndarray | np.generic | int | float | list):
        return torch.as_tensor(np.asarray(x))
    raise TypeError(f"dataset items must be tensors, NumPy arrays or PIL images, got {type(x).__name__}")


def _label(item) -> object:
    """The label of ``dataset[i]``: the second element of an ``(x, label, ...)`` item."""
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise TypeError(f"dataset[i] must be an (x, label) pair, got {type(item).__name__}: pass "
                        "labels= or give the dataset a `targets` attribute")
    y = item[1]
    return y.item() if isinstance(y, Tensor | np.ndarray | np.generic) else y


class _ItemCache:
    """Decoded items by dataset index, least recently used evicted beyond ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[int, Tensor] = OrderedDict()

    def get(self, i: int) -> Tensor | None:
        x = self._items.get(i)
        if x is not None:
            self._items.move_to_end(i)
        return x

    def put(self, i: int, x: Tensor) -> None:
        size = x.numel() * x.element_size()
        if size > self.max_bytes or i in self._items:
            return
        self._items[i] = x
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def __len__(self) -> int:
        return len(self._items)


class TorchDataset(ClassDataset):
    """A map-style ``torch.utils.data.Dataset`` of ``(x, label)`` items as a :class:`ClassDataset`.

    Plugs into :class:`~metalearn.data.EpisodeSampler`, :class:`~metalearn.data.FixedEpisodes`
    and, through :func:`~metalearn.data.registry.register_dataset`, into ``train(cfg)``.

    Args:
        dataset: Anything with ``__len__`` and ``__getitem__(i) -> (x, label, ...)``; ``x`` a
            tensor, NumPy array or PIL image (converted to ``(C, H, W)``), all of one shape.
            :meth:`gather` returns uint8 as float32 in ``[0, 1]`` and other floats as float32.
        class_names: Name of each integer label value (default: the dataset's ``classes``
            attribute when it has one, as torchvision datasets do, else the label values).
        labels: Every item's label, if known (skips reading them).
        cache_bytes: Memory for decoded items (LRU). Set 0 when ``__getitem__`` is random (e.g.
            applies its own augmentation): a cached item would repeat one draw forever.

    Labels are read once: ``dataset.targets`` or ``dataset.labels`` when present with one value
    per item, else ``dataset[i][1]`` for every ``i`` (a full pass that decodes each item once,
    filling the cache as it goes). Label values, integers or strings, become ``0 .. C-1`` in
    sorted order.

    Raises:
        TypeError: items are not ``(x, label)`` pairs of tensors, arrays or PIL images.
        ValueError: the dataset is empty or its items differ in shape (the index is named).

    Examples:
        >>> class Squares(torch.utils.data.Dataset):
        ...     targets = [0, 0, 1, 1, 2, 2]
        ...     def __len__(self):
        ...         return 6
        ...     def __getitem__(self, i):
        ...         return torch.full((1, 4, 4), float(i)), self.targets[i]
        >>> ds = TorchDataset(Squares())
        >>> ds.num_classes, ds.item_shape, ds.gather(torch.tensor([[5, 0]]))[0, :, 0, 0, 0].tolist()
        (3, (1, 4, 4), [5.0, 0.0])
    """

    def __init__(self, dataset, class_names: Sequence[str] | None = None, *,
                 labels: Sequence | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES):
        n = len(dataset)
        if n == 0:
            raise ValueError("the dataset is empty: a TorchDataset needs at least one item per class")
        self.dataset = dataset
        self._cache = _ItemCache(cache_bytes)
        self._positions: np.ndarray | None = None  # this view's index -> dataset index
        first = dataset[0]
        x0 = _item_tensor(first[0] if isinstance(first, tuple | list) else first)
        self._cache.put(0, x0)
        self._shape = tuple(x0.shape)
        if labels is None:
            for attr in ("targets", "labels"):
                value = getattr(dataset, attr, None)
                if value is not None and len(value) == n:
                    labels = value
                    break
        if labels is None:  # one pass over the items; what fits stays in the cache
            labels = []
            for i in range(n):
                item = dataset[i] if i else first
                labels.append(_label(item))
                if self._cache.get(i) is None:
                    self._cache.put(i, _item_tensor(item[0]))
        values = np.asarray(labels.tolist() if isinstance(labels, Tensor) else list(labels))
        if values.shape != (n,):
            raise ValueError(f"labels has shape {values.shape}, expected ({n},): one label per item")
        uniques, codes = np.unique(values, return_inverse=True)
        names = class_names if class_names is not None else getattr(dataset, "classes", None)
        if names is not None and uniques.dtype.kind in "iu" and (uniques >= 0).all() and \
                uniques.max() < len(names):
            names = [str(names[v]) for v in uniques]
        else:
            if class_names is not None:
                raise ValueError(f"class_names names {len(class_names)} classes but the labels are "
                                 f"{uniques[:5].tolist()}...: give one name per integer label value")
            names = [str(v) for v in uniques]
        self.labels = codes.reshape(-1).astype(np.int64)
        self.class_names = names

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self._shape

    def _fetch(self, i: int) -> Tensor:
        """Item ``i`` of the wrapped dataset, decoded (from the cache when it is there)."""
        x = self._cache.get(i)
        if x is None:
            item = self.dataset[i]
            x = _item_tensor(item[0] if isinstance(item, tuple | list) else item)
            self._cache.put(i, x)
        return x

    def gather(self, index: Tensor) -> Tensor:
        """Fetch examples, shape ``(*index.shape, *item_shape)``, decoding those not cached."""
        rows = index.reshape(-1).tolist()
        if self._positions is not None:
            rows = self._positions[rows].tolist()
        items = [self._fetch(i) for i in rows]
        for i, x in zip(rows, items):
            if tuple(x.shape) != self._shape:
                raise ValueError(f"item {i} has shape {tuple(x.shape)}, item 0 {self._shape}: every "
                                 "item must have one shape (resize in your Dataset)")
        out = torch.stack(items) if items else self._fetch(0).new_empty((0, *self._shape))
        return as_float_images(out).reshape(*index.shape, *self._shape)

    def _view(self, keep: np.ndarray, labels: np.ndarray, class_names: list[str]) -> TorchDataset:
        view = object.__new__(TorchDataset)  # shares the dataset and its cache; labels given
        view.dataset, view._cache, view._shape = self.dataset, self._cache, self._shape
        view._positions = keep if self._positions is None else self._positions[keep]
        view.labels, view.class_names = np.asarray(labels, dtype=np.int64), list(class_names)
        return view

    def _raw_items(self) -> Tensor:
        return self.gather(torch.arange(len(self)))

    def __repr__(self) -> str:
        return (f"TorchDataset({type(self.dataset).__name__}: {len(self)} examples, "
                f"{self.num_classes} classes, item shape {self.item_shape})")


def as_source(obj) -> ClassDataset | TaskFamily | UserTasks:
    """``obj`` as an episode source: a :class:`ClassDataset`, :class:`TaskFamily` or
    :class:`~metalearn.data.user_tasks.UserTasks` as it is, any other map-style dataset
    (``__len__`` and ``__getitem__``) wrapped in :class:`TorchDataset`.

    Raises:
        TypeError: ``obj`` is none of these.
    """
    if isinstance(obj, ClassDataset | TaskFamily | UserTasks):
        return obj
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        return TorchDataset(obj)
    raise TypeError(f"a dataset build must return a ClassDataset, a TaskFamily, UserTasks or a map-style "
                    f"torch Dataset of (x, label) items, got {type(obj).__name__}")
