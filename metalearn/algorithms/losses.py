"""The per-task loss and metric of every learner: cross-entropy / accuracy for class labels,
mean squared error for float targets (the targets' dtype decides, so regression and
classification episodes share one type)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def task_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy for integer labels, mean squared error for float targets.

    Args:
        outputs: Logits ``(n, n_way)`` or predictions ``(n, *y_shape)``.
        targets: Labels ``(n,)`` (int64) or targets ``(n, *y_shape)`` (float).
    """
    if torch.is_floating_point(targets):
        return F.mse_loss(outputs, targets)
    return F.cross_entropy(outputs, targets)


def task_metric(outputs: Tensor, targets: Tensor) -> Tensor:
    """Accuracy (classification) or mean squared error (regression), as a 0-d tensor."""
    if torch.is_floating_point(targets):
        return F.mse_loss(outputs.detach(), targets)
    return (outputs.detach().argmax(-1) == targets).float().mean()


def metric_name(targets: Tensor) -> str:
    """``"mse"`` for float targets, else ``"accuracy"``."""
    return "mse" if torch.is_floating_point(targets) else "accuracy"
