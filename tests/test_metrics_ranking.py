"""Tests for the rating and ranking metrics: MAE, RMSE and MeLU's nDCG@k (ties included)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from metalearn.eval.metrics import mae, ndcg_at_k, rmse

LOG2_3 = math.log2(3)  # discount of rank 2 is 1 / log2(3)


def brute_force_ndcg(pred: list[float], target: list[float], k: int, gain: str = "exp") -> float:
    """The average nDCG over every ordering of the items that sorts ``pred`` non-increasingly."""
    g = [(2.0**t - 1) if gain == "exp" else t for t in target]
    disc = [1 / math.log2(r + 2) for r in range(min(k, len(g)))]
    idcg = sum(d * x for d, x in zip(disc, sorted(g, reverse=True)))
    dcgs = []
    for perm in itertools.permutations(range(len(pred))):
        if all(pred[perm[j]] >= pred[perm[j + 1]] for j in range(len(perm) - 1)):
            dcgs.append(sum(d * g[i] for d, i in zip(disc, perm)))
    return sum(dcgs) / len(dcgs) / idcg


def test_mae_rmse_hand_computed_and_shapes():
    pred = torch.tensor([[4.0], [2.0], [3.0], [5.0]])
    target = torch.tensor([[5.0], [2.0], [1.0], [4.0]])
    # errors 1, 0, 2, 1 -> MAE 4/4 = 1, RMSE sqrt((1 + 0 + 4 + 1) / 4) = sqrt(1.5)
    assert mae(pred, target) == pytest.approx(1.0)
    assert rmse(pred, target) == pytest.approx(math.sqrt(1.5))
    assert mae(pred.flatten(), target.flatten()) == pytest.approx(1.0)
    assert rmse(pred.flatten(), target.flatten()) == pytest.approx(math.sqrt(1.5))
    with pytest.raises(ValueError, match="differ in shape"):
        mae(pred, target.flatten())  # (n, 1) against (n,) would broadcast to (n, n)
    with pytest.raises(ValueError, match="differ in shape"):
        rmse(pred.flatten(), target)
    with pytest.raises(ValueError, match="at least one"):
        mae(torch.zeros(0), torch.zeros(0))


def test_ndcg_perfect_ranking_is_one():
    target = torch.tensor([[4.0], [1.0], [5.0], [3.0], [2.0]])
    assert ndcg_at_k(target, target, k=3) == pytest.approx(1.0)
    assert ndcg_at_k(2 * target + 7, target, k=5, gain="linear") == pytest.approx(1.0)
    # only the order matters: a prediction on another scale with the same order is ideal
    assert ndcg_at_k(torch.tensor([0.3, 0.0, 0.9, 0.2, 0.1]), target.flatten(), k=2) == pytest.approx(1.0)


def test_ndcg_reversed_ranking_hand_computed():
    target = torch.tensor([1.0, 2.0, 3.0])  # exp gains 1, 3, 7
    pred = torch.tensor([3.0, 2.0, 1.0])  # ranks item 0 (gain 1) first, item 2 (gain 7) last
    # DCG@3 = 1/1 + 3/log2(3) + 7/2 = 6.39279; IDCG@3 = 7/1 + 3/log2(3) + 1/2 = 9.39279 -> 0.680606
    dcg = 1 + 3 / LOG2_3 + 7 / 2
    idcg = 7 + 3 / LOG2_3 + 1 / 2
    assert dcg == pytest.approx(6.39279, abs=1e-5) and idcg == pytest.approx(9.39279, abs=1e-5)
    assert ndcg_at_k(pred, target, k=3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(pred, target, k=3) == pytest.approx(0.680606, abs=1e-6)
    # k = 1: 1 / 7
    assert ndcg_at_k(pred, target, k=1) == pytest.approx(1 / 7)
    # linear gain, k = 3: (1 + 2/log2 3 + 3/2) / (3 + 2/log2 3 + 1/2)
    lin = (1 + 2 / LOG2_3 + 1.5) / (3 + 2 / LOG2_3 + 0.5)
    assert ndcg_at_k(pred, target, k=3, gain="linear") == pytest.approx(lin)
    assert lin == pytest.approx(0.789998, abs=1e-6)


def test_ndcg_middle_case_hand_computed():
    # true ratings 5, 3, 4, 1; predicted order 2, 0, 3, 1 (ratings 4, 5, 1, 3); exp gains 31, 7, 15, 1
    target = torch.tensor([[5.0], [3.0], [4.0], [1.0]])
    pred = torch.tensor([[3.0], [0.5], [3.5], [1.0]])
    dcg = 15 + 31 / LOG2_3 + 1 / 2  # k = 3: items 2, 0, 3 -> 35.0588
    idcg = 31 + 15 / LOG2_3 + 7 / 2  # 43.9639
    assert ndcg_at_k(pred, target, k=3) == pytest.approx(dcg / idcg)
    assert dcg / idcg == pytest.approx(0.797445, abs=1e-6)


def test_ndcg_ties_equal_brute_force_permutation_average():
    cases = [
        ([1.0, 1.0, 0.0, 1.0], [5.0, 3.0, 1.0, 2.0]),  # a three-way tie at the top
        ([2.0, 1.0, 1.0, 0.0, 0.0], [1.0, 5.0, 2.0, 4.0, 3.0]),  # two tied pairs
        ([0.0, 0.0, 0.0, 0.0], [4.0, 1.0, 3.0, 2.0]),  # everything tied: a random ranking
        ([3.0, 3.0, 1.0], [2.0, 2.0, 5.0]),  # ties in both
    ]
    for pred, target in cases:
        for k in (1, 2, 3, 10):
            for gain in ("exp", "linear"):
                got = ndcg_at_k(torch.tensor(pred), torch.tensor(target), k=k, gain=gain)
                assert got == pytest.approx(brute_force_ndcg(pred, target, k, gain)), (pred, target, k, gain)
    # hand value of the first case at k = 2: the tied group {0, 1, 3} (gains 31, 7, 3) fills
    # ranks 1-3; mean gain 41/3 at ranks 1 and 2; IDCG@2 = 31 + 7/log2 3
    got = ndcg_at_k(torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([5.0, 3.0, 1.0, 2.0]), k=2)
    assert got == pytest.approx((41 / 3) * (1 + 1 / LOG2_3) / (31 + 7 / LOG2_3))


def test_ndcg_ties_do_not_favour_the_model():
    target = torch.tensor([5.0, 1.0, 1.0, 1.0])
    # breaking the tie by index would put the best item first and give 1.0
    tied = ndcg_at_k(torch.zeros(4), target, k=1)
    assert tied == pytest.approx((31 + 1 + 1 + 1) / 4 / 31)
    assert tied < 1.0
    # ties in the truth leave IDCG alone: any order of the three 1s is ideal
    assert ndcg_at_k(torch.tensor([9.0, 3.0, 2.0, 1.0]), target, k=4) == pytest.approx(1.0)
    assert ndcg_at_k(torch.tensor([9.0, 1.0, 2.0, 3.0]), target, k=4) == pytest.approx(1.0)


def test_ndcg_k_larger_than_n_uses_all_items():
    target = torch.tensor([1.0, 2.0, 3.0])
    pred = torch.tensor([3.0, 2.0, 1.0])
    full = ndcg_at_k(pred, target, k=3)
    assert ndcg_at_k(pred, target, k=10) == pytest.approx(full)
    assert ndcg_at_k(pred, target, k=100) == pytest.approx((1 + 3 / LOG2_3 + 7 / 2) / (7 + 3 / LOG2_3 + 1 / 2))
    # a single item is always ranked ideally
    assert ndcg_at_k(torch.tensor([0.2]), torch.tensor([4.0]), k=5) == 1.0


def test_ndcg_zero_idcg_and_bad_inputs():
    assert ndcg_at_k(torch.tensor([1.0, 2.0]), torch.zeros(2), k=2) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(torch.zeros(3), torch.ones(3), k=0)
    with pytest.raises(ValueError, match="unknown gain"):
        ndcg_at_k(torch.zeros(3), torch.ones(3), k=1, gain="log")
    with pytest.raises(ValueError, match="differ in shape"):
        ndcg_at_k(torch.zeros(3, 1), torch.ones(3), k=1)
    with pytest.raises(ValueError, match="NaN"):
        ndcg_at_k(torch.tensor([float("nan"), 1.0]), torch.ones(2), k=1)
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k(torch.zeros(2), torch.tensor([-1.0, 2.0]), k=1)
