"""MAML and first-order MAML.

Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017 (arXiv:1703.03400).

For each task, the inner loop takes ``inner_steps`` gradient steps from the meta-parameters
``theta`` on the support loss, ``theta'_i = theta - alpha * grad L_support_i(theta)``; the
meta-loss is the query loss at the adapted parameters, averaged over tasks. Its gradient
differentiates through the inner steps (second order, the default); ``first_order=True``
treats the inner gradients as constants (FOMAML, paper section 5.2).

The specification: ``tests/test_gradient_core.py::reference_maml``, a plain per-task loop in
``torch.func`` style that MAML and FOMAML equal in every task mode (tested).

Per task (:meth:`MAML._task_step`): adapt on the support set (:func:`inner_loop`), take the
query loss, and compute its meta-gradient as ``vjp(inner_loop)(grad L_query(theta'))``
(:func:`task_meta_gradient`): the query forward/backward runs once, without a graph, and only
the small support computation is differentiated twice. Tasks are mapped by a loop, a pool of
threads or ``torch.func.vmap`` (:mod:`metalearn.algorithms.task_map`); the per-task
meta-gradients are averaged and attached to the returned loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from metalearn.algorithms.checks import Tasks, as_batch, check_backbone, check_finite, check_steps
from metalearn.algorithms.functional import (
    AdaptedPredictor,
    Differentiate,
    attach_gradients,
    autograd_grad,
    detach,
    func_grad,
    inner_loop,
    make_forward,
    predict,
    task_meta_gradient,
    uses_task_norm,
)
from metalearn.algorithms.losses import metric_name, task_loss, task_metric
from metalearn.algorithms.task_map import TaskMode, check_task_mode, map_tasks, resolve_task_mode
from metalearn.optim.update_rules import UpdateRule, check_lr, sgd
from metalearn.types import Episode, EpisodeBatch, Params


class MetaParams(NamedTuple):
    """Everything the meta-gradient reaches: the initialisation and the update rule's tensors."""

    params: Params
    """The backbone's parameters (the initialisation ``theta``), by name."""
    rule: Params
    """Meta-learned tensors of the inner update rule (:meth:`MAML.rule_params`; none for MAML)."""


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
    task_mode: TaskMode = "auto"
    """How tasks are mapped: ``loop``, ``threads`` (the loop on a pool of CPU threads, one task
    per core), ``vmap``, or ``auto`` (vmap on CUDA and for fully connected backbones on CPU;
    for convolutional ones on CPU, threads for second-order meta-gradients, else the loop).
    A list of episodes of different shapes is never vmapped: ``vmap`` (also from ``auto``)
    falls back to the loop for it."""
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
        check_task_mode(config.task_mode)
        self.backbone = check_backbone(backbone)
        self._forward = make_forward(backbone)
        self._task_norm = uses_task_norm(backbone)

    # The hooks of the subclasses: Meta-SGD and LearnedOptimizerMAML override the inner rule
    # and the meta-learned tensors it uses, ANIL the parameters the inner loop adapts.
    def rule_params(self) -> Params:
        """Meta-learned tensors of the inner update rule (none for MAML)."""
        return {}

    def make_rule(self, rule_params: Params) -> UpdateRule:
        """The inner update rule built from (possibly transformed) ``rule_params``."""
        return sgd(self.config.inner_lr)

    def adapted_names(self) -> list[str] | None:
        """Names of the backbone parameters the inner loop adapts; ``None``: all of them."""
        return None

    def forward(self, x: Tensor) -> Tensor:
        """The backbone at the meta-parameters (no adaptation)."""
        return self.backbone(x)

    def meta_params(self) -> MetaParams:
        """The meta-parameters (the tensors themselves, not copies)."""
        return MetaParams(dict(self.backbone.named_parameters()), self.rule_params())

    def _adapt(self, meta: MetaParams, support_x: Tensor, support_y: Tensor, steps: int,
               first_order: bool, differentiate: Differentiate) -> tuple[Params, Tensor]:
        """The inner loop from ``meta``: ``(adapted_params, support_losses (steps,))``."""
        return inner_loop(self._forward, meta.params, support_x, support_y, self.make_rule(meta.rule),
                          steps, first_order=first_order, adapt=self.adapted_names(),
                          differentiate=differentiate)

    def _task_step(self, meta: MetaParams, need_grad: bool, functorch: bool, support_x: Tensor,
                   support_y: Tensor, query_x: Tensor, query_y: Tensor) -> tuple[Any, ...]:
        """One task: adapt on the support set, the query loss, and its meta-gradient.

        Args:
            meta: The meta-parameters (shared by all tasks, never batched).
            need_grad: Compute the meta-gradient (else only the loss and metric).
            functorch: Use ``torch.func`` transforms (required under ``vmap``).
            support_x, support_y, query_x, query_y: One task's tensors.

        Returns:
            ``(query_loss, metric, support_losses)`` with ``need_grad`` followed by the
            meta-gradient, a :class:`MetaParams` of gradients.
        """
        cfg = self.config

        def adapt(m: MetaParams, differentiate: Differentiate) -> tuple[Params, Tensor]:
            return self._adapt(m, support_x, support_y, cfg.inner_steps, cfg.first_order, differentiate)

        def query(adapted: Params) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            out = predict(self._forward, adapted, support_x, query_x, self._task_norm)
            loss = task_loss(out, query_y)
            return loss, (loss.detach(), task_metric(out, query_y))

        if not need_grad:
            adapted, support_losses = adapt(meta, func_grad)
            _, (loss, metric) = query(adapted)
            return loss, metric, support_losses
        meta_grad, (loss, metric), support_losses = task_meta_gradient(adapt, query, meta, functorch)
        return loss, metric, support_losses, meta_grad

    def meta_loss(self, batch: EpisodeBatch | list[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Mean query loss after adaptation, over the tasks of ``batch``.

        Args:
            batch: Tasks of equal shape, ``support_x`` ``(n_tasks, n_support, *x_shape)``,
                ``query_x`` ``(n_tasks, n_query, *x_shape)``, targets likewise; or a list of
                episodes, of different shapes too (mapped by the loop or the threads: a
                ``vmap`` task mode falls back to the loop for it).

        Returns:
            ``(loss, metrics)``: a scalar whose ``backward()`` deposits the meta-gradient in
            the parameters, and floats ``loss`` and ``accuracy`` (or ``mse``) on the query sets.

        Raises:
            FloatingPointError: if a support or query loss is NaN/inf (names task and step).
        """
        tasks: Tasks = as_batch(batch)
        first = tasks[0]  # the device and the kind of targets
        meta = self.meta_params()
        leaves = [*meta.params.values(), *meta.rule.values()]
        need_grad = torch.is_grad_enabled() and any(p.requires_grad for p in leaves)
        task_mode = resolve_task_mode(self.config.task_mode, first.support_x.device, self.backbone,
                                      second_order=need_grad and not self.config.first_order)
        task_step = partial(self._task_step, meta, need_grad, task_mode == "vmap")
        out = map_tasks(task_step, tasks, task_mode, self.config.chunk_size)
        losses, metrics, support_losses = out[:3]  # (n_tasks,), (n_tasks,), (n_tasks, steps)
        check_finite(support_losses, losses)
        value = losses.mean()
        if need_grad:
            meta_grad: MetaParams = out[3]  # the tasks' meta-gradients, stacked (n_tasks, ...)
            grads = [g.mean(0) for g in (*meta_grad.params.values(), *meta_grad.rule.values())]
            value = attach_gradients(value, leaves, grads)
        return value, {"loss": float(losses.mean()), metric_name(first.query_y): float(metrics.mean())}

    def adapt(self, support_x: Tensor, support_y: Tensor) -> AdaptedPredictor:
        """Adapt to one task with ``eval_inner_steps`` steps; the meta-parameters are untouched.

        Args:
            support_x: ``(n_support, *x_shape)``.
            support_y: ``(n_support,)`` labels or ``(n_support, *y_shape)`` targets.

        Returns:
            A predictor mapping ``query_x`` ``(n, *x_shape)`` to outputs ``(n, ...)``.
        """
        steps = self.config.eval_inner_steps or self.config.inner_steps
        meta = MetaParams(*(detach(d) for d in self.meta_params()))
        adapted, support_losses = self._adapt(meta, support_x, support_y, steps, first_order=True,
                                              differentiate=autograd_grad)
        check_finite(support_losses[None])
        return AdaptedPredictor(self._forward, detach(adapted), support_x, self._task_norm)
