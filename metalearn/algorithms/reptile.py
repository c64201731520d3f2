"""Reptile, serial and batched.

Nichol, Achiam and Schulman, "On First-Order Meta-Learning Algorithms", arXiv:1803.02999, 2018.

For each task, run ``inner_steps`` steps of SGD on its support set from the meta-parameters
``theta`` to reach ``phi``; then move ``theta`` towards the adapted weights:
serial (Algorithm 1) ``theta <- theta + eps * (phi - theta)`` task after task; batched
(Algorithm 2) ``theta <- theta + eps * mean_i(phi_i - theta)``. The outer step size ``eps`` is
annealed linearly from ``outer_lr`` to ``outer_lr_final`` over ``anneal_steps`` meta-updates.

``meta_loss`` returns the mean post-adaptation query loss with the gradient
``theta - theta_new`` attached, so a training loop with plain SGD at learning rate 1 performs
exactly the Reptile update (other optimisers treat it as a meta-gradient, as learn2learn's
example does). ``outer_step`` applies the update in place without an optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metalearn.algorithms.checks import Tasks, as_batch, check_backbone, check_finite, check_steps
from metalearn.algorithms.functional import (
    AdaptedPredictor,
    attach_gradients,
    autograd_grad,
    detach,
    func_grad,
    inner_loop,
    make_forward,
    predict,
    uses_task_norm,
)
from metalearn.algorithms.losses import metric_name, task_loss, task_metric
from metalearn.algorithms.task_map import TaskMode, check_task_mode, map_tasks, resolve_task_mode
from metalearn.optim.update_rules import check_lr, sgd
from metalearn.types import Episode, EpisodeBatch, Params


@dataclass
class ReptileConfig:
    """Hyperparameters of :class:`Reptile`."""

    inner_lr: float = 0.1
    """Inner SGD step size."""
    inner_steps: int = 5
    """Inner SGD steps per task during meta-training."""
    eval_inner_steps: int | None = None
    """Inner steps in ``adapt``; ``None``: same as ``inner_steps``."""
    outer_lr: float = 1.0
    """Outer step size eps at the start."""
    outer_lr_final: float | None = None
    """Outer step size reached after ``anneal_steps`` meta-updates; ``None``: constant."""
    anneal_steps: int = 0
    """Meta-updates over which eps is annealed linearly (0: no annealing)."""
    serial: bool = False
    """Serial Reptile (move theta after each task) instead of batched (average the tasks)."""
    task_mode: TaskMode = "auto"
    """Batched version: ``loop``, ``threads``, ``vmap`` or ``auto`` (vmap on CUDA and for fully
    connected backbones on CPU, else the loop); a list of episodes of different shapes is never
    vmapped (``vmap`` falls back to the loop)."""


class Reptile(nn.Module):
    """Reptile over any backbone without running statistics.

    Args:
        backbone: Maps inputs ``(n, *x_shape)`` to logits or predictions; its parameters are
            the meta-parameters.
        config: Hyperparameters; defaults to :class:`ReptileConfig()`.

    Examples:
        >>> from metalearn.models import MLP
        >>> from metalearn.types import Episode, EpisodeBatch
        >>> algo = Reptile(MLP(1, (8,), out_features=1), ReptileConfig(inner_lr=0.01))
        >>> ep = Episode(torch.randn(5, 1), torch.randn(5, 1), torch.randn(7, 1), torch.randn(7, 1))
        >>> metrics = algo.outer_step(EpisodeBatch.stack([ep, ep]))
        >>> int(algo.step), sorted(metrics)
        (1, ['loss', 'mse'])
    """

    def __init__(self, backbone: nn.Module, config: ReptileConfig | None = None):
        super().__init__()
        self.config = config = config or ReptileConfig()
        check_lr(config.inner_lr)
        check_lr(config.outer_lr, "outer learning rate")
        if config.outer_lr_final is not None:
            check_lr(config.outer_lr_final, "final outer learning rate")
        check_steps(config.inner_steps, "inner_steps")
        if config.eval_inner_steps is not None:
            check_steps(config.eval_inner_steps, "eval_inner_steps")
        check_task_mode(config.task_mode)
        self.backbone = check_backbone(backbone)
        self._forward = make_forward(backbone)
        self._task_norm = uses_task_norm(backbone)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        """The backbone at the meta-parameters (no adaptation)."""
        return self.backbone(x)

    def outer_lr_now(self) -> float:
        """The outer step size eps at the current meta-update."""
        cfg = self.config
        if cfg.outer_lr_final is None or cfg.anneal_steps <= 0:
            return cfg.outer_lr
        frac = min(int(self.step) / cfg.anneal_steps, 1.0)
        return cfg.outer_lr + frac * (cfg.outer_lr_final - cfg.outer_lr)

    def _task(self, params: Params, functorch: bool = False):
        cfg, forward, rule = self.config, self._forward, sgd(self.config.inner_lr)
        differentiate = func_grad if functorch else autograd_grad

        def task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            phi, inner = inner_loop(forward, params, sx, sy, rule, cfg.inner_steps,
                                    first_order=True, differentiate=differentiate)
            out = predict(forward, phi, sx, qx, self._task_norm)
            return phi, task_loss(out, qy).detach(), task_metric(out, qy), inner

        return task

    def _new_params(self, tasks: Tasks) -> tuple[Params, dict[str, float]]:
        """Reptile's target ``theta_new`` for ``tasks`` and the query metrics."""
        theta = detach(dict(self.backbone.named_parameters()))
        eps = self.outer_lr_now()
        first = tasks[0]  # the device and the kind of targets
        if self.config.serial:
            outs = []
            for ep in tasks:
                phi, *rest = self._task(theta)(ep.support_x, ep.support_y, ep.query_x, ep.query_y)
                theta = {k: theta[k] + eps * (phi[k] - theta[k]) for k in theta}
                outs.append(rest)
            losses, metrics, inner = (torch.stack(x) for x in zip(*outs))
        else:
            task_mode = resolve_task_mode(self.config.task_mode, first.support_x.device, self.backbone)
            task = self._task(theta, functorch=task_mode == "vmap")
            phi, losses, metrics, inner = map_tasks(task, tasks, task_mode)
            theta = {k: theta[k] + eps * (phi[k].mean(0) - theta[k]) for k in theta}
        check_finite(inner, losses)
        return theta, {"loss": float(losses.mean()), metric_name(first.query_y): float(metrics.mean())}

    def meta_loss(self, batch: EpisodeBatch | list[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Mean post-adaptation query loss, with gradient ``theta - theta_new`` attached.

        Args:
            batch: Tasks of equal shape (see :class:`~metalearn.types.EpisodeBatch`), or a
                list of episodes of different shapes too (mapped by the loop or the threads).

        Returns:
            ``(loss, metrics)``; ``metrics`` has ``loss`` and ``accuracy`` (or ``mse``).
            With gradients enabled the outer step counter advances by one.
        """
        tasks = as_batch(batch)
        new, metrics = self._new_params(tasks)
        value = torch.tensor(metrics["loss"], device=tasks[0].support_x.device)
        if not torch.is_grad_enabled():
            return value, metrics
        self.step += 1
        names, params = zip(*self.backbone.named_parameters())
        return attach_gradients(value, params, [p.detach() - new[n] for n, p in zip(names, params)]), metrics

    @torch.no_grad()
    def outer_step(self, batch: EpisodeBatch | list[Episode]) -> dict[str, float]:
        """Apply one Reptile meta-update to the backbone in place; returns the query metrics."""
        new, metrics = self._new_params(as_batch(batch))
        for name, p in self.backbone.named_parameters():
            p.copy_(new[name])
        self.step += 1
        return metrics

    def adapt(self, support_x: Tensor, support_y: Tensor) -> AdaptedPredictor:
        """Fine-tune on one support set (``eval_inner_steps`` SGD steps); theta is untouched.

        Args:
            support_x: ``(n_support, *x_shape)``.
            support_y: ``(n_support,)`` labels or ``(n_support, *y_shape)`` targets.
        """
        steps = self.config.eval_inner_steps or self.config.inner_steps
        params = detach(dict(self.backbone.named_parameters()))
        phi, inner = inner_loop(self._forward, params, support_x, support_y,
                                sgd(self.config.inner_lr), steps, first_order=True,
                                differentiate=autograd_grad)
        check_finite(inner[None])
        return AdaptedPredictor(self._forward, detach(phi), support_x, self._task_norm)
