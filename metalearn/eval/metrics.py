"""Per-episode metrics and the 95% confidence interval used for every reported number.

All functions take plain tensors and return Python floats, so they work on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _labels(pred: Tensor) -> Tensor:
    """Class labels from logits ``(n, n_way)`` or from labels ``(n,)``."""
    return pred.argmax(dim=-1) if pred.dim() > 1 else pred


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of correct predictions.

    Args:
        pred: Logits or scores, shape ``(n, n_way)``, or predicted labels, shape ``(n,)``.
        target: True labels, shape ``(n,)``, int64 in ``0..n_way-1``.

    Returns:
        Accuracy in ``[0, 1]``.

    Examples:
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]))
        0.6666666666666666
    """
    labels = _labels(pred)
    if labels.shape != target.shape:
        raise ValueError(f"predictions {tuple(labels.shape)} and targets {tuple(target.shape)} differ in shape")
    return float((labels == target).double().mean().item())


def macro_recall_f1(pred: Tensor, target: Tensor, n_classes: int | None = None) -> tuple[float, float]:
    """Macro-averaged recall and F1 over the classes present in ``target``.

    A class that never occurs in ``target`` is left out of the average (its recall is
    undefined). A class that is never predicted has precision 0 and so F1 0.

    Args:
        pred: Logits ``(n, n_way)`` or predicted labels ``(n,)``.
        target: True labels ``(n,)``.
        n_classes: Number of classes; defaults to ``max(label) + 1`` over both tensors.

    Returns:
        ``(macro_recall, macro_f1)``, each in ``[0, 1]``.

    Examples:
        >>> macro_recall_f1(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))
        (0.8333333333333333, 0.7333333333333334)
    """
    labels = _labels(pred).long().flatten()
    target = target.long().flatten()
    if n_classes is None:
        n_classes = int(max(labels.max().item(), target.max().item())) + 1
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.float64, device=target.device)
    confusion.index_put_((target, labels), torch.ones_like(target, dtype=torch.float64), accumulate=True)
    true_count = confusion.sum(dim=1)
    pred_count = confusion.sum(dim=0)
    hits = confusion.diagonal()
    present = true_count > 0
    recall = hits / true_count.clamp(min=1)
    precision = torch.where(pred_count > 0, hits / pred_count.clamp(min=1), torch.zeros_like(hits))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(hits))
    return float(recall[present].mean().item()), float(f1[present].mean().item())


def mse(pred: Tensor, target: Tensor) -> float:
    """Mean squared error over every element.

    Args:
        pred: Predictions, shape ``(n, *y_shape)``.
        target: Targets of the same shape.

    Examples:
        >>> mse(torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [0.0]]))
        2.5
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape: "
            "a regression predictor must return one output per target"
        )
    return float((pred.double() - target.double()).pow(2).mean().item())


def mean_ci95(values: Sequence[float] | Tensor) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval, ``1.96 * std / sqrt(n)``.

    ``std`` is the **population** standard deviation (``ddof=0``, ``numpy.std``'s default),
    exactly as in the MAML evaluation code (``cbfinn/maml`` ``main.py``:
    ``1.96 * np.std(accs) / np.sqrt(n)``), so our intervals compare like for like with the
    published ones. With ``ddof=1`` the interval would be wider by ``sqrt(n / (n - 1))``,
    0.08% for 600 episodes.

    Args:
        values: One value per episode, at least one.

    Returns:
        ``(mean, ci95)``. With a single value the interval is 0.

    Examples:
        >>> mean_ci95([0.0, 1.0, 1.0, 0.0])  # std 0.5, n 4: 1.96 * 0.5 / 2
        (0.5, 0.49)
    """
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = t.numel()
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value: evaluate on at least one episode")
    mean = t.mean().item()
    std = t.std(correction=0).item()
    return float(mean), float(1.96 * std / math.sqrt(n))



def pooled_mean_ci95(parts: Sequence[tuple[int, float, float]]) -> tuple[float, float]:
    """:func:`mean_ci95` of a union of value sets, from each set's ``(n, mean, ci95)`` alone
    (population std recovered from the half-width).

    Examples:
        >>> m, c = pooled_mean_ci95([(2, *mean_ci95([0.0, 1.0])), (2, *mean_ci95([1.0, 0.0]))])
        >>> (m, round(c, 6)) == (0.5, round(mean_ci95([0.0, 1.0, 1.0, 0.0])[1], 6))
        True
    """
    n = sum(k for k, _, _ in parts)
    if n == 0:
        raise ValueError("pooled_mean_ci95 needs at least one value")
    total = sum(k * m for k, m, _ in parts)
    squares = sum(k * ((c * math.sqrt(k) / 1.96) ** 2 + m * m) for k, m, c in parts)
    mean = total / n
    var = max(squares / n - mean * mean, 0.0)
    return mean, 1.96 * math.sqrt(var) / math.sqrt(n)

def _same_shape(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape: "
            "give one prediction per target, both (n, 1) or both (n,)"
        )
    if pred.numel() == 0:
        raise ValueError("no predictions to score: a task needs at least one query rating")


def mae(pred: Tensor, target: Tensor) -> float:
    """Mean absolute error of one task's predictions.

    Args:
        pred: Predicted ratings, shape ``(n, 1)`` or ``(n,)``.
        target: True ratings of the same shape.

    Returns:
        ``mean(|pred - target|)``.

    Examples:
        >>> mae(torch.tensor([[4.0], [2.0], [3.0]]), torch.tensor([[5.0], [2.0], [1.0]]))
        1.0
    """
    _same_shape(pred, target)
    return float((pred.double() - target.double()).abs().mean().item())


def rmse(pred: Tensor, target: Tensor) -> float:
    """Root mean squared error of one task's predictions, ``sqrt(mse)``.

    Args:
        pred: Predicted ratings, shape ``(n, 1)`` or ``(n,)``.
        target: True ratings of the same shape.

    Returns:
        ``sqrt(mean((pred - target)^2))``.

    Examples:
        >>> rmse(torch.tensor([4.0, 2.0]), torch.tensor([5.0, 4.0]))  # sqrt((1 + 4) / 2)
        1.5811388300841898
    """
    _same_shape(pred, target)
    return math.sqrt(mse(pred, target))


def ndcg_at_k(pred: Tensor, target: Tensor, k: int, gain: str = "exp") -> float:
    """nDCG@k of one user's query items ranked by predicted rating, against their true ratings.

    The items are ranked by ``pred`` (highest first) and the true rating of the item at rank
    ``r`` is its relevance ``rel_r``::

        DCG@k  = sum_{r=1..k} g(rel_r) / log2(r + 1)
        IDCG@k = the same with the items sorted by true rating
        nDCG@k = DCG@k / IDCG@k

    with the gain ``g(rel) = 2^rel - 1`` (``gain="exp"``, Järvelin and Kekäläinen 2002 in
    the form of Burges et al. 2005) or ``g(rel) = rel`` (``gain="linear"``). MeLU (Lee et al.,
    KDD 2019) reports nDCG@k of the query items ranked this way, but its released code
    (hoyeoplee/MeLU) contains no evaluation code, so its gain cannot be confirmed: ``"exp"`` is
    the default as the standard form. With ``k`` above the number of items every item counts.

    **Ties in the prediction** do not favour the model: the DCG is the expectation over all
    orderings of tied items, each equally likely. Tied items occupying the ranks of a group
    ``G`` each stand at every one of those ranks with probability ``1 / |G|``, so by linearity
    of expectation (exactly, without sampling)::

        E[DCG@k] = sum_G mean_{i in G} g(rel_i) * sum_{r in ranks(G), r <= k} 1 / log2(r + 1)

    A constant prediction therefore scores the nDCG of a random ranking. Ties in the truth
    do not change IDCG (tied items have equal gains). When IDCG is 0 (every true gain is 0,
    which cannot happen on a 1-5 rating scale) every ordering is ideal and 1.0 is returned.

    Args:
        pred: Predicted ratings (or any scores), shape ``(n, 1)`` or ``(n,)``.
        target: True ratings of the same shape, non-negative.
        k: Cut-off, at least 1.
        gain: ``"exp"`` (``2^rel - 1``) or ``"linear"`` (``rel``).

    Returns:
        nDCG@k in ``[0, 1]``.

    Raises:
        ValueError: on mismatched shapes, an empty task, ``k < 1``, an unknown ``gain``,
            NaN predictions or negative / non-finite true ratings.

    Examples:
        >>> target = torch.tensor([3.0, 2.0, 1.0])
        >>> ndcg_at_k(torch.tensor([0.9, 0.5, 0.1]), target, k=3)  # the ideal ranking
        1.0
        >>> round(ndcg_at_k(torch.tensor([0.1, 0.5, 0.9]), target, k=2), 4)  # (1 + 3/log2 3) / (7 + 3/log2 3)
        0.3253
        >>> round(ndcg_at_k(torch.zeros(3), target, k=1), 4)  # all tied: mean gain (7 + 3 + 1) / 3 over 7
        0.5238
    """
    _same_shape(pred, target)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if gain not in ("exp", "linear"):
        raise ValueError(f"unknown gain {gain!r}: choose 'exp' (2^rel - 1) or 'linear' (rel)")
    p = pred.detach().flatten().double()
    t = target.detach().flatten().double()
    if torch.isnan(p).any():
        raise ValueError("predictions contain NaN: the model diverged or was fed bad inputs")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError("true ratings must be finite and non-negative for nDCG: shift the rating "
                         "scale so that its lowest value is at least 0")
    g = torch.exp2(t) - 1 if gain == "exp" else t
    n = g.numel()
    discount = 1.0 / torch.log2(torch.arange(2, n + 2, dtype=torch.float64, device=g.device))
    discount[min(k, n):] = 0.0
    order = torch.argsort(p, descending=True, stable=True)
    _, group, counts = torch.unique_consecutive(p[order], return_inverse=True, return_counts=True)
    group_gain = torch.zeros(counts.numel(), dtype=torch.float64, device=g.device)
    group_gain.index_add_(0, group, g[order])
    dcg = (group_gain[group] / counts[group] * discount).sum()
    idcg = (g.sort(descending=True).values * discount).sum()
    if idcg.item() == 0.0:
        return 1.0
    return float((dcg / idcg).item())
