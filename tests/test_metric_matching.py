"""Matching Networks: one-shot one-hot attention is nearest neighbour; full context embeddings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn.algorithms.matching import MatchingConfig, MatchingNet, attention_log_probs
from metalearn.algorithms.metric_common import cosine_similarity
from metalearn.types import Episode, EpisodeBatch


def test_one_hot_attention_gives_the_nearest_neighbours_label():
    g = torch.Generator().manual_seed(0)
    support_y = torch.tensor([3, 0, 4, 1, 2])  # 1 shot per class, in a shuffled order
    attention = F.one_hot(torch.randint(5, (9,), generator=g), 5).float()
    logp = attention_log_probs(attention, support_y, 5)
    assert torch.equal(logp.argmax(-1), support_y[attention.argmax(-1)])
    torch.testing.assert_close(logp.exp(), F.one_hot(support_y[attention.argmax(-1)], 5).float(), atol=1e-6, rtol=0)


def test_sharp_cosine_attention_reproduces_cosine_nearest_neighbour_labels():
    """One shot per class, temperature -> large: the attention becomes one-hot on the nearest support."""
    torch.manual_seed(1)
    g = torch.Generator().manual_seed(1)
    backbone = nn.Linear(8, 8)
    algo = MatchingNet(backbone, MatchingConfig(temperature=1e4))
    sx, sy = torch.randn(6, 8, generator=g), torch.tensor([2, 5, 0, 4, 1, 3])
    qx = torch.randn(20, 8, generator=g)
    with torch.no_grad():
        logp = algo.adapt(sx, sy)(qx)
        nearest = cosine_similarity(backbone(qx), backbone(sx)).argmax(-1)
    assert torch.equal(logp.argmax(-1), sy[nearest])
    torch.testing.assert_close(logp.exp(), F.one_hot(sy[nearest], 6).float(), atol=1e-4, rtol=0)


def test_probabilities_sum_to_one_and_loss_is_query_nll():
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(2)
    algo = MatchingNet(nn.Linear(5, 4))
    y = torch.arange(3).repeat_interleave(2)
    ep = Episode(torch.randn(6, 5, generator=g), y, torch.randn(6, 5, generator=g), y)
    logp = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(6))
    loss, _ = algo.meta_loss(EpisodeBatch.stack([ep]))
    torch.testing.assert_close(loss, F.nll_loss(logp, ep.query_y))


def test_full_context_embeddings_change_the_embedding_and_need_the_feature_size():
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    backbone = nn.Linear(5, 4)
    y = torch.arange(3).repeat_interleave(2)
    ep = Episode(torch.randn(6, 5, generator=g), y, torch.randn(6, 5, generator=g), y)
    plain = MatchingNet(backbone)
    fce = MatchingNet(backbone, MatchingConfig(fce=True, feature_dim=4, fce_steps=3))
    with torch.no_grad():
        a = plain.adapt(ep.support_x, ep.support_y)(ep.query_x)
        b = fce.adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="feature_dim"):
        MatchingNet(backbone, MatchingConfig(fce=True))
    wrong = MatchingNet(backbone, MatchingConfig(fce=True, feature_dim=7))
    with pytest.raises(ValueError, match="feature_dim=4"):
        wrong.adapt(ep.support_x, ep.support_y)(ep.query_x)


def test_learned_temperature_is_a_meta_parameter_that_scales_the_cosines():
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    y = torch.arange(3).repeat_interleave(2)
    ep = Episode(torch.randn(6, 5, generator=g), y, torch.randn(6, 5, generator=g), y)
    fixed = MatchingNet(nn.Linear(5, 4), MatchingConfig(temperature=10.0))
    learned = MatchingNet(nn.Linear(5, 4), MatchingConfig(temperature=10.0, learn_temperature=True))
    learned.backbone.load_state_dict(fixed.backbone.state_dict())
    assert "log_temperature" not in dict(fixed.named_parameters())
    torch.testing.assert_close(learned.adapt(ep.support_x, y)(ep.query_x), fixed.adapt(ep.support_x, y)(ep.query_x))
    loss, _ = learned.meta_loss(EpisodeBatch.stack([ep]))
    loss.backward()
    assert learned.log_temperature.grad is not None and learned.log_temperature.grad.abs() > 0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        MatchingNet(nn.Linear(5, 4), MatchingConfig(temperature=0.0))
