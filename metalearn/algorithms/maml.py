"""MAML and first-order MAML.

Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017 (arXiv:1703.03400).

For each task, the inner loop takes ``inner_steps`` gradient steps from the meta-parameters
``theta`` on the support loss, ``theta'_i = theta - alpha * grad L_support_i(theta)``; the
meta-loss is the query loss at the adapted parameters, averaged over tasks. Its gradient
differentiates through the inner steps (second order, the default); ``first_order=True``
treats the inner gradients as constants (FOMAML, paper section 5.2).

Per task, the meta-gradient is ``vjp(inner_loop)(grad L_query(theta'))``: the query
forward/backward runs once, without a graph, and only the small support computation is
differentiated twice. Tasks are mapped by a loop or by ``torch.func.vmap``
(:mod:`metalearn.algorithms.functional`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from metalearn.algorithms.functional import (
    MODES,
    AdaptedPredictor,
    Differentiate,
    as_batch,
    attach_gradients,
    autograd_grad,
    check_backbone,
    check_finite,
    check_steps,
    detach,
    func_grad,
    inner_loop,
    make_forward,
    metric_name,
    over_tasks,
    predict,
    resolve_mode,
    task_loss,
    task_meta_gradient,
    task_metric,
    uses_task_norm,
)
from metalearn.optim.update_rules import UpdateRule, check_lr, sgd
from metalearn.types import EpisodeBatch, Params


@dataclass
class MAMLConfig:
    """Hyperparameters of :class:`MAML` (defaults: the paper's Omniglot setting)."""

    inner_lr: float = 0.4
    """Inner-loop step size alpha (0.4 Omniglot, 0.01 mini-ImageNet and sinusoids)."""
    inner_steps: int = 1
    """Inner gradient steps during meta-training. 0 trains one model on all tasks' query sets
    without adaptation: the "pretrained" baseline of the MAML paper, fine-tuned at test time
    with ``eval_inner_steps``."""
    eval_inner_steps: int | None = None
    """Inner gradient steps in ``adapt`` (evaluation); ``None``: same as ``inner_steps``."""
    first_order: bool = False
    """Drop second-order terms (FOMAML): inner gradients are treated as constants."""
    task_mode: str = "auto"
    """How tasks are mapped: ``loop``, ``threads`` (the loop on a pool of CPU threads, one task
    per core), ``vmap``, or ``auto`` (vmap on CUDA and for fully connected backbones on CPU;
    for convolutional ones on CPU, threads for second-order meta-gradients, else the loop)."""
    chunk_size: int | None = None
    """With vmap, tasks per vectorised call (bounds memory); ``None``: all at once."""


class MAML(nn.Module):
    """Model-Agnostic Meta-Learning over any backbone without running statistics.

    Args:
        backbone: Maps inputs ``(n, *x_shape)`` to logits ``(n, n_way)`` or predictions
            ``(n, *y_shape)``; its parameters are the meta-parameters (used, never copied).
        config: Hyperparameters; defaults to :class:`MAMLConfig()`.

    Raises:
        ValueError: for a negative or non-finite ``inner_lr``, zero inner steps, an unknown
            ``task_mode``, or a backbone with running-statistics batch norm.

    Examples:
        >>> from metalearn.models import MLP
        >>> from metalearn.types import Episode, EpisodeBatch
        >>> maml = MAML(MLP(1, (8,), out_features=1), MAMLConfig(inner_lr=0.01))
        >>> ep = Episode(torch.randn(5, 1), torch.randn(5, 1), torch.randn(7, 1), torch.randn(7, 1))
        >>> loss, metrics = maml.meta_loss(EpisodeBatch.stack([ep, ep]))
        >>> loss.backward(); sorted(metrics)
        ['loss', 'mse']
        >>> maml.adapt(ep.support_x, ep.support_y)(ep.query_x).shape
        torch.Size([7, 1])
    """

    def __init__(self, backbone: nn.Module, config: MAMLConfig | None = None):
        super().__init__()
        self.config = config = config or MAMLConfig()
        check_lr(config.inner_lr)
        check_steps(config.inner_steps, "inner_steps", minimum=0)  # 0: the pretrained baseline
        if config.eval_inner_steps is not None:
            check_steps(config.eval_inner_steps, "eval_inner_steps")
        if config.task_mode not in MODES:
            raise ValueError(f"unknown task_mode {config.task_mode!r}; choose one of {MODES}")
        self.backbone = check_backbone(backbone)
        self._forward = make_forward(backbone)
        self._task_norm = uses_task_norm(backbone)

    # Meta-SGD overrides these two: the inner rule and the meta-learned tensors it uses.
    def rule_params(self) -> Params:
        """Meta-learned tensors of the inner update rule (none for MAML)."""
        return {}

    def make_rule(self, rule_params: Params) -> UpdateRule:
        """The inner update rule built from (possibly transformed) ``rule_params``."""
        return sgd(self.config.inner_lr)

    def forward(self, x: Tensor) -> Tensor:
        """The backbone at the meta-parameters (no adaptation)."""
        return self.backbone(x)

    def _meta(self) -> tuple[Params, Params]:
        return dict(self.backbone.named_parameters()), self.rule_params()

    def _adapt_fn(self, support_x: Tensor, support_y: Tensor, steps: int, first_order: bool):
        def adapt(meta: tuple[Params, Params], differentiate: Differentiate = func_grad):
            params, rule_params = meta
            return inner_loop(self._forward, params, support_x, support_y,
                              self.make_rule(rule_params), steps, first_order=first_order,
                              differentiate=differentiate)
        return adapt

    def _task(self, meta: tuple[Params, Params], need_grad: bool, functorch: bool):
        cfg, forward, task_norm = self.config, self._forward, self._task_norm

        def task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Any, ...]:
            adapt = self._adapt_fn(sx, sy, cfg.inner_steps, cfg.first_order)

            def query(adapted: Params) -> tuple[Tensor, tuple[Tensor, Tensor]]:
                out = predict(forward, adapted, sx, qx, task_norm)
                loss = task_loss(out, qy)
                return loss, (loss.detach(), task_metric(out, qy))

            if not need_grad:
                adapted, inner = adapt(meta)
                _, (loss, metric) = query(adapted)
                return loss, metric, inner
            meta_grad, (loss, metric), inner = task_meta_gradient(adapt, query, meta, functorch)
            return loss, metric, inner, meta_grad

        return task

    def meta_loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, float]]:
        """Mean query loss after adaptation, over the tasks of ``batch``.

        Args:
            batch: Tasks of equal shape; ``support_x`` ``(n_tasks, n_support, *x_shape)``,
                ``query_x`` ``(n_tasks, n_query, *x_shape)``, targets likewise.

        Returns:
            ``(loss, metrics)``: a scalar whose ``backward()`` deposits the meta-gradient in
            the parameters, and floats ``loss`` and ``accuracy`` (or ``mse``) on the query sets.

        Raises:
            FloatingPointError: if a support or query loss is NaN/inf (names task and step).
        """
        batch = as_batch(batch)
        meta = self._meta()
        leaves = [*meta[0].values(), *meta[1].values()]
        need_grad = torch.is_grad_enabled() and any(p.requires_grad for p in leaves)
        mode = resolve_mode(self.config.task_mode, batch.support_x.device, self.backbone,
                            second_order=need_grad and not self.config.first_order)
        tensors = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        task = self._task(meta, need_grad, functorch=mode == "vmap")
        out = over_tasks(task, tensors, mode, self.config.chunk_size)
        losses, metrics, inner = out[:3]
        check_finite(inner, losses)
        value = losses.mean()
        if need_grad:
            grads = [g.mean(0) for g in (*out[3][0].values(), *out[3][1].values())]
            value = attach_gradients(value, leaves, grads)
        return value, {"loss": float(losses.mean()), metric_name(batch.query_y): float(metrics.mean())}

    def adapt(self, support_x: Tensor, support_y: Tensor) -> AdaptedPredictor:
        """Adapt to one task with ``eval_inner_steps`` steps; the meta-parameters are untouched.

        Args:
            support_x: ``(n_support, *x_shape)``.
            support_y: ``(n_support,)`` labels or ``(n_support, *y_shape)`` targets.

        Returns:
            A predictor mapping ``query_x`` ``(n, *x_shape)`` to outputs ``(n, ...)``.
        """
        steps = self.config.eval_inner_steps or self.config.inner_steps
        meta = tuple(detach(d) for d in self._meta())
        adapted, inner = self._adapt_fn(support_x, support_y, steps, True)(meta, autograd_grad)
        check_finite(inner[None])
        return AdaptedPredictor(self._forward, detach(adapted), support_x, self._task_norm)
