"""Shared pieces of the backbones: a feature extractor that may end in a linear head."""

from __future__ import annotations

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
