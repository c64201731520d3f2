"""Fully connected networks of the MAML paper.

Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017: a 40-40 ReLU network for sinusoid regression and a 256-128-64-64 network (with
batch norm) for non-convolutional Omniglot.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.models.heads import Backbone
from metalearn.models.norm import NormMode, check_norm, make_norm


class MLP(Backbone):
    """Linear -> norm -> ReLU layers, optionally followed by a linear head.

    Args:
        in_features: Input size (inputs with more dimensions are flattened).
        hidden: Hidden layer sizes, e.g. ``(40, 40)`` or ``(256, 128, 64, 64)``.
        out_features: Size of the linear head, or ``None`` to return the last hidden layer.
        norm: One of ``"transductive"``, ``"task"``, ``"group"``, ``"none"``.

    Shapes:
        ``x``: ``(N, *in_shape)`` with ``prod(in_shape) == in_features`` ->
        ``(N, out_features)``, or ``(N, hidden[-1])`` when ``out_features`` is None.

    Examples:
        >>> import torch
        >>> net = MLP(1, (40, 40), out_features=1)
        >>> net(torch.randn(10, 1)).shape
        torch.Size([10, 1])
    """

    def __init__(self, in_features: int = 1, hidden: Sequence[int] = (40, 40),
                 out_features: int | None = 1, norm: NormMode = "none"):
        super().__init__()
        self.norm = check_norm(norm)
        sizes = [in_features, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(make_norm(norm, b) for b in sizes[1:])
        self.out_dim = sizes[-1]
        self._init_head(out_features)

    def features(self, x: Tensor, n_support: int | None = None) -> Tensor:
        x = x.flatten(1)
        for layer, norm in zip(self.layers, self.norms):
            x = F.relu(norm(layer(x), n_support))
        return x
