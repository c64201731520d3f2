"""Shared pieces of the backbones: a feature extractor that may end in a linear head, and how
to call any backbone (:func:`run_backbone`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Backbone(nn.Module):
    """Base of the metalearn backbones: ``features`` then an optional linear ``head``.

    Subclasses set ``self.out_dim`` (the flat feature size) and implement
    ``features(x, n_support)``. With ``out_features=None`` the backbone returns the flat
    features (for metric learners); otherwise it ends in ``nn.Linear(out_dim, out_features)``
    stored as ``self.head``, whose parameters are named ``head.*`` (ANIL adapts those only).

    Every ``forward`` takes ``n_support``: with ``norm="task"`` the first ``n_support`` rows
    of ``x`` are the support set whose statistics normalise all rows.
    """

    out_dim: int
    head: nn.Linear | None

    def _init_head(self, out_features: int | None) -> None:
        self.out_features = out_features
        self.head = None if out_features is None else nn.Linear(self.out_dim, out_features)

    def forward(self, x: Tensor, n_support: int | None = None) -> Tensor:
        h = self.features(x, n_support)
        return h if self.head is None else self.head(h)


def run_backbone(backbone: nn.Module, x: Tensor, n_support: int | None = None) -> Tensor:
    """Call a feature extractor, passing ``n_support`` to metalearn backbones.

    A :class:`metalearn.models.Backbone` with ``norm="task"`` normalises every row with the
    statistics of the first ``n_support`` rows (the support set); so does any module with a
    true ``takes_n_support`` attribute (a wrapper of one); any other ``nn.Module`` is simply
    called on ``x``, so an encoder need not declare ``n_support`` (a text encoder
    ``forward(ids)`` over int64 token ids ``(n, L)`` works as it is). Image batches go channels-last on CPU, where convolutions run
    markedly faster in that layout (research/cpu-performance.md).

    Args:
        backbone: Maps ``(n, *x_shape)`` to ``(n, *feature_shape)``.
        x: ``(n, *x_shape)``.
        n_support: Number of leading support rows of ``x``, or ``None``.
    """
    if x.dim() == 4 and x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    if isinstance(backbone, Backbone) or getattr(backbone, "takes_n_support", False):
        return backbone(x, n_support)
    return backbone(x)
