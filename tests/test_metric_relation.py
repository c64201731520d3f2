"""Relation Networks: feature-map checks, K-shot class sums, scores and the MSE objective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn.algorithms.relation import RelationConfig, RelationNet
from metalearn.models import Conv4, FeatureMaps
from metalearn.types import Episode, EpisodeBatch


def image_episode(n_way=3, k_shot=2, n_query=2, seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_way)
    return Episode(torch.randn(n_way * k_shot, 1, 6, 6, generator=g), y.repeat_interleave(k_shot),
                   torch.randn(n_way * n_query, 1, 6, 6, generator=g), y.repeat_interleave(n_query))


def make(norm="batch") -> RelationNet:
    torch.manual_seed(0)
    return RelationNet(nn.Conv2d(1, 4, 3, padding=1), RelationConfig(feature_shape=(4, 6, 6), hidden_channels=8, norm=norm))


def test_flat_features_are_refused_with_the_fix():
    algo = RelationNet(nn.Flatten(), RelationConfig(feature_shape=(1, 6, 6)))
    ep = image_episode()
    with pytest.raises(ValueError, match=r"rank 2.*FeatureMaps\(backbone, \(C, H, W\)\)"):
        algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
    with pytest.raises(ValueError, match="rank 2"):
        algo.meta_loss(EpisodeBatch.stack([ep]))


def test_feature_maps_of_another_shape_are_refused_with_the_fix():
    algo = RelationNet(nn.Conv2d(1, 4, 3), RelationConfig(feature_shape=(4, 6, 6)))  # no padding: 4x4
    ep = image_episode()
    with pytest.raises(ValueError, match=r"feature_shape to \(4, 4, 4\)"):
        algo.adapt(ep.support_x, ep.support_y)(ep.query_x)


def test_missing_feature_shape_is_refused():
    with pytest.raises(ValueError, match="RelationConfig.feature_shape"):
        RelationNet(nn.Conv2d(1, 4, 3))


def test_scores_are_in_unit_interval_and_loss_is_mse_to_one_hot():
    algo = make()
    ep = image_episode()
    s = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert s.shape == (6, 3) and ((s >= 0) & (s <= 1)).all()
    loss, _ = algo.meta_loss(EpisodeBatch.stack([ep]))
    torch.testing.assert_close(loss, F.mse_loss(s, F.one_hot(ep.query_y, 3).float()))


def test_k_shot_class_representation_is_the_sum_of_its_feature_maps():
    """Two support examples of a class score like one example whose feature map is their sum."""
    algo = make(norm="none")
    torch.manual_seed(1)
    algo.backbone = nn.Conv2d(1, 4, 3, padding=1, bias=False)  # linear: f(a) + f(b) = f(a + b)
    ep = image_episode(k_shot=2)
    summed_x = ep.support_x.view(3, 2, 1, 6, 6).sum(1)
    with torch.no_grad():
        two_shot = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
        one_shot = algo.adapt(summed_x, torch.arange(3))(ep.query_x)
    torch.testing.assert_close(two_shot, one_shot, rtol=1e-4, atol=1e-5)


def test_feature_maps_wrapper_restores_conv4_maps_exactly():
    torch.manual_seed(2)
    conv = Conv4(in_channels=1, hidden=4, norm="none", image_size=28, n_blocks=2)  # 4 x 7 x 7 maps
    wrapped = FeatureMaps(conv, (4, 7, 7))
    x = torch.rand(3, 1, 28, 28)
    maps = x
    for c in conv.convs:
        maps = F.max_pool2d(F.relu(c(maps)), 2)
    torch.testing.assert_close(wrapped(x), maps)
    algo = RelationNet(wrapped, RelationConfig(hidden_channels=4))  # shape read from out_shape
    assert algo.feature_shape == (4, 7, 7)
