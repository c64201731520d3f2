"""Prototypical Networks.

Snell, Swersky and Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017
(arXiv:1703.05175).

A backbone ``f`` embeds every example; the prototype of class ``c`` is the mean embedding of its
support examples, ``p_c = mean_{y_i = c} f(x_i)``; a query ``x`` is classified by a softmax over
negative distances, ``p(y = c | x) ∝ exp(-d(f(x), p_c))``. With the squared Euclidean distance
(the paper's choice) this is a linear classifier in the embedding with ``w_c = 2 p_c`` and
``b_c = -|p_c|^2`` (paper section 2.3). The cosine option scales the similarity by a learnable
temperature, since a bounded similarity alone gives too soft a softmax.

Meta-training minimises the query cross-entropy of each episode. Training with more ways than
testing (the paper's 60-way Omniglot episodes) is a choice of the episode sampler, not of this
class: the number of classes of every task is read from its labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.metric_common import (
    check_support,
    cosine_similarity,
    embed_support_query,
    episodic_loss,
    flatten_features,
    pairwise_sq_dist,
    prototypes,
)
from metalearn.types import Episode, EpisodeBatch


@dataclass
class ProtoNetConfig:
    """Hyperparameters of :class:`ProtoNet`."""

    distance: Literal["sq_euclidean", "cosine"] = "sq_euclidean"
    """Distance between query embeddings and prototypes: the paper's squared Euclidean
    distance, or cosine similarity times a learnable temperature."""

    temperature: float = 10.0
    """Initial scale of the cosine similarity (ignored for ``sq_euclidean``)."""

    learn_temperature: bool = True
    """Meta-learn the cosine temperature (stored as its logarithm, so it stays positive)."""


def proto_logits(query_features: Tensor, protos: Tensor, distance: str, scale: Tensor | float = 1.0) -> Tensor:
    """Logits of queries against class prototypes.

    Args:
        query_features: ``(..., n_query_total, d)``.
        protos: ``(..., n_way, d)``.
        distance: ``"sq_euclidean"`` (logit = -squared distance) or ``"cosine"`` (logit =
            ``scale`` times cosine similarity).
        scale: Temperature of the cosine logits.

    Returns:
        ``(..., n_query_total, n_way)``.
    """
    if distance == "sq_euclidean":
        return -pairwise_sq_dist(query_features, protos)
    if distance == "cosine":
        return scale * cosine_similarity(query_features, protos)
    raise ValueError(f"unknown distance {distance!r}; choose 'sq_euclidean' or 'cosine'")


class ProtoNetPredictor:
    """Classifies queries by their distance to the prototypes of one support set.

    Returned by :meth:`ProtoNet.adapt`; holds the support set and the algorithm (read-only).
    The support set is embedded together with each query batch, exactly as in meta-training.
    """

    def __init__(self, algo: ProtoNet, support_x: Tensor, support_y: Tensor, n_way: int):
        self.algo, self.support_x, self.support_y, self.n_way = algo, support_x, support_y, n_way

    def __call__(self, query_x: Tensor) -> Tensor:
        """Logits ``(n, n_way)`` for queries ``(n, *x_shape)``."""
        return self.algo.logits(self.support_x, self.support_y, query_x, self.n_way)


class ProtoNet(nn.Module):
    """Prototypical Networks over any feature extractor.

    Args:
        backbone: Maps inputs ``(n, *x_shape)`` to features ``(n, *feature_shape)`` (flattened
            to vectors). It is used as given, never copied or frozen.
        config: Hyperparameters; defaults to :class:`ProtoNetConfig()`.

    Examples:
        >>> algo = ProtoNet(nn.Linear(4, 8))
        >>> predictor = algo.adapt(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> predictor(torch.randn(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, backbone: nn.Module, config: ProtoNetConfig | None = None):
        super().__init__()
        self.config = config = config or ProtoNetConfig()
        if config.distance not in ("sq_euclidean", "cosine"):
            raise ValueError(f"unknown distance {config.distance!r}; choose 'sq_euclidean' or 'cosine'")
        self.backbone = backbone
        log_t = torch.tensor(math.log(config.temperature))
        if config.distance == "cosine" and config.learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    def logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """Query logits ``(n_query_total, n_way)`` of one task (differentiable)."""
        zs, zq = embed_support_query(self.backbone, support_x, query_x)
        protos = prototypes(flatten_features(zs), support_y, n_way)
        return proto_logits(flatten_features(zq), protos, self.config.distance, self.log_temperature.exp())

    def meta_loss(self, batch: EpisodeBatch | Sequence[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Mean query cross-entropy over the tasks of ``batch``.

        Args:
            batch: Classification tasks: an :class:`EpisodeBatch` (``support_x``
                ``(n_tasks, n_way * k_shot, *x_shape)``, ``query_x``
                ``(n_tasks, n_way * n_query, *x_shape)``) or a list of episodes that may
                differ in ``n_way``, ``k_shot`` and ``n_query``.

        Returns:
            The loss (a scalar) and metrics ``{"loss", "accuracy"}`` on the query sets.
        """
        return episodic_loss(batch, self.logits, lambda logits, y, n_way: F.cross_entropy(logits, y))

    def adapt(self, support_x: Tensor, support_y: Tensor) -> ProtoNetPredictor:
        """A predictor for a new task given its support set.

        Args:
            support_x: ``(n_way * k_shot, *x_shape)``.
            support_y: ``(n_way * k_shot,)`` labels in ``0..n_way-1``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
        """
        n_way = check_support(support_y)
        return ProtoNetPredictor(self, support_x, support_y, n_way)
