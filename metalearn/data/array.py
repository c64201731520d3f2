"""Datasets from in-memory arrays: tabular data and pre-extracted features."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from metalearn.data.base import ClassDataset


class ArrayDataset(ClassDataset):
    """A :class:`ClassDataset` from arrays ``X`` of shape ``(N, *item_shape)`` and labels ``y`` ``(N,)``.

    Labels may be any integers or strings; they are mapped to ``0 .. C-1`` in sorted order and
    the original values are kept as ``class_names`` (as strings) and ``class_values``.

    ``X`` is numeric features: float and integer arrays become float32 (uint8 stays uint8 and
    :meth:`gather` scales it to ``[0, 1]``). For integer token ids that must stay integers,
    build a :class:`ClassDataset` directly; its :meth:`gather` keeps integer dtypes.

    Raises:
        ValueError: mismatched lengths, an empty array, non-finite values in ``X`` (the message
            counts them and gives the first row), or labels that are not one-dimensional.

    Examples:
        >>> ds = ArrayDataset(np.eye(4, dtype=np.float32), ["b", "a", "b", "a"])
        >>> ds.labels.tolist(), ds.class_names
        ([1, 0, 1, 0], ['a', 'b'])
    """

    def __init__(self, X: np.ndarray | Tensor, y: np.ndarray | Tensor | list):
        x = X.detach().cpu() if isinstance(X, Tensor) else torch.from_numpy(np.asarray(X))
        y = np.asarray(y.detach().cpu().numpy() if isinstance(y, Tensor) else y)
        if x.ndim < 2:
            raise ValueError(f"X must have shape (N, features...), got {tuple(x.shape)}")
        if y.ndim != 1:
            raise ValueError(f"y must be one label per row, shape (N,), got {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"X has {x.shape[0]} rows but y has {y.shape[0]} labels")
        if x.shape[0] == 0:
            raise ValueError("X is empty: an ArrayDataset needs at least one example per class")
        if not (torch.is_floating_point(x) or x.dtype == torch.uint8):
            x = x.to(torch.float32)
        if torch.is_floating_point(x):
            bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
            if bad.any():
                raise ValueError(
                    f"X has non-finite values (NaN or inf) in {int(bad.sum())} rows, first row "
                    f"{int(bad.nonzero()[0])}: impute or drop those rows before building the dataset"
                )
            x = x.to(torch.float32)
        values, labels = np.unique(y, return_inverse=True)
        super().__init__(x.contiguous(), labels.reshape(-1), [str(v) for v in values])
        self.class_values = values
