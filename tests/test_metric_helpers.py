"""The shared metric helpers against hand computations and torch references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearn.algorithms.metric_common import (
    check_support,
    cosine_similarity,
    embed_support_query,
    pairwise_sq_dist,
    prototypes,
)
from metalearn.models import Conv4


def test_prototypes_equal_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(7, 3, generator=g)
    labels = torch.tensor([2, 0, 1, 2, 0, 2, 1])
    expected = torch.stack([features[labels == c].sum(0) / (labels == c).sum() for c in range(3)])
    torch.testing.assert_close(prototypes(features, labels, 3), expected)
    # by hand for one class: rows 0, 3, 5 are class 2
    torch.testing.assert_close(prototypes(features, labels, 3)[2], (features[0] + features[3] + features[5]) / 3)


def test_prototypes_batched_over_tasks_equal_per_task():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(4, 6, 5, generator=g)
    labels = torch.stack([torch.randperm(6, generator=g) % 3 for _ in range(4)])
    batched = prototypes(features, labels, 3)
    for t in range(4):
        torch.testing.assert_close(batched[t], prototypes(features[t], labels[t], 3))


def test_pairwise_sq_dist_matches_cdist_and_is_never_negative():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2, 9, 4, generator=g, dtype=torch.float64), torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pairwise_sq_dist(a, b), torch.cdist(a, b) ** 2)
    x = 1e3 * torch.randn(6, 8, generator=g)
    assert (pairwise_sq_dist(x, x) >= 0).all()


def test_cosine_similarity_matches_torch_and_handles_zero_vectors():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(5, 4, generator=g), torch.randn(3, 4, generator=g)
    expected = F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)
    torch.testing.assert_close(cosine_similarity(a, b), expected)
    assert torch.equal(cosine_similarity(torch.zeros(1, 4), b), torch.zeros(1, 3))


def test_check_support_errors_name_the_fix():
    assert check_support(torch.tensor([0, 1, 1, 2])) == 3
    with pytest.raises(ValueError, match=r"class\(es\) \[3\].*every class needs >= 1 support"):
        check_support(torch.tensor([0, 1, 2]), query_y=torch.tensor([3]))
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        check_support(torch.tensor([0, 0, 2]))
    with pytest.raises(ValueError, match="k_shot >= 1"):
        check_support(torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64 labels"):
        check_support(torch.tensor([0.0, 1.0]))


def test_task_norm_uses_support_statistics_only():
    """With norm="task" the query features do not depend on the other queries of the batch."""
    torch.manual_seed(0)
    net = Conv4(in_channels=1, hidden=8, norm="task")
    g = torch.Generator().manual_seed(4)
    s, q = torch.rand(4, 1, 28, 28, generator=g), torch.rand(6, 1, 28, 28, generator=g)
    zs, zq = embed_support_query(net, s, q)
    zs2, zq2 = embed_support_query(net, s, q[:3])
    torch.testing.assert_close(zq[:3], zq2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(zs, zs2, rtol=1e-4, atol=1e-5)
