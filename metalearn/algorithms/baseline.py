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
With ``finetune="all"`` the whole network is fine-tuned on the support set together with the
new head (Meta-Dataset's "Finetune" baseline with ``finetune_all_layers``; Triantafillou et al.,
ICLR 2020, section 3), on a functional copy of the pretrained parameters
(:func:`finetune_all`), so every episode starts from the same pretrained weights.
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

from metalearn.algorithms.functional import make_forward
from metalearn.algorithms.metric_common import (
    check_support,
    cosine_similarity,
    episodes_of,
    flatten_features,
    prototypes,
)
from metalearn.models.heads import run_backbone
from metalearn.optim.update_rules import check_lr
from metalearn.types import Episode, EpisodeBatch, Params


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

    finetune: Literal["head", "all"] = "head"
    """What adapts to a new task: ``"head"``, a new head on the frozen backbone's features
    (Chen et al.'s Baseline); ``"all"``, the backbone too, jointly with the new head for the
    same ``finetune_steps`` (Meta-Dataset's Finetune with ``finetune_all_layers=True``), on a
    copy of the pretrained weights, per episode. The head is fitted exactly as in ``"head"``
    mode, so ``"all"`` with ``body_lr=0`` is ``"head"``."""

    finetune_optimizer: Literal["adam", "sgd"] = "adam"
    """Optimiser of a new task's head: full-batch Adam, or plain gradient descent as
    Meta-Dataset's Finetune uses (``BaselineFinetuneLearner.finetune_with_adam=False``)."""

    body_lr: float = 0.01
    """With ``finetune="all"``, the backbone's learning rate. Meta-Dataset's tuned Finetune
    (``learn/gin/best/baselinefinetune_{imagenet,all}.gin``) uses one rate for every layer,
    ``finetune_lr = 0.01``, with ``num_finetune_steps = 75`` (its model defaults,
    ``learn/gin/models/baselinefinetune_config.gin``: 5 steps at 1e-4); 0 freezes the body."""

    body_optimizer: Literal["sgd", "adam"] = "sgd"
    """With ``finetune="all"``, the backbone's optimiser: gradient descent (Meta-Dataset's
    default, ``finetune_with_adam=False``) or Adam."""


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
        weight, bias = new_head(features, labels, n_way, config)
        opt = make_optimizer([weight] + ([bias] if bias is not None else []), config.finetune_lr,
                             config.finetune_optimizer)
        for _ in range(config.finetune_steps):
            loss = head_objective(features, labels, weight, bias, config, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return weight.detach(), None if bias is None else bias.detach()


def new_head(features: Tensor, labels: Tensor, n_way: int, config: BaselineConfig) -> tuple[Tensor, Tensor | None]:
    """A new task's head before fitting, as leaves that require grad.

    Linear: zeros. Cosine: the normalised class means of ``features`` ("weight imprinting").

    Args:
        features: Support features ``(n_tasks, n_support, d)``.
        labels: ``(n_tasks, n_support)`` in ``0..n_way-1``.
        n_way: Number of classes per task.
        config: The head kind.

    Returns:
        Weights ``(n_tasks, n_way, d)`` and biases ``(n_tasks, n_way)`` (``None`` for a cosine head).
    """
    features = features.detach()
    if config.head == "cosine":
        init = prototypes(F.normalize(features, dim=-1), labels, n_way)
    else:
        init = torch.zeros(*features.shape[:-2], n_way, features.shape[-1], dtype=features.dtype, device=features.device)
    weight = init.clone().requires_grad_(True)
    bias = None if config.head == "cosine" else features.new_zeros(weight.shape[:-1]).requires_grad_(True)
    return weight, bias


def head_objective(features: Tensor, labels: Tensor, weight: Tensor, bias: Tensor | None,
                   config: BaselineConfig, scale: float) -> Tensor:
    """Sum over tasks of each task's mean support cross-entropy, plus the L2 penalty on ``weight``.

    Args:
        features: ``(n_tasks, n_support, d)``; labels ``(n_tasks, n_support)``.
        weight, bias: The heads, ``(n_tasks, n_way, d)`` and ``(n_tasks, n_way)`` or ``None``.
        config: Head kind and ``finetune_weight_decay``.
        scale: Temperature of a cosine head.
    """
    logits = head_logits(features, weight, bias, config.head, scale)
    ce = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")
    return ce.view(labels.shape).mean(-1).sum() + 0.5 * config.finetune_weight_decay * (weight**2).sum()


def make_optimizer(params: list[Tensor], lr: float, kind: str) -> torch.optim.Optimizer:
    """Full-batch ``"adam"`` (``eps=1e-6``: no sign-amplified rounding noise) or ``"sgd"``."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, eps=1e-6)
    return torch.optim.SGD(params, lr=lr)


def finetune_all(backbone: nn.Module, support_x: Tensor, support_y: Tensor, n_way: int,
                 config: BaselineConfig) -> tuple[Params, Tensor, Tensor | None]:
    """Fine-tune a copy of the backbone together with a new head on one task's support set.

    The backbone's parameters and buffers are copied (its own are never written, running
    statistics included); the head starts and is optimised as in :func:`fit_heads`, and every
    step also moves the copied backbone (``body_optimizer`` at ``body_lr``) through the same
    full-batch support loss.

    Args:
        backbone: The pretrained feature extractor (read only).
        support_x: ``(n_support, *x_shape)``.
        support_y: ``(n_support,)`` labels in ``0..n_way-1``.
        n_way: Number of classes.
        config: Head and fine-tuning hyperparameters.

    Returns:
        ``(state, weight, bias)``: the fine-tuned parameters and buffers by name (detached),
        the head's weight ``(n_way, d)`` and bias ``(n_way,)`` (``None`` for a cosine head).

    Examples:
        >>> body = nn.Linear(4, 3)
        >>> cfg = BaselineConfig(n_classes=5, feature_dim=3, finetune="all", finetune_steps=5)
        >>> state, w, b = finetune_all(body, torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]), 3, cfg)
        >>> sorted(state), tuple(w.shape), torch.equal(state["weight"], body.weight)
        (['bias', 'weight'], (3, 3), False)
    """
    forward = make_forward(backbone)
    n = support_x.shape[0]
    labels = support_y.unsqueeze(0)
    scale = cosine_scale(n_way, config.scale)
    with torch.inference_mode(False), torch.enable_grad():
        support_x = support_x.clone()  # an evaluator's inference tensor cannot enter a graph
        body = {k: v.detach().clone().requires_grad_(True) for k, v in backbone.named_parameters()}
        buffers = {k: v.detach().clone() for k, v in backbone.named_buffers()}

        def features() -> Tensor:
            return flatten_features(forward({**buffers, **body}, support_x, n)).unsqueeze(0)

        with torch.no_grad():
            weight, bias = new_head(features(), labels, n_way, config)
        head = [weight] + ([bias] if bias is not None else [])
        opts = [make_optimizer(head, config.finetune_lr, config.finetune_optimizer),
                make_optimizer(list(body.values()), config.body_lr, config.body_optimizer)]
        for _ in range(config.finetune_steps):
            loss = head_objective(features(), labels, weight, bias, config, scale)
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
    state = {**buffers, **{k: v.detach() for k, v in body.items()}}
    return state, weight.detach()[0], None if bias is None else bias.detach()[0]


class BaselinePredictor:
    """Frozen backbone plus the heads fitted by :meth:`Baseline.adapt` / :meth:`Baseline.adapt_batch`.

    Called on ``(n, *x_shape)`` (one task) or ``(n_tasks, n, *x_shape)`` (batched) queries.
    With ``states`` (``finetune="all"``) each task's fine-tuned copy of the backbone's
    parameters and buffers replaces the backbone's own.
    """

    def __init__(self, backbone: nn.Module, support_x: Tensor, weight: Tensor, bias: Tensor | None,
                 kind: str, scale: float, batched: bool, states: Sequence[Params] | None = None):
        self.backbone, self.support_x, self.weight, self.bias = backbone, support_x, weight, bias
        self.kind, self.scale, self.batched, self.states = kind, scale, batched, states
        self._forward = None if states is None else make_forward(backbone)

    def __call__(self, query_x: Tensor) -> Tensor:
        """Logits ``(n, n_way)``, or ``(n_tasks, n, n_way)`` for a batched predictor."""
        query_x = query_x if self.batched else query_x.unsqueeze(0)
        with torch.no_grad():
            z = torch.stack([self._features(i, s, q) for i, (s, q) in enumerate(zip(self.support_x, query_x))])
            logits = head_logits(z, self.weight, self.bias, self.kind, self.scale)
        return logits if self.batched else logits[0]

    def _features(self, task: int, support_x: Tensor, query_x: Tensor) -> Tensor:
        if self._forward is None:
            return query_features(self.backbone, support_x, query_x)
        ns = support_x.shape[0]  # the support rides along, as in query_features
        return flatten_features(self._forward(self.states[task], torch.cat([support_x, query_x]), ns)[ns:])


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
        if config.finetune not in ("head", "all"):
            raise ValueError(f"unknown finetune {config.finetune!r}; choose 'head' (a new head on frozen "
                             "features) or 'all' (the whole network with the new head)")
        for name in ("finetune_optimizer", "body_optimizer"):
            if getattr(config, name) not in ("adam", "sgd"):
                raise ValueError(f"unknown {name} {getattr(config, name)!r}; choose 'adam' or 'sgd'")
        check_lr(config.finetune_lr, "BaselineConfig.finetune_lr")
        check_lr(config.body_lr, "BaselineConfig.body_lr")
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
        scale = cosine_scale(n_way, self.config.scale)
        if self.config.finetune == "all":  # a fine-tuned copy of the backbone per task
            states, weights, biases = zip(*(finetune_all(self.backbone, s, y, n_way, self.config)
                                            for s, y in zip(support_x, support_y)))
            bias = None if biases[0] is None else torch.stack(biases)
            return BaselinePredictor(self.backbone, support_x, torch.stack(weights), bias, self.config.head,
                                     scale, True, states=list(states))
        with torch.no_grad():  # the backbone is frozen: one forward pass per task's support set
            z = torch.stack([flatten_features(run_backbone(self.backbone, s, s.shape[0])) for s in support_x])
        weight, bias = fit_heads(z, support_y, n_way, self.config)
        return BaselinePredictor(self.backbone, support_x, weight, bias, self.config.head, scale, True)

    def adapt(self, support_x: Tensor, support_y: Tensor) -> BaselinePredictor:
        """Fit a new head on one task's support set ``(n_support, *x_shape)``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
        """
        batched = self.adapt_batch(support_x.unsqueeze(0), support_y.unsqueeze(0))
        return BaselinePredictor(self.backbone, batched.support_x, batched.weight, batched.bias,
                                 batched.kind, batched.scale, False, batched.states)
