"""Matching Networks.

Vinyals, Blundell, Lillicrap, Kavukcuoglu and Wierstra, "Matching Networks for One Shot
Learning", NeurIPS 2016 (arXiv:1606.04080).

A query ``x`` is labelled by attention over the support set:
``P(y | x, S) = sum_i a(x, x_i) onehot(y_i)`` with ``a(x, x_i) = softmax_i(cos(f(x), g(x_i)))``,
a soft nearest neighbour. With plain embeddings ``f = g`` is the backbone. With *full context
embeddings* (paper appendix A) the support embeddings are re-read by a bidirectional LSTM over
the support set, ``g(x_i) = g'(x_i) + h_fwd_i + h_bwd_i``, and each query embedding is refined
by an attention LSTM run for ``fce_steps`` steps that attends over ``g(S)``.

The predictor returns ``log P(y | x, S)`` (so ``argmax`` and cross-entropy work on it as on
logits); meta-training minimises the query negative log-likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.metric_common import (
    SupportSetPredictor,
    check_support,
    cosine_similarity,
    embed_support_query,
    episodic_loss,
    flatten_features,
)
from metalearn.types import Episode, EpisodeBatch


@dataclass
class MatchingConfig:
    """Hyperparameters of :class:`MatchingNet`."""

    fce: bool = False
    """Use full context embeddings (support BiLSTM + query attention LSTM); needs
    ``feature_dim``."""

    fce_steps: int = 5
    """Number of attention-LSTM steps ("processing steps" K) for the query embeddings."""

    feature_dim: int | None = None
    """Backbone feature size d; read from ``backbone.out_dim`` when ``None``."""

    temperature: float = 1.0
    """Scale of the cosine similarities inside the attention softmax (the paper uses 1). With
    a ReLU embedding the cosines lie in [0, 1], so at scale 1 the attention over 5 supports can
    give the right class at most e / (e + 4) = 0.40: training stalls (87% on Omniglot 5w1s
    where the paper reports 98.1%). A scale near 10, or ``learn_temperature``, removes the cap."""

    learn_temperature: bool = False
    """Meta-learn the scale (stored as its logarithm, so it stays positive), starting from
    ``temperature``."""


def attention_log_probs(attention: Tensor, support_y: Tensor, n_way: int, eps: float = 1e-8) -> Tensor:
    """Turn attention over support examples into class log-probabilities.

    Args:
        attention: ``(n_query_total, n_support)``, rows summing to 1.
        support_y: ``(n_support,)`` labels in ``0..n_way-1``.
        n_way: Number of classes.

    Returns:
        ``log(attention @ onehot(support_y))``, shape ``(n_query_total, n_way)``.
    """
    probs = attention @ F.one_hot(support_y, n_way).to(attention.dtype)
    return probs.clamp_min(eps).log()


class FullContextEmbedding(nn.Module):
    """The support BiLSTM ``g`` and the query attention LSTM ``f`` of the paper's appendix A."""

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.dim, self.steps = dim, steps
        self.support_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.query_cell = nn.LSTMCell(dim, dim)

    def forward(self, zs: Tensor, zq: Tensor) -> tuple[Tensor, Tensor]:
        """Context embeddings of support ``(n_support, d)`` and query ``(n_query, d)`` features."""
        d = zs.shape[-1]
        h, _ = self.support_lstm(zs.unsqueeze(0))  # (1, n_support, 2d)
        g = zs + h[0, :, :d] + h[0, :, d:]
        hidden, cell = zq, torch.zeros_like(zq)
        for _ in range(self.steps):
            readout = torch.softmax(hidden @ g.T, -1) @ g
            hidden, cell = self.query_cell(zq, (hidden + readout, cell))
            hidden = hidden + zq
        return g, hidden


class MatchingNet(nn.Module):
    """Matching Networks over any feature extractor.

    Args:
        backbone: Maps ``(n, *x_shape)`` to features ``(n, *feature_shape)`` (flattened).
        config: Hyperparameters; defaults to :class:`MatchingConfig()`.

    Examples:
        >>> algo = MatchingNet(nn.Linear(4, 8))
        >>> algo.adapt(torch.randn(3, 4), torch.tensor([0, 1, 2]))(torch.randn(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, backbone: nn.Module, config: MatchingConfig | None = None):
        super().__init__()
        self.config = config = config or MatchingConfig()
        self.backbone = backbone
        if not config.temperature > 0:
            raise ValueError(f"temperature must be > 0 (it scales the cosines), got {config.temperature}")
        log_t = torch.tensor(math.log(config.temperature))
        if config.learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)
        self.fce = None
        if config.fce:
            dim = config.feature_dim or getattr(backbone, "out_dim", None)
            if dim is None:
                raise ValueError(
                    "full context embeddings need the feature size: set MatchingConfig.feature_dim "
                    "or use a backbone with an `out_dim` attribute (metalearn.models with out_features=None)."
                )
            self.fce = FullContextEmbedding(int(dim), config.fce_steps)

    def log_probs(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """Query class log-probabilities ``(n_query_total, n_way)`` of one task."""
        zs, zq = embed_support_query(self.backbone, support_x, query_x)
        zs, zq = flatten_features(zs), flatten_features(zq)
        if self.fce is not None:
            if zs.shape[-1] != self.fce.dim:
                raise ValueError(
                    f"the backbone returns {zs.shape[-1]} features but the full context embedding "
                    f"was built for {self.fce.dim}: set MatchingConfig.feature_dim={zs.shape[-1]}."
                )
            zs, zq = self.fce(zs, zq)
        attention = torch.softmax(self.log_temperature.exp() * cosine_similarity(zq, zs), -1)
        return attention_log_probs(attention, support_y, n_way)

    def meta_loss(self, batch: EpisodeBatch | Sequence[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Mean query negative log-likelihood over the tasks of ``batch``.

        Args:
            batch: An :class:`EpisodeBatch` or a list of episodes of any shapes (as in
                :meth:`ProtoNet.meta_loss <metalearn.algorithms.ProtoNet.meta_loss>`).

        Returns:
            The loss (a scalar) and metrics ``{"loss", "accuracy"}`` on the query sets.
        """
        return episodic_loss(batch, self.log_probs, lambda logp, y, n_way: F.nll_loss(logp, y))

    def adapt(self, support_x: Tensor, support_y: Tensor) -> SupportSetPredictor:
        """A predictor for a new task given its support set ``(n_support, *x_shape)``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
        """
        return SupportSetPredictor(self.log_probs, support_x, support_y, check_support(support_y))
