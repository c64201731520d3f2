"""Learned optimizers on ordinary optimisation problems: training one, and running one.

Andrychowicz et al. 2016 (arXiv:1606.04474) meta-train an update rule on a family of problems
(:func:`meta_train`: truncated backpropagation through unrolled optimisation, horizon 100,
unroll 20) and then use it as the optimiser of new problems. Problem families, each a batch of
independent problems with a leading task dimension: :class:`QuadraticFamily` (the paper's
``||W theta - y||^2``), :class:`BlobMLPFamily` (a small MLP on sampled Gaussian-blob
classification tasks), :class:`SinusoidMLPFamily` (an MLP regressing a sinusoid of
:class:`metalearn.data.SinusoidTasks`). The rules themselves live in
:mod:`metalearn.algorithms.learned_optimizer`.

:class:`LearnedOptimizer` is a ``torch.optim.Optimizer`` that runs a rule (for example a
:class:`~metalearn.algorithms.learned_optimizer.LSTMRule` meta-trained by :func:`meta_train`)
in an ordinary training loop. The rule is used as it is: its parameters are read, never
changed. Its per-parameter state (the LSTM's hidden states, the MLP rule's momentum) lives in
``optimizer.state`` and goes through ``state_dict()`` / ``load_state_dict()`` like Adam's
moments; save the rule module itself with its own ``state_dict()``.

Examples:
    >>> import torch
    >>> from metalearn.algorithms.learned_optimizer import LSTMRule
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = LearnedOptimizer(model.parameters(), LSTMRule())
    >>> loss = model(torch.randn(8, 3)).pow(2).mean()
    >>> loss.backward(); opt.step(); opt.zero_grad()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.learned_optimizer import LearnedRule
from metalearn.algorithms.update_rules import UpdateRule
from metalearn.types import Params


class LearnedOptimizer(torch.optim.Optimizer):
    """Apply ``rule`` to the ``.grad`` of ``params`` at every ``step()``.

    Args:
        params: Tensors to optimise, or ``(name, tensor)`` pairs such as
            ``model.named_parameters()`` (names matter for rules keyed by name, like
            :class:`~metalearn.algorithms.learned_optimizer.MetaSGDRule`; otherwise tensors are
            named ``"0"``, ``"1"``, ...).
        rule: The learned rule module; its parameters are used without gradients.

    Raises:
        ValueError: for an empty parameter list or repeated names.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[tuple[str, Tensor]], rule: LearnedRule):
        items = list(params)
        if not items:
            raise ValueError("LearnedOptimizer got an empty parameter list: pass model.parameters()")
        if all(isinstance(it, tuple) for it in items):
            names, tensors = [n for n, _ in items], [t for _, t in items]
        else:
            names, tensors = [str(i) for i in range(len(items))], items
        if len(set(names)) != len(names):
            raise ValueError("LearnedOptimizer got repeated parameter names")
        super().__init__(tensors, defaults={})
        self.names = names
        self.rule_module = rule

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter with the learned rule.

        Args:
            closure: Optional; re-evaluates the model and returns the loss.

        Raises:
            ValueError: if a parameter has no gradient (names it and says what to do), or the
                rule sits on another device than the parameters.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        tensors = [p for group in self.param_groups for p in group["params"]]
        missing = [n for n, p in zip(self.names, tensors) if p.grad is None]
        if missing:
            raise ValueError(f"parameters {missing} have no gradient: call loss.backward() before "
                             "step(), and leave parameters the loss does not use (or frozen ones) "
                             "out of the optimizer")
        rule_params = {k: v.detach() for k, v in self.rule_module.named_parameters()}
        first = next(iter(rule_params.values()), None)
        if first is not None and any(p.device != first.device for p in tensors):
            raise ValueError(f"the rule's parameters are on {first.device} but the optimised "
                             f"ones on {tensors[0].device}: move the rule with rule.to(device)")
        rule = self.rule_module.rule(rule_params)
        params = dict(zip(self.names, tensors))
        grads = {n: p.grad for n, p in params.items()}
        if any("rule_state" not in self.state[p] for p in tensors):
            state = rule.init(params)
        else:
            state = {n: self.state[p]["rule_state"] for n, p in params.items()}
        updates, state = rule.update(grads, state, params)
        for n, p in params.items():
            p.add_(updates[n])
            self.state[p]["rule_state"] = state[n]
        return loss


# --------------------------------------------------------------------------------------------
# Optimizee families: batches of independent problems, each tensor with a leading task dim.


@dataclass
class Optimizee:
    """``n_tasks`` independent problems optimised together.

    Attributes:
        params: Starting point; every tensor has a leading task dimension ``(n_tasks, ...)``.
        loss: ``loss(params) -> (n_tasks,)``, one loss per problem (a problem's loss depends
            only on its own slice, so the gradient of the sum is every problem's own gradient).
    """

    params: Params
    loss: Callable[[Params], Tensor]


@dataclass(frozen=True)
class QuadraticFamily:
    """``f(theta) = ||W theta - y||^2`` with ``W ~ N(0, 1)^{dim x dim}``, ``y ~ N(0, 1)^dim``,
    ``theta_0 ~ N(0, init_std^2)`` (the paper's section 3.1; 10 dims, ``init_std`` 0.01 as in
    its released code)."""

    dim: int = 10
    init_std: float = 0.01

    def sample(self, n_tasks: int, g: torch.Generator, device: torch.device | str = "cpu") -> Optimizee:
        w = torch.randn(n_tasks, self.dim, self.dim, generator=g).to(device)
        y = torch.randn(n_tasks, self.dim, generator=g).to(device)
        theta = (self.init_std * torch.randn(n_tasks, self.dim, generator=g)).to(device)

        def loss(params: Params) -> Tensor:
            return (torch.einsum("tij,tj->ti", w, params["theta"]) - y).pow(2).sum(-1)

        return Optimizee({"theta": theta}, loss)


def _mlp_params(sizes: list[int], n_tasks: int, g: torch.Generator) -> Params:
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default initialisation
        params[f"w{i}"] = (torch.rand(n_tasks, fan_in, fan_out, generator=g) * 2 - 1) * bound
        params[f"b{i}"] = (torch.rand(n_tasks, 1, fan_out, generator=g) * 2 - 1) * bound
    return params


def _mlp(params: Params, x: Tensor, activation: Callable[[Tensor], Tensor]) -> Tensor:
    """Per-task MLP: ``x`` ``(n_tasks, n, in)`` -> ``(n_tasks, n, out)``."""
    n_layers = len(params) // 2
    for i in range(n_layers):
        x = torch.baddbmm(params[f"b{i}"], x, params[f"w{i}"])
        if i < n_layers - 1:
            x = activation(x)
    return x


@dataclass(frozen=True)
class BlobMLPFamily:
    """Train a ``in_features-hidden-n_classes`` sigmoid MLP (the paper's MNIST net is 20 sigmoid
    units) on a sampled Gaussian-blob task: class means ``N(0, I)``, points ``mean + noise *
    N(0, I)``, full-batch cross-entropy on ``n_points`` points."""

    in_features: int = 10
    n_classes: int = 5
    hidden: int = 20
    n_points: int = 256
    noise: float = 2.0

    def sample(self, n_tasks: int, g: torch.Generator, device: torch.device | str = "cpu") -> Optimizee:
        means = torch.randn(n_tasks, self.n_classes, self.in_features, generator=g)
        labels = torch.arange(self.n_points) % self.n_classes
        x = means[:, labels] + self.noise * torch.randn(n_tasks, self.n_points, self.in_features, generator=g)
        x, targets = x.to(device), labels.repeat(n_tasks).to(device)
        params = _mlp_params([self.in_features, self.hidden, self.n_classes], n_tasks, g)

        def loss(params: Params) -> Tensor:
            logits = _mlp(params, x, torch.sigmoid).reshape(-1, self.n_classes)
            return F.cross_entropy(logits, targets, reduction="none").view(n_tasks, -1).mean(1)

        return Optimizee({k: v.to(device) for k, v in params.items()}, loss)


@dataclass(frozen=True)
class SinusoidMLPFamily:
    """Fit a ReLU MLP ``1-hidden-1`` to ``n_points`` points of a sinusoid drawn from
    :class:`metalearn.data.SinusoidTasks` (mean squared error)."""

    hidden: tuple[int, ...] = (40, 40)
    n_points: int = 20

    def sample(self, n_tasks: int, g: torch.Generator, device: torch.device | str = "cpu") -> Optimizee:
        from metalearn.data import SinusoidTasks

        batch = SinusoidTasks().sample_batch(n_tasks, self.n_points, 0, g)
        x, y = batch.support_x.to(device), batch.support_y.to(device)
        params = _mlp_params([1, *self.hidden, 1], n_tasks, g)

        def loss(params: Params) -> Tensor:
            return (_mlp(params, x, F.relu) - y).pow(2).mean((1, 2))

        return Optimizee({k: v.to(device) for k, v in params.items()}, loss)


# --------------------------------------------------------------------------------------------
# Unrolled optimisation and truncated-BPTT meta-training.


def _detach(tree):
    if isinstance(tree, Tensor):
        return tree.detach()
    if isinstance(tree, dict):
        return {k: _detach(v) for k, v in tree.items()}
    return type(tree)(_detach(v) for v in tree)


def unroll(rule: UpdateRule, loss_fn: Callable[[Params], Tensor], params: Params, state,
           steps: int, *, meta: bool = False, second_order: bool = False):
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
class MetaTrainConfig:
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


def evaluate_rule(optimizer: LearnedRule, problem: Optimizee, steps: int) -> Tensor:
    """Losses ``(steps + 1, n_tasks)`` of ``optimizer``'s rule run for ``steps`` on ``problem``."""
    rule = optimizer.rule()
    return unroll(rule, problem.loss, problem.params, rule.init(problem.params), steps)[2]


def meta_train(optimizer: LearnedRule, family, config: MetaTrainConfig | None = None,
               callback: Callable[[int, float], None] | None = None,
               validation: Optimizee | None = None) -> list[float]:
    """Meta-train ``optimizer``'s parameters in place on problems drawn from ``family``.

    Each trajectory draws ``n_tasks`` problems and optimises them for ``horizon`` steps; every
    ``unroll`` steps the mean loss along the truncation (after each update) is backpropagated
    into the rule's parameters and Adam takes a step; parameters and rule state are then
    detached and the trajectory goes on. Meta-training of LSTM optimisers is noisy, so with
    ``validation`` problems the rule is evaluated every ``eval_every`` trajectories (mean loss
    over the horizon) and the best one is kept, as the paper's released code does.

    Args:
        optimizer: The rule module to train (its device is used for the problems).
        family: Has ``sample(n_tasks, generator, device) -> Optimizee``.
        config: Defaults to :class:`MetaTrainConfig()`.
        callback: Called as ``callback(meta_step, meta_loss)`` after every meta-update.
        validation: Problems to select the best rule on (None: keep the last one).

    Returns:
        The meta-loss of every meta-update.

    Raises:
        FloatingPointError: if a meta-loss is NaN/inf (the optimizee diverged); ``optimizer``
            is then left at the best validated rule so far, if any.
    """
    cfg = config or MetaTrainConfig()
    device = next(optimizer.parameters()).device
    g = torch.Generator().manual_seed(cfg.seed)
    adam = torch.optim.Adam(optimizer.parameters(), lr=cfg.meta_lr)
    history: list[float] = []
    best = (math.inf, None)

    def check() -> None:
        nonlocal best
        score = evaluate_rule(optimizer, validation, cfg.horizon)[1:].mean().item()
        if score < best[0]:  # NaN never wins
            best = (score, {k: v.detach().clone() for k, v in optimizer.state_dict().items()})

    try:
        for trajectory in range(cfg.trajectories):
            problem = family.sample(cfg.n_tasks, g, device)
            params = problem.params
            state = optimizer.rule().init(params)
            for start in range(0, cfg.horizon, cfg.unroll):
                steps = min(cfg.unroll, cfg.horizon - start)
                params, state, losses = unroll(optimizer.rule(), problem.loss, params, state, steps,
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
                    nn.utils.clip_grad_norm_(optimizer.parameters(), cfg.max_grad_norm)
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
            optimizer.load_state_dict(best[1])
    return history
