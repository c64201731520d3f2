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
