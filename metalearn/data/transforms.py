"""Per-episode preprocessing, applied by samplers to every batch of episodes.

A transform maps an :class:`EpisodeBatch` to an :class:`EpisodeBatch`. Statistics that depend on
data are taken from the support set only and applied to the query set, so no query information
leaks into adaptation (honest evaluation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from metalearn.types import EpisodeBatch


class Normalize:
    """``(x - mean) / std`` with fixed per-channel statistics (e.g. those of the meta-train set).

    Args:
        mean, std: One value per channel; the channel axis is the first axis of an item
            (``(C, H, W)`` images or ``(F,)`` features).

    Examples:
        >>> from metalearn.types import Episode
        >>> ep = Episode(torch.ones(2, 1, 2, 2), torch.tensor([0, 1]), torch.ones(2, 1, 2, 2), torch.tensor([0, 1]))
        >>> out = Normalize([0.5], [0.25])(EpisodeBatch.stack([ep]))
        >>> out.support_x.unique().tolist()
        [2.0]
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError("mean and std need one value per channel each")
        if not (self.std > 0).all():
            raise ValueError(f"std must be positive, got {self.std.tolist()}")

    def __call__(self, batch: EpisodeBatch) -> EpisodeBatch:
        item_rank = batch.support_x.ndim - 2
        shape = (-1,) + (1,) * (item_rank - 1)
        mean, std = self.mean.view(shape), self.std.view(shape)
        return dataclasses.replace(batch, support_x=(batch.support_x - mean) / std,
                                   query_x=(batch.query_x - mean) / std)


class StandardizeBySupport:
    """Standardise each task with its own support statistics: ``(x - m) / s`` for support and query.

    Args:
        per_feature: Statistics per feature (tabular data) instead of one mean and std per task.
        eps: Added to the std to avoid division by zero.
    """

    def __init__(self, per_feature: bool = False, eps: float = 1e-6):
        self.per_feature, self.eps = per_feature, eps

    def __call__(self, batch: EpisodeBatch) -> EpisodeBatch:
        s = batch.support_x
        dims = (1,) if self.per_feature else tuple(range(1, s.ndim))
        mean = s.mean(dim=dims, keepdim=True)
        std = s.std(dim=dims, keepdim=True, unbiased=False) + self.eps
        return dataclasses.replace(batch, support_x=(s - mean) / std,
                                   query_x=(batch.query_x - mean) / std)
