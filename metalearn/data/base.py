"""The labelled-dataset type every classification source in metalearn produces.

A :class:`ClassDataset` holds its examples in one array (memory-mapped from the cache for image
datasets), an int64 label per example and a name per class. Labels are available without
decoding anything, and :meth:`ClassDataset.gather` fetches any index tensor of examples in one
vectorised call, which is what makes episode sampling cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def as_tensor(array: np.ndarray | Tensor) -> Tensor:
    """A tensor sharing memory with ``array``, also for read-only memory maps (never written to)."""
    if isinstance(array, Tensor):
        return array
    with warnings.catch_warnings():  # a read-only memmap: metalearn only ever reads from it
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(array))


def as_float_images(x: Tensor) -> Tensor:
    """What :meth:`ClassDataset.gather` returns for raw examples ``x``: uint8 scaled to float32 in
    ``[0, 1]``, other floating dtypes as float32, integer and bool dtypes unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).mul_(1.0 / 255.0)
    if torch.is_floating_point(x) and x.dtype != torch.float32:
        return x.to(torch.float32)
    return x


class ClassDataset:
    """Examples grouped into named classes.

    Args:
        data: Example array or tensor of shape ``(N, *item_shape)``. :meth:`gather` scales
            uint8 data (images) to float32 in ``[0, 1]``, returns other floating data as
            float32 and every other dtype (int64 / int32 token ids, bool masks) unchanged.
        labels: Class index of each example, shape ``(N,)``, values in ``0 .. len(class_names)-1``.
        class_names: One name per class.
        item_index: Optional map from this dataset's example index to a row of ``data``
            (views such as class subsets share the parent's data without copying it).

    Examples:
        >>> ds = ClassDataset(np.zeros((4, 2), np.float32), np.array([0, 0, 1, 1]), ["a", "b"])
        >>> len(ds), ds.num_classes, ds.class_sizes().tolist()
        (4, 2, [2, 2])
        >>> tuple(ds.gather(torch.tensor([[0, 3]])).shape)
        (1, 2, 2)
    """

    def __init__(self, data: np.ndarray | Tensor, labels: np.ndarray | Sequence[int],
                 class_names: Sequence[str], item_index: np.ndarray | None = None):
        self._data = as_tensor(data)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self._item_index = None if item_index is None else torch.as_tensor(item_index, dtype=torch.int64)
        n = len(self._item_index) if self._item_index is not None else self._data.shape[0]
        if self.labels.shape != (n,):
            raise ValueError(f"labels has shape {self.labels.shape}, expected ({n},): one label per example")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in 0..{len(self.class_names) - 1} (one name per class)")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one example as returned by :meth:`gather`, e.g. ``(1, 28, 28)``."""
        return tuple(self._data.shape[1:])

    def class_sizes(self) -> np.ndarray:
        """Number of examples of each class, shape ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def gather(self, index: Tensor) -> Tensor:
        """Fetch examples, shape ``(*index.shape, *item_shape)``.

        uint8 examples (images) become float32 in ``[0, 1]`` and other floating dtypes float32;
        integer and bool examples keep their dtype, so token ids come back exactly (a float32
        cast would round ids above 2**24).

        Examples:
            >>> ids = ClassDataset(np.array([[101, 2**40], [7, 8]]), [0, 1], ["a", "b"])
            >>> ids.gather(torch.tensor([0]))
            tensor([[          101, 1099511627776]])
        """
        rows = index.reshape(-1) if self._item_index is None else self._item_index[index.reshape(-1)]
        out = torch.index_select(self._data, 0, rows)  # several times faster than data[rows]
        return as_float_images(out).reshape(*index.shape, *self.item_shape)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.gather(torch.tensor([i]))[0], int(self.labels[i])

    def subset_classes(self, names_or_indices: Sequence[str] | Sequence[int]) -> ClassDataset:
        """A view with only the given classes (by name or index), relabelled ``0 .. k-1`` in that order.

        Raises:
            KeyError: a class name is not in the dataset (the message shows close names).
        """
        if len(names_or_indices) and isinstance(names_or_indices[0], str):
            position = {name: i for i, name in enumerate(self.class_names)}
            missing = [n for n in names_or_indices if n not in position]
            if missing:
                raise KeyError(
                    f"{len(missing)} classes not found in this dataset, e.g. {missing[:3]}; "
                    f"it has {self.num_classes} classes such as {self.class_names[:3]}"
                )
            chosen = np.array([position[n] for n in names_or_indices], dtype=np.int64)
        else:
            chosen = np.asarray(names_or_indices, dtype=np.int64)
        new_label = np.full(self.num_classes, -1, dtype=np.int64)
        new_label[chosen] = np.arange(len(chosen))
        keep = np.nonzero(new_label[self.labels] >= 0)[0]
        return self._view(keep, new_label[self.labels[keep]], [self.class_names[c] for c in chosen])

    def _view(self, keep: np.ndarray, labels: np.ndarray, class_names: list[str]) -> ClassDataset:
        """The examples ``keep`` (indices into this dataset) under new labels and class names,
        sharing this dataset's data (subclasses that fetch lazily return their own kind)."""
        rows = keep if self._item_index is None else self._item_index.numpy()[keep]
        return ClassDataset(self._data, labels, class_names, item_index=rows)

    def _raw_items(self) -> Tensor:
        """Every example in its stored dtype, shape ``(N, *item_shape)`` (materialised)."""
        rows = torch.arange(self._data.shape[0]) if self._item_index is None else self._item_index
        return self._data[rows]

    def with_rotations(self, degrees: Sequence[int] = (0, 90, 180, 270)) -> ClassDataset:
        """Class augmentation by rotation: every (class, angle) pair becomes a new class.

        Class ``c`` rotated by ``d`` degrees is named ``f"{name}/rot{d:03d}"`` and gets label
        ``c * len(degrees) + position of d``. Rotated images are materialised once, so sampling
        stays a plain gather.

        Raises:
            ValueError: an angle is not a multiple of 90 or the images are not square.
        """
        if any(d % 90 for d in degrees):
            raise ValueError(f"rotations must be multiples of 90 degrees, got {list(degrees)}")
        if len(self.item_shape) < 2 or self.item_shape[-1] != self.item_shape[-2]:
            raise ValueError(f"rotation needs square images, got item shape {self.item_shape}")
        base = self._raw_items()
        data = torch.cat([torch.rot90(base, d // 90, dims=(-2, -1)) for d in degrees])
        n, r = len(self), len(degrees)
        labels = (self.labels[None, :] * r + np.arange(r)[:, None]).reshape(-1)
        names = [f"{name}/rot{d:03d}" for name in self.class_names for d in degrees]
        assert data.shape[0] == n * r
        return ClassDataset(data, labels, names)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} examples, {self.num_classes} classes, "
                f"item shape {self.item_shape})")
