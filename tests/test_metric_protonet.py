"""Prototypical Networks: the paper's linear-classifier equivalence and the distance options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn.algorithms.metric_common import prototypes
from metalearn.algorithms.protonet import ProtoNet, ProtoNetConfig
from metalearn.types import Episode, EpisodeBatch


def episode(n_way: int, k_shot: int, n_query: int, dim: int = 6, seed: int = 0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_way)
    return Episode(torch.randn(n_way * k_shot, dim, generator=g), labels.repeat_interleave(k_shot),
                   torch.randn(n_way * n_query, dim, generator=g), labels.repeat_interleave(n_query))


def test_sq_euclidean_protonet_is_the_linear_classifier_w_2c_b_minus_c2():
    """Snell et al. sec. 2.3: -|f(x) - c_k|^2 = w_k.f(x) + b_k - |f(x)|^2 with w_k = 2c_k, b_k = -|c_k|^2."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 5)).double()
    algo = ProtoNet(backbone)
    ep = episode(4, 3, 5)
    sx, sy, qx = ep.support_x.double(), ep.support_y, ep.query_x.double()
    with torch.no_grad():
        logits = algo.adapt(sx, sy)(qx)
        c = prototypes(backbone(sx), sy, 4)
        fq = backbone(qx)
        linear = fq @ (2 * c).T - (c * c).sum(-1)
    # equal up to the per-query constant -|f(x)|^2, so the class probabilities are identical
    torch.testing.assert_close(logits - linear, -(fq * fq).sum(-1, keepdim=True).expand_as(logits))
    torch.testing.assert_close(logits.log_softmax(-1), linear.log_softmax(-1))


def test_meta_loss_is_the_mean_query_cross_entropy_over_tasks():
    torch.manual_seed(1)
    algo = ProtoNet(nn.Linear(6, 4))
    eps = [episode(3, 2, 4, seed=s) for s in range(3)]
    loss, metrics = algo.meta_loss(EpisodeBatch.stack(eps))
    per_task = [F.cross_entropy(algo.adapt(e.support_x, e.support_y)(e.query_x), e.query_y) for e in eps]
    torch.testing.assert_close(loss, torch.stack(per_task).mean())
    assert metrics["loss"] == pytest.approx(loss.item())


def test_cosine_option_scales_by_a_learnable_temperature():
    torch.manual_seed(2)
    algo = ProtoNet(nn.Linear(6, 4), ProtoNetConfig(distance="cosine", temperature=5.0))
    ep = episode(3, 2, 4)
    logits = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert logits.abs().max() <= 5.0 + 1e-5
    loss, _ = algo.meta_loss(EpisodeBatch.stack([ep]))
    loss.backward()
    assert algo.log_temperature.grad is not None and algo.log_temperature.grad.abs() > 0
    fixed = ProtoNet(nn.Linear(6, 4), ProtoNetConfig(distance="cosine", learn_temperature=False))
    assert "log_temperature" not in dict(fixed.named_parameters())
    euclid = ProtoNet(nn.Linear(6, 4))
    assert [n for n, _ in euclid.named_parameters()] == ["backbone.weight", "backbone.bias"]


def test_more_ways_in_training_than_at_test_is_a_sampling_choice():
    torch.manual_seed(3)
    algo = ProtoNet(nn.Linear(6, 4))
    loss, _ = algo.meta_loss(EpisodeBatch.stack([episode(20, 1, 2)]))  # 20-way training episode
    loss.backward()
    ep = episode(5, 1, 3)
    assert algo.adapt(ep.support_x, ep.support_y)(ep.query_x).shape == (15, 5)  # 5-way test


def test_unknown_distance_is_refused():
    with pytest.raises(ValueError, match="choose 'sq_euclidean' or 'cosine'"):
        ProtoNet(nn.Linear(2, 2), ProtoNetConfig(distance="manhattan"))
