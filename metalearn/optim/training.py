"""Meta-training a learned rule: truncated backpropagation through unrolled optimisation.

Andrychowicz et al. 2016 (arXiv:1606.04474) meta-train an update rule on a family of problems
(:func:`train_learned_rule`: horizon 100, unroll 20, Adam) and then use it as the optimiser of
new problems (:class:`~metalearn.optim.LearnedOptimizer`). :func:`unroll` runs any
:class:`~metalearn.optim.update_rules.UpdateRule` on an optimisation problem, with or without
the graph into the rule's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metalearn.optim.learned_rules import LearnedRule
from metalearn.optim.problems import Optimizee
from metalearn.optim.update_rules import State, UpdateRule
from metalearn.types import Params


def _detach(tree):
    """Detach every tensor of ``tree`` (tensors in dicts, tuples and ``NamedTuple`` states)."""
    if isinstance(tree, Tensor):
        return tree.detach()
    if isinstance(tree, dict):
        return {k: _detach(v) for k, v in tree.items()}
    items = [_detach(v) for v in tree]
    return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)


def unroll(rule: UpdateRule, loss_fn: Callable[[Params], Tensor], params: Params, state: State,
           steps: int, *, meta: bool = False,
           second_order: bool = False) -> tuple[Params, State, Tensor]:
    """Run ``steps`` steps of ``rule`` on ``loss_fn`` from ``params``.

    Args:
        rule: The update rule.
        loss_fn: ``loss_fn(params) -> (n_tasks,)``.
        params: Starting point, name -> tensor.
        state: ``rule``'s state at ``params``.
        steps: Number of updates.
        meta: Keep the graph from the rule's parameters to the losses (meta-training); without
            it every step is detached and the rule runs under ``no_grad``.
        second_order: With ``meta``, differentiate through the optimizee gradients too (the
            paper drops these terms; exact meta-gradients need them).

    Returns:
        ``(params, state, losses)`` with ``losses`` ``(steps + 1, n_tasks)``: the loss at the
        start point and after each update.

    Raises:
        ValueError: if a parameter gets no gradient from ``loss_fn``.
    """
    losses = []
    for t in range(steps + 1):
        with torch.enable_grad():
            leaves = {k: v if meta and v.requires_grad else v.detach().requires_grad_()
                      for k, v in params.items()}
            loss = loss_fn(leaves)
        losses.append(loss if meta else loss.detach())
        if t == steps:
            break
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True,
                                    retain_graph=meta, create_graph=meta and second_order)
        missing = [k for k, gr in zip(leaves, grads) if gr is None]
        if missing:
            raise ValueError(f"parameters {missing} get no gradient from the loss: leave them out "
                             "of the optimised parameters or make the loss use them")
        grads = dict(zip(leaves, grads if meta and second_order else [gr.detach() for gr in grads]))
        with torch.set_grad_enabled(meta):
            updates, state = rule.update(grads, state, leaves)
            params = {k: v + updates[k] for k, v in leaves.items()}
        if not meta:
            params, state = _detach(params), _detach(state)
    return params, state, torch.stack(losses)


@dataclass
class RuleTrainingConfig:
    """Truncated backpropagation through unrolled optimisation (Andrychowicz et al. 2016:
    horizon 100, unroll 20, Adam; batches of 128 quadratics in their released code)."""

    horizon: int = 100
    """Optimizee steps per trajectory (a fresh batch of problems each)."""
    unroll: int = 20
    """Steps per truncation: one meta-update every ``unroll`` steps; at most ``horizon``."""
    trajectories: int = 100
    """Number of trajectories (meta-updates: ``trajectories * ceil(horizon / unroll)``)."""
    n_tasks: int = 128
    """Problems optimised side by side in each trajectory."""
    meta_lr: float = 1e-3
    """Adam learning rate for the rule's parameters."""
    max_grad_norm: float | None = 1.0
    """Clip the meta-gradient to this global norm (None: no clipping)."""
    second_order: bool = False
    """Differentiate through the optimizee gradients (the paper does not)."""
    seed: int = 0
    """Seeds the problems drawn."""
    eval_every: int = 10
    """With validation problems, evaluate every this many trajectories and keep the best rule."""

    def __post_init__(self) -> None:
        for name in ("horizon", "unroll", "trajectories", "n_tasks", "eval_every"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.unroll > self.horizon:
            raise ValueError(f"unroll ({self.unroll}) is longer than the horizon ({self.horizon}): a "
                             "truncation cannot span more steps than a trajectory has; set "
                             "unroll <= horizon (the paper uses unroll 20 over horizon 100)")
        if not (math.isfinite(self.meta_lr) and self.meta_lr > 0):
            raise ValueError(f"meta_lr must be a finite number > 0, got {self.meta_lr!r}")


def evaluate_rule(rule_module: LearnedRule, problem: Optimizee, steps: int) -> Tensor:
    """Losses ``(steps + 1, n_tasks)`` of ``rule_module``'s rule run for ``steps`` on ``problem``."""
    rule = rule_module.rule()
    return unroll(rule, problem.loss, problem.params, rule.init(problem.params), steps)[2]


def train_learned_rule(rule_module: LearnedRule, family, config: RuleTrainingConfig | None = None,
                       callback: Callable[[int, float], None] | None = None,
                       validation: Optimizee | None = None) -> list[float]:
    """Meta-train ``rule_module``'s parameters in place on problems drawn from ``family``.

    Each trajectory draws ``n_tasks`` problems and optimises them for ``horizon`` steps; every
    ``unroll`` steps the mean loss along the truncation (after each update) is backpropagated
    into the rule's parameters and Adam takes a step; parameters and rule state are then
    detached and the trajectory goes on. Meta-training of LSTM optimisers is noisy, so with
    ``validation`` problems the rule is evaluated every ``eval_every`` trajectories (mean loss
    over the horizon) and the best one is kept, as the paper's released code does.

    Args:
        rule_module: The rule module to train (its device is used for the problems).
        family: Has ``sample(n_tasks, generator, device) -> Optimizee``.
        config: Defaults to :class:`RuleTrainingConfig()`.
        callback: Called as ``callback(meta_step, meta_loss)`` after every meta-update.
        validation: Problems to select the best rule on (None: keep the last one).

    Returns:
        The meta-loss of every meta-update.

    Raises:
        FloatingPointError: if a meta-loss is NaN/inf (the optimizee diverged); ``rule_module``
            is then left at the best validated rule so far, if any.
    """
    cfg = config or RuleTrainingConfig()
    device = next(rule_module.parameters()).device
    g = torch.Generator().manual_seed(cfg.seed)
    adam = torch.optim.Adam(rule_module.parameters(), lr=cfg.meta_lr)
    history: list[float] = []
    best = (math.inf, None)

    def check() -> None:
        nonlocal best
        score = evaluate_rule(rule_module, validation, cfg.horizon)[1:].mean().item()
        if score < best[0]:  # NaN never wins
            best = (score, {k: v.detach().clone() for k, v in rule_module.state_dict().items()})

    try:
        for trajectory in range(cfg.trajectories):
            problem = family.sample(cfg.n_tasks, g, device)
            params = problem.params
            state = rule_module.rule().init(params)
            for start in range(0, cfg.horizon, cfg.unroll):
                steps = min(cfg.unroll, cfg.horizon - start)
                params, state, losses = unroll(rule_module.rule(), problem.loss, params, state, steps,
                                               meta=True, second_order=cfg.second_order)
                meta_loss = losses[1:].mean()
                if not torch.isfinite(meta_loss):
                    raise FloatingPointError(
                        f"meta-loss became {meta_loss.item()} in trajectory {trajectory}, truncation "
                        f"starting at step {start}: "
                        "the optimizee diverged under the learned rule. Reduce the unroll length or the "
                        f"meta learning rate (meta_lr={cfg.meta_lr}), or the rule's output_scale")
                adam.zero_grad()
                meta_loss.backward()
                if cfg.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(rule_module.parameters(), cfg.max_grad_norm)
                adam.step()
                params, state = _detach(params), _detach(state)
                history.append(meta_loss.item())
                if callback is not None:
                    callback(len(history), history[-1])
            if validation is not None and ((trajectory + 1) % cfg.eval_every == 0
                                           or trajectory + 1 == cfg.trajectories):
                check()
    finally:
        # Also on FloatingPointError: an interrupted run keeps its best validated rule.
        if best[1] is not None:
            rule_module.load_state_dict(best[1])
    return history
