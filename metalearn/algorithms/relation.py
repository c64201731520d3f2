"""Relation Networks.

Sung, Yang, Zhang, Xiang, Torr and Hospedales, "Learning to Compare: Relation Network for
Few-Shot Learning", CVPR 2018 (arXiv:1711.06025).

The backbone maps each image to a feature map ``(C, H, W)``. The feature maps of a class's
support examples are summed (paper section 3.3, K-shot), concatenated along channels with each
query's feature map, and a learned *relation module* (two conv blocks and two fully connected
layers ending in a sigmoid) scores the pair in ``[0, 1]``. Training regresses the scores to the
one-hot query labels with a mean squared error, as in the paper.

The backbone must return feature maps. The metalearn backbones return flat features, so wrap
them: ``FeatureMaps(Conv4(out_features=None, n_blocks=...), (C, H, W))``
(:class:`metalearn.models.FeatureMaps`) restores the maps (flattening is row-major over
``(C, H, W)``, so un-flattening is exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.metric_common import (
    SupportSetPredictor,
    check_support,
    embed_support_query,
    episodic_loss,
)
from metalearn.types import Episode, EpisodeBatch


@dataclass
class RelationConfig:
    """Hyperparameters of :class:`RelationNet`."""

    feature_shape: tuple[int, int, int] | None = None
    """Backbone feature-map shape ``(C, H, W)``; read from ``backbone.out_shape`` when ``None``."""

    hidden_channels: int = 64
    """Channels of the relation module's two conv blocks (the paper uses 64)."""

    hidden_features: int = 8
    """Width of the relation module's first fully connected layer (the paper uses 8)."""

    norm: Literal["batch", "none"] = "batch"
    """Normalisation in the relation module's conv blocks: batch statistics (no running
    statistics are kept) or none."""


def check_feature_maps(features: Tensor, expected: tuple[int, ...]) -> None:
    """Raise a ValueError naming the fix unless ``features`` is ``(n, *expected)`` with rank 4."""
    if features.dim() != 4:
        raise ValueError(
            f"the relation module compares feature maps of shape (n, C, H, W) but the backbone "
            f"returned shape {tuple(features.shape)} (rank {features.dim()}): use a backbone that "
            "keeps the spatial dimensions, or wrap a flattening one: FeatureMaps(backbone, (C, H, W))."
        )
    if tuple(features.shape[1:]) != tuple(expected):
        raise ValueError(
            f"the backbone returned feature maps {tuple(features.shape[1:])} but the relation "
            f"module was built for {tuple(expected)}: set RelationConfig.feature_shape to "
            f"{tuple(features.shape[1:])}."
        )


def relation_module(feature_shape: tuple[int, int, int], hidden: int, fc: int, norm: str) -> nn.Sequential:
    """The paper's relation module for concatenated feature maps ``(2C, H, W)``."""
    c, h, w = feature_shape
    layers: list[nn.Module] = []
    for c_in in (2 * c, hidden):
        layers.append(nn.Conv2d(c_in, hidden, 3, padding=1))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(hidden, track_running_stats=False))
        # ceil_mode keeps 1x1 maps (Conv4 on 28x28 Omniglot ends at 1x1) at 1x1 instead of 0x0.
        layers += [nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
        h, w = -(-h // 2), -(-w // 2)
    layers += [nn.Flatten(), nn.Linear(hidden * h * w, fc), nn.ReLU(), nn.Linear(fc, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


class RelationNet(nn.Module):
    """Relation Networks over a feature-map backbone.

    Args:
        backbone: Maps ``(n, *x_shape)`` to feature maps ``(n, C, H, W)``.
        config: Hyperparameters; ``feature_shape`` is required unless the backbone has an
            ``out_shape`` attribute.

    Examples:
        >>> algo = RelationNet(nn.Conv2d(1, 4, 3, padding=1), RelationConfig(feature_shape=(4, 6, 6)))
        >>> algo.adapt(torch.randn(3, 1, 6, 6), torch.tensor([0, 1, 2]))(torch.randn(5, 1, 6, 6)).shape
        torch.Size([5, 3])
    """

    def __init__(self, backbone: nn.Module, config: RelationConfig | None = None):
        super().__init__()
        self.config = config = config or RelationConfig()
        shape = config.feature_shape or getattr(backbone, "out_shape", None)
        if shape is None or len(shape) != 3:
            raise ValueError(
                f"RelationNet needs the backbone's feature-map shape (C, H, W), got {shape}: set "
                "RelationConfig.feature_shape (for example (64, 1, 1) for Conv4 on 28x28 without flatten)."
            )
        self.feature_shape = tuple(int(s) for s in shape)
        self.backbone = backbone
        self.relation = relation_module(self.feature_shape, config.hidden_channels, config.hidden_features, config.norm)

    def scores(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """Relation scores ``(n_query_total, n_way)`` of one task (differentiable)."""
        zs, zq = embed_support_query(self.backbone, support_x, query_x)
        check_feature_maps(zs, self.feature_shape)
        onehot = F.one_hot(support_y, n_way).to(zs.dtype)  # (n_support, n_way)
        classes = (onehot.T @ zs.flatten(1)).view(n_way, *zs.shape[1:])  # summed per class
        nq = zq.shape[0]
        pairs = torch.cat(
            [classes.unsqueeze(0).expand(nq, *classes.shape), zq.unsqueeze(1).expand(nq, n_way, *zq.shape[1:])],
            dim=2,
        )
        return self.relation(pairs.reshape(nq * n_way, *pairs.shape[2:])).view(nq, n_way)

    def meta_loss(self, batch: EpisodeBatch | Sequence[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Mean squared error of the relation scores to the one-hot query labels.

        Args:
            batch: An :class:`EpisodeBatch` or a list of episodes of any shapes (as in
                :meth:`ProtoNet.meta_loss <metalearn.algorithms.ProtoNet.meta_loss>`).

        Returns:
            The loss (a scalar) and metrics ``{"loss", "accuracy"}`` on the query sets.
        """
        return episodic_loss(
            batch, self.scores, lambda s, y, n_way: F.mse_loss(s, F.one_hot(y, n_way).to(s.dtype)))

    def adapt(self, support_x: Tensor, support_y: Tensor) -> SupportSetPredictor:
        """A predictor for a new task given its support set ``(n_support, *x_shape)``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
        """
        return SupportSetPredictor(self.scores, support_x, support_y, check_support(support_y))
