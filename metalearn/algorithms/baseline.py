"""Baseline and Baseline++: pretrain a classifier, then fit a new head per task.

Chen, Liu, Kira, Wang and Huang, "A Closer Look at Few-shot Classification", ICLR 2019
(arXiv:1904.04232).

*Pretraining* is ordinary, non-episodic classification: the backbone plus a head over all
meta-train classes, trained with cross-entropy on ``(x, y)`` minibatches
(:meth:`Baseline.pretrain_loss`; :func:`metalearn.train.pretrain.pretrain` runs it over a
dataset). :meth:`Baseline.meta_loss` trains the same objective from an :class:`EpisodeBatch`
(every support and query example labelled with its dataset class id, ``class_ids``), so the
shared training loop can run it unchanged. Baseline uses a linear head;
Baseline++ a cosine head, ``logits = scale * cos(w_c, f(x))``, which is invariant to the scale
of the features and reduces intra-class variation.

*Adaptation* freezes the backbone, embeds the support set once and fits a fresh head of the
same kind on it (full-batch Adam on the fixed features; the paper uses 100 SGD epochs with
batch 4). Heads of many tasks are fitted at once (:func:`fit_heads`, :meth:`Baseline.adapt_batch`).
The pretrained backbone can come from a user's checkpoint
(:func:`metalearn.models.weights.load_backbone`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.metric_common import (
    check_support,
    cosine_similarity,
    episodes_of,
    flatten_features,
    prototypes,
)
from metalearn.models.heads import run_backbone
from metalearn.types import Episode, EpisodeBatch


@dataclass
class BaselineConfig:
    """Hyperparameters of :class:`Baseline` (``head="linear"``) and Baseline++ (``"cosine"``)."""

    n_classes: int = 0
    """Number of meta-train classes: the size of the pretraining head (required)."""

    head: Literal["linear", "cosine"] = "linear"
    """Linear head (Baseline) or cosine head (Baseline++)."""

    feature_dim: int | None = None
    """Backbone feature size; read from ``backbone.out_dim`` when ``None``."""

    scale: float | None = None
    """Cosine-head temperature; ``None`` uses the paper code's rule: 2 for heads of at most
    200 classes, else 10."""

    finetune_steps: int = 100
    """Full-batch optimisation steps of a new task's head."""

    finetune_lr: float = 0.01
    """Adam learning rate of a new task's head."""

    finetune_weight_decay: float = 1e-3
    """L2 penalty on a new task's head weights (the paper's 1e-3)."""


def head_logits(features: Tensor, weight: Tensor, bias: Tensor | None, kind: str, scale: float) -> Tensor:
    """Logits of a linear or cosine head.

    Args:
        features: ``(..., n, d)``.
        weight: ``(..., n_classes, d)``.
        bias: ``(..., n_classes)`` for a linear head, ``None`` for a cosine head.
        kind: ``"linear"`` or ``"cosine"``.
        scale: Temperature of the cosine head.

    Returns:
        ``(..., n, n_classes)``.
    """
    if kind == "cosine":
        return scale * cosine_similarity(features, weight)
    return features @ weight.transpose(-1, -2) + bias.unsqueeze(-2)


def cosine_scale(n_classes: int, scale: float | None) -> float:
    """The cosine-head temperature: ``scale`` if given, else 2 (<= 200 classes) or 10."""
    return float(scale) if scale is not None else (2.0 if n_classes <= 200 else 10.0)


def fit_heads(features: Tensor, labels: Tensor, n_way: int, config: BaselineConfig) -> tuple[Tensor, Tensor | None]:
    """Fit one new head per task on fixed support features, all tasks at once.

    Each task's loss is its own mean cross-entropy and Adam is elementwise, so fitting a stack
    of tasks gives the same heads as fitting each task alone.

    Args:
        features: Support features ``(n_tasks, n_support, d)`` (treated as constants).
        labels: ``(n_tasks, n_support)`` in ``0..n_way-1``.
        n_way: Number of classes per task.
        config: Head kind and fine-tuning hyperparameters.

    Returns:
        Weights ``(n_tasks, n_way, d)`` and biases ``(n_tasks, n_way)`` (``None`` for a cosine head).
    """
    # Runs inside an evaluator's no_grad/inference_mode too: the head is fitted by gradients.
    with torch.inference_mode(False), torch.enable_grad():
        features = features.detach().clone()
        scale = cosine_scale(n_way, config.scale)
        if config.head == "cosine":  # start from the normalised class means ("weight imprinting")
            init = prototypes(F.normalize(features, dim=-1), labels, n_way)
        else:
            init = torch.zeros(*features.shape[:-2], n_way, features.shape[-1], dtype=features.dtype, device=features.device)
        weight = init.clone().requires_grad_(True)
        bias = None if config.head == "cosine" else features.new_zeros(weight.shape[:-1]).requires_grad_(True)
        params = [weight] + ([bias] if bias is not None else [])
        opt = torch.optim.Adam(params, lr=config.finetune_lr, eps=1e-6)  # eps: no sign-amplified rounding noise
        for _ in range(config.finetune_steps):
            logits = head_logits(features, weight, bias, config.head, scale)
            ce = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")
            loss = ce.view(labels.shape).mean(-1).sum() + 0.5 * config.finetune_weight_decay * (weight**2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return weight.detach(), None if bias is None else bias.detach()


class BaselinePredictor:
    """Frozen backbone plus the heads fitted by :meth:`Baseline.adapt` / :meth:`Baseline.adapt_batch`.

    Called on ``(n, *x_shape)`` (one task) or ``(n_tasks, n, *x_shape)`` (batched) queries.
    """

    def __init__(self, backbone: nn.Module, support_x: Tensor, weight: Tensor, bias: Tensor | None,
                 kind: str, scale: float, batched: bool):
        self.backbone, self.support_x, self.weight, self.bias = backbone, support_x, weight, bias
        self.kind, self.scale, self.batched = kind, scale, batched

    def __call__(self, query_x: Tensor) -> Tensor:
        """Logits ``(n, n_way)``, or ``(n_tasks, n, n_way)`` for a batched predictor."""
        query_x = query_x if self.batched else query_x.unsqueeze(0)
        with torch.no_grad():
            z = torch.stack([query_features(self.backbone, s, q) for s, q in zip(self.support_x, query_x)])
            logits = head_logits(z, self.weight, self.bias, self.kind, self.scale)
        return logits if self.batched else logits[0]


def query_features(backbone: nn.Module, support_x: Tensor, query_x: Tensor) -> Tensor:
    """Flat query features ``(n, d)``; the support rows go along so that ``norm="task"``
    normalises the queries with the support statistics, as when the head was fitted."""
    ns = support_x.shape[0]
    return flatten_features(run_backbone(backbone, torch.cat([support_x, query_x]), ns)[ns:])


class Baseline(nn.Module):
    """Baseline / Baseline++ over any feature extractor.

    Args:
        backbone: Maps ``(n, *x_shape)`` to features ``(n, *feature_shape)`` (flattened).
        config: Hyperparameters; ``n_classes`` is required.

    Examples:
        >>> algo = Baseline(nn.Linear(4, 8), BaselineConfig(n_classes=10, feature_dim=8))
        >>> loss, metrics = algo.pretrain_loss(torch.randn(16, 4), torch.randint(0, 10, (16,)))
        >>> algo.adapt(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]))(torch.randn(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(self, backbone: nn.Module, config: BaselineConfig):
        super().__init__()
        self.config = config
        if config.n_classes < 1:
            raise ValueError("Baseline needs BaselineConfig.n_classes: the number of meta-train classes it pretrains on.")
        if config.head not in ("linear", "cosine"):
            raise ValueError(f"unknown head {config.head!r}; choose 'linear' (Baseline) or 'cosine' (Baseline++)")
        dim = config.feature_dim or getattr(backbone, "out_dim", None)
        if dim is None:
            raise ValueError("set BaselineConfig.feature_dim or use a backbone with an `out_dim` attribute.")
        self.backbone = backbone
        self.head = nn.Linear(int(dim), config.n_classes, bias=config.head == "linear")
        self.scale = cosine_scale(config.n_classes, config.scale)

    def pretrain_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of the pretraining classifier on a minibatch.

        Args:
            x: ``(n, *x_shape)``.
            y: ``(n,)`` dataset class ids in ``0..n_classes-1``.

        Returns:
            The loss and metrics ``{"loss", "accuracy"}``.
        """
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.config.n_classes):
            raise ValueError(
                f"class ids span {int(y.min())}..{int(y.max())} but the pretraining head has "
                f"{self.config.n_classes} classes: set BaselineConfig.n_classes to the number of "
                "meta-train classes (class ids must index them)."
            )
        z = flatten_features(run_backbone(self.backbone, x))
        logits = head_logits(z, self.head.weight, self.head.bias, self.config.head, self.scale)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "accuracy": (logits.argmax(-1) == y).float().mean().item()}

    def meta_loss(self, batch: EpisodeBatch | Sequence[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Pretraining loss on every example of ``batch``, labelled by its dataset class id.

        An :class:`EpisodeBatch` takes one backbone pass (the mean over all its examples); a
        list of episodes, which may differ in shape, gives the mean of its episodes' losses.

        Raises:
            ValueError: if the batch has no ``class_ids``.
        """
        if not isinstance(batch, EpisodeBatch):
            losses, metrics = zip(*(self.meta_loss(EpisodeBatch.stack([ep])) for ep in episodes_of(batch)))
            loss = torch.stack(losses).mean()
            return loss, {"loss": loss.item(), "accuracy": sum(m["accuracy"] for m in metrics) / len(metrics)}
        if batch.class_ids is None:
            raise ValueError("Baseline pretrains on dataset class ids, but this batch has no class_ids: "
                             "sample classification episodes from a dataset, or call "
                             "pretrain_loss(x, y) on minibatches.")
        x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        return self.pretrain_loss(x, torch.gather(batch.class_ids, 1, y).flatten())

    def adapt_batch(self, support_x: Tensor, support_y: Tensor) -> BaselinePredictor:
        """Fit new heads for a stack of tasks with the frozen backbone.

        Args:
            support_x: ``(n_tasks, n_way * k_shot, *x_shape)``.
            support_y: ``(n_tasks, n_way * k_shot)`` labels in ``0..n_way-1``.

        Returns:
            A predictor mapping ``(n_tasks, n, *x_shape)`` to ``(n_tasks, n, n_way)``.
        """
        n_way = check_support(support_y)
        with torch.no_grad():  # the backbone is frozen: one forward pass per task's support set
            z = torch.stack([flatten_features(run_backbone(self.backbone, s, s.shape[0])) for s in support_x])
        weight, bias = fit_heads(z, support_y, n_way, self.config)
        scale = cosine_scale(n_way, self.config.scale)
        return BaselinePredictor(self.backbone, support_x, weight, bias, self.config.head, scale, True)

    def adapt(self, support_x: Tensor, support_y: Tensor) -> BaselinePredictor:
        """Fit a new head on one task's support set ``(n_support, *x_shape)``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
        """
        batched = self.adapt_batch(support_x.unsqueeze(0), support_y.unsqueeze(0))
        return BaselinePredictor(self.backbone, batched.support_x, batched.weight, batched.bias,
                                 batched.kind, batched.scale, False)
