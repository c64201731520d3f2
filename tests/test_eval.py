"""Tests for metalearn.eval: metrics against hand computations, evaluate() against a manual loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from metalearn.eval import (
    EvalResult,
    accuracy,
    evaluate,
    macro_recall_f1,
    mean_ci95,
    mse,
    ndcg_at_k,
)
from metalearn.types import Episode


def test_mean_ci95_matches_hand_computation():
    values = [0.8, 0.9, 1.0, 0.7, 0.6]
    mean = sum(values) / 5  # 0.8
    var = sum((v - mean) ** 2 for v in values) / 5  # population variance: 0.1 / 5 = 0.02
    assert var == pytest.approx(0.02)
    m, c = mean_ci95(values)
    assert m == pytest.approx(0.8)
    assert c == pytest.approx(1.96 * math.sqrt(0.02) / math.sqrt(5))
    # ddof=0, like numpy's default (the MAML evaluation code)
    assert c == pytest.approx(1.96 * np.std(values) / np.sqrt(5))
    assert c != pytest.approx(1.96 * np.std(values, ddof=1) / np.sqrt(5))


def test_mean_ci95_single_value_and_empty():
    assert mean_ci95([0.25]) == (0.25, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci95([])


def test_accuracy_logits_and_labels():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    target = torch.tensor([0, 1, 1, 0])
    assert accuracy(logits, target) == pytest.approx(0.75)
    assert accuracy(torch.tensor([0, 1, 2, 0]), target) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="shape"):
        accuracy(torch.tensor([0, 1]), target)


def test_macro_recall_f1_hand_computed():
    # class 0: 1/1 recalled, precision 1/2 -> F1 2/3; class 1: 2/3 recalled, precision 1 -> F1 0.8
    r, f = macro_recall_f1(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))
    assert r == pytest.approx((1 + 2 / 3) / 2)
    assert f == pytest.approx((2 / 3 + 0.8) / 2)
    # a class absent from the targets is not averaged; a never-predicted class has F1 0
    r, f = macro_recall_f1(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1]), n_classes=3)
    assert r == pytest.approx(0.5)
    assert f == pytest.approx((2 * 0.5 * 1 / 1.5 + 0) / 2)


def test_mse():
    assert mse(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="one output per target"):
        mse(torch.zeros(3), torch.zeros(3, 1))


class NearestCentroid(nn.Module):
    """Test-only algorithm: a learnable linear embedding + nearest class mean."""

    def __init__(self, dim: int = 2):
        super().__init__()
        self.embed = nn.Linear(dim, dim)
        self.batch_calls = 0

    def adapt(self, sx, sy):
        n_way = int(sy.max()) + 1
        z = self.embed(sx)
        protos = torch.stack([z[sy == c].mean(0) for c in range(n_way)])
        return lambda qx: -torch.cdist(self.embed(qx), protos)

    def adapt_batch(self, support_x, support_y):
        self.batch_calls += 1
        predictors = [self.adapt(sx, sy) for sx, sy in zip(support_x, support_y)]
        return lambda query_x: torch.stack([p(qx) for p, qx in zip(predictors, query_x)])


def blob_episodes(n: int, seed: int = 0, n_way: int = 3, k: int = 2, q: int = 4, spread: float = 1.5):
    g = torch.Generator().manual_seed(seed)
    eps = []
    for _ in range(n):
        centers = torch.randn(n_way, 2, generator=g) * 2
        sy = torch.arange(n_way).repeat_interleave(k)
        qy = torch.arange(n_way).repeat_interleave(q)
        sx = centers[sy] + spread * torch.randn(len(sy), 2, generator=g)
        qx = centers[qy] + spread * torch.randn(len(qy), 2, generator=g)
        eps.append(Episode(sx, sy, qx, qy, class_ids=torch.arange(n_way)))
    return eps


def test_evaluate_classification_equals_manual_loop():
    torch.manual_seed(0)
    algo = NearestCentroid()
    eps = blob_episodes(20)
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    res = evaluate(algo, eps, progress=False)
    manual = []
    for ep in eps:
        with torch.no_grad():
            logits = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
        manual.append((logits.argmax(1) == ep.query_y).float().mean().item())
    assert res.metric == "accuracy" and res.n == 20
    assert res.per_episode == pytest.approx(manual)
    assert 0.0 < res.mean < 1.0  # blobs overlap: not a trivial all-correct evaluation
    assert res.mean == pytest.approx(np.mean(manual))
    assert res.ci95 == pytest.approx(1.96 * np.std(manual) / np.sqrt(20))
    assert set(res.extra) == {"macro_recall", "macro_f1"}
    # balanced queries: macro recall equals accuracy episode by episode
    assert res.extra["macro_recall"][0] == pytest.approx(res.mean)
    for k, v in algo.state_dict().items():
        assert torch.equal(v, before[k])


def test_evaluate_batched_path_gives_same_result_and_restores_mode():
    algo = NearestCentroid()
    algo.train()
    eps = blob_episodes(10, seed=3)
    one = evaluate(algo, eps, progress=False)
    assert algo.training
    batched = evaluate(algo, eps, batch_size=4, progress=False)
    assert algo.batch_calls == 3  # 4 + 4 + 2 episodes
    assert batched.per_episode == pytest.approx(one.per_episode)


class MeanRegressor(nn.Module):
    """Test-only regression algorithm: predicts the support mean."""

    def adapt(self, sx, sy):
        return lambda qx: sy.mean(0, keepdim=True).expand(qx.shape[0], -1)


def test_evaluate_regression_mse():
    g = torch.Generator().manual_seed(1)
    eps = []
    for _ in range(7):
        sx, qx = torch.rand(5, 1, generator=g), torch.rand(9, 1, generator=g)
        eps.append(Episode(sx, torch.sin(3 * sx), qx, torch.sin(3 * qx)))
    res = evaluate(MeanRegressor(), iter(eps), progress=False)  # any iterable, no len
    manual = [((ep.support_y.mean() - ep.query_y) ** 2).mean().item() for ep in eps]
    assert res.metric == "mse" and set(res.extra) == {"mae", "rmse"}
    assert res.per_episode == pytest.approx(manual)
    maes = [(ep.support_y.mean() - ep.query_y).abs().mean().item() for ep in eps]
    assert res.extra["mae"][0] == pytest.approx(np.mean(maes))
    assert res.extra["rmse"][0] == pytest.approx(np.mean(np.sqrt(manual)))
    ranked = evaluate(MeanRegressor(), eps, progress=False, ranking_k=(3,))
    assert ranked.extra["ndcg@3"][0] == pytest.approx(np.mean(
        [ndcg_at_k(torch.zeros(9, 1), ep.query_y, 3) for ep in eps]))  # a constant: random order
    assert res.ci95 == pytest.approx(1.96 * np.std(manual) / np.sqrt(7))
    assert "mse" in str(res) and "7 episodes" in str(res)


def test_eval_result_roundtrip_and_errors():
    res = evaluate(NearestCentroid(), blob_episodes(3), progress=False)
    again = EvalResult.from_dict(res.to_dict())
    assert again == res
    with pytest.raises(ValueError, match="no episodes"):
        evaluate(NearestCentroid(), [], progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(NearestCentroid(), blob_episodes(1), batch_size=0)
