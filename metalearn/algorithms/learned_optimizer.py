"""Learned optimizers: update rules whose own parameters are meta-learned.

Andrychowicz, Denil, Gomez, Hoffman, Pfau, Schaul, Shillingford and de Freitas, "Learning to
learn by gradient descent by gradient descent", NeurIPS 2016 (arXiv:1606.04474).

The optimiser ``m_phi`` maps each coordinate's gradient to that coordinate's update,
``theta_{t+1} = theta_t + m_phi(grad f(theta_t), h_t)``. It is a two-layer LSTM with 20 hidden
units shared by every coordinate (coordinate-wise: the coordinates are its batch), fed the
gradient through the paper's log/sign preprocessing, its output scaled by 0.1. ``phi`` is
learned by minimising the sum of the optimizee losses along unrolled optimisation trajectories
(:func:`meta_train`): truncated backpropagation through time, one meta-update every ``unroll``
steps of a ``horizon``-step trajectory, with the paper's approximation of treating the
optimizee gradients as constants (``second_order=False``).

Every rule here is an :class:`~metalearn.algorithms.update_rules.UpdateRule` built by
``module.rule(params)``, whose state is a dict keyed like the optimised parameters, so the same
rule runs as MAML's inner loop (:class:`LearnedOptimizerMAML`, meta-learned jointly with the
initialisation), in :func:`meta_train`, and in an ordinary training loop through
:class:`metalearn.optim.LearnedOptimizer`. References to measure the LSTM against:
:class:`MLPRule` (a per-parameter MLP on gradient and momentum features) and
:class:`MetaSGDRule` (Meta-SGD's learned per-parameter rates). Optimizee families for
meta-training: :class:`QuadraticFamily` (the paper's ``||W theta - y||^2``),
:class:`BlobMLPFamily` (small MLPs on sampled Gaussian-blob classification tasks) and
:class:`SinusoidMLPFamily` (an MLP regressing a sinusoid of :class:`metalearn.data.SinusoidTasks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.maml import MAML, MAMLConfig
from metalearn.algorithms.update_rules import UpdateRule, meta_sgd
from metalearn.types import Params


def preprocess_gradients(grad: Tensor, p: float = 10.0) -> Tensor:
    """The paper's gradient encoding (appendix A): ``(log|g| / p, sign g)`` if ``|g| >= e^-p``,
    else ``(-1, e^p g)``. Keeps magnitudes spanning many orders in a range an LSTM can read.

    Args:
        grad: Gradients of any shape ``(...)``.
        p: Sharpness ``p > 0`` (10 in the paper).

    Returns:
        Features of shape ``(..., 2)``.

    Examples:
        >>> preprocess_gradients(torch.tensor([1.0, -1e-6, 0.0]))
        tensor([[ 0.0000,  1.0000],
                [-1.0000, -0.0220],
                [-1.0000,  0.0000]])
    """
    threshold = math.exp(-p)
    big = grad.abs() >= threshold
    # Clamp before the log so the branch torch.where discards has finite gradients too.
    log_part = torch.log(grad.abs().clamp(min=threshold)) / p
    first = torch.where(big, log_part, -torch.ones_like(grad))
    second = torch.where(big, torch.sign(grad), grad * math.exp(p))
    return torch.stack([first, second], dim=-1)


def _flat(tree: Params) -> tuple[Tensor, list[int]]:
    sizes = [t.numel() for t in tree.values()]
    return torch.cat([t.reshape(-1) for t in tree.values()]), sizes


def _unflat(flat: Tensor, like: Params, sizes: list[int]) -> Params:
    return {k: chunk.reshape(v.shape) for (k, v), chunk in zip(like.items(), flat.split(sizes))}


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, p: Params, prefix: str) -> tuple[Tensor, Tensor]:
    """One ``nn.LSTMCell`` step as a pure function of its parameters ``p[prefix + name]``.

    Args:
        x: Inputs ``(n, in)``; h, c: state ``(n, hidden)``.
    """
    gates = (F.linear(x, p[prefix + "weight_ih"], p[prefix + "bias_ih"])
             + F.linear(h, p[prefix + "weight_hh"], p[prefix + "bias_hh"]))
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class LearnedRule(nn.Module):
    """Base of meta-learned rules: ``rule(params)`` builds the update rule from tensors
    ``params`` (default: the module's own parameters, so gradients reach them)."""

    def rule(self, params: Params | None = None) -> UpdateRule:
        raise NotImplementedError

    def own(self, params: Params | None) -> Params:
        return dict(self.named_parameters()) if params is None else params


class LSTMRule(LearnedRule):
    """Coordinate-wise LSTM optimiser (Andrychowicz et al. 2016, section 2.1).

    Args:
        hidden_size: Units per LSTM layer (20 in the paper).
        num_layers: Stacked LSTM layers (2 in the paper).
        output_scale: Multiplies the output (0.1 in the paper).
        p: Gradient preprocessing sharpness (:func:`preprocess_gradients`).

    The state of each optimised tensor of ``n`` entries is ``2 * num_layers`` tensors
    ``(n, hidden_size)``: ``(h_1, c_1, h_2, c_2, ...)``.

    Examples:
        >>> rule = LSTMRule().rule()
        >>> params = {"w": torch.zeros(3)}
        >>> updates, state = rule.update({"w": torch.ones(3)}, rule.init(params), params)
        >>> updates["w"].shape, state["w"][0].shape
        (torch.Size([3]), torch.Size([3, 20]))
    """

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, output_scale: float = 0.1,
                 p: float = 10.0):
        super().__init__()
        self.hidden_size, self.num_layers, self.output_scale, self.p = hidden_size, num_layers, output_scale, p
        self.cells = nn.ModuleList(nn.LSTMCell(2 if i == 0 else hidden_size, hidden_size)
                                   for i in range(num_layers))
        self.head = nn.Linear(hidden_size, 1)

    def rule(self, params: Params | None = None) -> UpdateRule:
        w = self.own(params)
        hidden, layers = self.hidden_size, self.num_layers

        def init(params: Params) -> dict[str, tuple[Tensor, ...]]:
            return {k: tuple(v.new_zeros(v.numel(), hidden) for _ in range(2 * layers))
                    for k, v in params.items()}

        def update(grads: Params, state, params: Params):
            x, sizes = _flat(grads)
            x = preprocess_gradients(x, self.p)
            new = []
            for i in range(layers):
                h = torch.cat([state[k][2 * i] for k in grads])
                c = torch.cat([state[k][2 * i + 1] for k in grads])
                x, c = lstm_cell(x, h, c, w, f"cells.{i}.")
                new += [x, c]
            out = F.linear(x, w["head.weight"], w["head.bias"]).squeeze(-1) * self.output_scale
            split = [t.split(sizes) for t in new]
            new_state = {k: tuple(s[j] for s in split) for j, k in enumerate(grads)}
            return _unflat(out, grads, sizes), new_state

        return UpdateRule(init, update)


class MLPRule(LearnedRule):
    """Reference rule: a per-parameter MLP on preprocessed gradient and momentum.

    The features of each entry are ``preprocess(g)`` and ``preprocess(m)`` with the momentum
    ``m <- beta m + (1 - beta) g``; two ReLU layers of ``hidden_size`` map them to the update,
    times ``output_scale``. The state of each tensor is its momentum (same shape).
    """

    def __init__(self, hidden_size: int = 32, beta: float = 0.9, output_scale: float = 0.1,
                 p: float = 10.0):
        super().__init__()
        self.beta, self.output_scale, self.p = beta, output_scale, p
        self.net = nn.Sequential(nn.Linear(4, hidden_size), nn.ReLU(),
                                 nn.Linear(hidden_size, hidden_size), nn.ReLU(),
                                 nn.Linear(hidden_size, 1))

    def rule(self, params: Params | None = None) -> UpdateRule:
        w = self.own(params)

        def init(params: Params) -> Params:
            return {k: torch.zeros_like(v) for k, v in params.items()}

        def update(grads: Params, state: Params, params: Params):
            momentum = {k: self.beta * state[k] + (1 - self.beta) * g for k, g in grads.items()}
            g, sizes = _flat(grads)
            m, _ = _flat(momentum)
            x = torch.cat([preprocess_gradients(g, self.p), preprocess_gradients(m, self.p)], -1)
            out = torch.func.functional_call(self.net, {k[4:]: v for k, v in w.items()}, (x,))
            return _unflat(out.squeeze(-1) * self.output_scale, grads, sizes), momentum

        return UpdateRule(init, update)


class MetaSGDRule(LearnedRule):
    """Reference rule: Meta-SGD's learned per-parameter rates (Li et al. 2017).

    The rates are stored as ``log_lrs`` (``lr = exp(log_lr)``): over 100-step unrolls a raw
    rate nudged past the stability limit makes the trajectory explode, and in log space a
    meta-optimiser step changes a rate by a fraction of itself instead of by a fixed amount.

    Args:
        shapes: Name -> shape of each optimised tensor (the rates broadcast against it, so a
            leading task dimension may be left out).
        lr: Initial rate of every entry (> 0).
    """

    def __init__(self, shapes: Mapping[str, torch.Size | tuple[int, ...]], lr: float = 0.01):
        super().__init__()
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        self.names = {name: name.replace(".", "__") for name in shapes}
        self.log_lrs = nn.ParameterDict({key: nn.Parameter(torch.full(tuple(shapes[name]), math.log(lr)))
                                         for name, key in self.names.items()})

    def rule(self, params: Params | None = None) -> UpdateRule:
        w = self.own(params)
        inner = meta_sgd({name: w[f"log_lrs.{key}"].exp() for name, key in self.names.items()})

        def init(params: Params) -> dict[str, tuple]:
            unknown = sorted(set(params) - set(self.names))
            if unknown:
                raise KeyError(f"MetaSGDRule has no rates for {unknown}: build it with the shapes "
                               f"of every optimised tensor (it knows {sorted(self.names)})")
            return {k: () for k in params}

        return UpdateRule(init, inner.update)


RULES: dict[str, Callable[..., LearnedRule]] = {"lstm": LSTMRule, "mlp": MLPRule}
"""Rules that need no parameter shapes, by name (for :class:`LearnedOptimizerMAMLConfig`)."""


@dataclass
class LearnedOptimizerMAMLConfig(MAMLConfig):
    """Hyperparameters of :class:`LearnedOptimizerMAML`."""

    inner_lr: float = 0.1
    """Output scale of the learned rule (0.1 in Andrychowicz et al.); not an SGD step size."""
    rule: str = "lstm"
    """The inner rule: ``lstm`` (:class:`LSTMRule`) or ``mlp`` (:class:`MLPRule`)."""
    hidden_size: int = 20
    """Hidden units of the rule (20 for the paper's LSTM)."""


class LearnedOptimizerMAML(MAML):
    """MAML whose inner loop is a learned optimiser, meta-learned jointly with the initialisation.

    The meta-parameters are the backbone's (the initialisation) and the rule's (``optimizer``);
    one meta-gradient reaches both through the unrolled inner loop.

    Args:
        backbone: As for :class:`~metalearn.algorithms.maml.MAML`.
        config: Hyperparameters; defaults to :class:`LearnedOptimizerMAMLConfig()`.
        optimizer: A ready rule module (e.g. one meta-trained by :func:`meta_train`); default:
            a new one from ``config.rule``.
    """

    def __init__(self, backbone: nn.Module, config: LearnedOptimizerMAMLConfig | None = None,
                 optimizer: LearnedRule | None = None):
        config = config or LearnedOptimizerMAMLConfig()
        super().__init__(backbone, config)
        if optimizer is None:
            if config.rule not in RULES:
                raise ValueError(f"unknown rule {config.rule!r}; choose one of {sorted(RULES)}")
            optimizer = RULES[config.rule](hidden_size=config.hidden_size, output_scale=config.inner_lr)
        self.optimizer = optimizer

    def rule_params(self) -> Params:
        """The rule's parameters, keyed as in ``optimizer.named_parameters()``."""
        return dict(self.optimizer.named_parameters())

    def make_rule(self, rule_params: Params) -> UpdateRule:
        """The learned rule evaluated at ``rule_params``."""
        return self.optimizer.rule(rule_params)


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
        FloatingPointError: if a meta-loss is NaN/inf (the optimizee diverged).
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
                    f"meta-loss became {meta_loss.item()} in the truncation starting at step {start}: "
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
    if best[1] is not None:
        optimizer.load_state_dict(best[1])
    return history
