"""Learned update rules: update rules whose own parameters are meta-learned.

Andrychowicz, Denil, Gomez, Hoffman, Pfau, Schaul, Shillingford and de Freitas, "Learning to
learn by gradient descent by gradient descent", NeurIPS 2016 (arXiv:1606.04474).

The optimiser ``m_phi`` maps each coordinate's gradient to that coordinate's update,
``theta_{t+1} = theta_t + m_phi(grad f(theta_t), h_t)``. It is a two-layer LSTM with 20 hidden
units shared by every coordinate (coordinate-wise: the coordinates are its batch), fed the
gradient through the paper's log/sign preprocessing, its output scaled by 0.1. ``phi`` is
learned by minimising the sum of the optimizee losses along unrolled optimisation trajectories
(:func:`metalearn.optim.train_learned_rule`): truncated backpropagation through time, one
meta-update every ``unroll`` steps of a ``horizon``-step trajectory, with the paper's
approximation of treating the optimizee gradients as constants (``second_order=False``).

Every rule here is an :class:`~metalearn.optim.update_rules.UpdateRule` built by
``module.rule(params)``, whose state is a :class:`LearnedRuleState` (one entry per optimised
tensor), so the same rule runs as MAML's inner loop
(:class:`~metalearn.algorithms.learned_optimizer.LearnedOptimizerMAML`, meta-learned jointly
with the initialisation), in :func:`metalearn.optim.train_learned_rule`, and in an ordinary
training loop through :class:`metalearn.optim.LearnedOptimizer`. References to measure the LSTM
against: :class:`MLPRule` (a per-parameter MLP on gradient and momentum features) and
:class:`MetaSGDRule` (Meta-SGD's learned per-parameter rates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.optim.update_rules import UpdateRule, meta_sgd
from metalearn.types import Params


class LearnedRuleState(NamedTuple):
    """The state of a learned rule: the rules are coordinate-wise, so it splits by tensor.

    Attributes:
        per_tensor: Optimised tensor name -> that tensor's state. :class:`LSTMRule`: the tuple
            ``(h_1, c_1, ..., h_L, c_L)`` of ``(n, hidden_size)`` tensors for a tensor of ``n``
            entries; :class:`MLPRule`: the momentum (the tensor's shape); :class:`MetaSGDRule`:
            ``()``. Plain tuples and tensors inside, because
            :class:`~metalearn.optim.LearnedOptimizer` keeps each entry in
            ``torch.optim.Optimizer.state``, whose ``load_state_dict`` rebuilds tuples with
            ``type(value)(iterable)``, which a ``NamedTuple`` does not accept.
    """

    per_tensor: dict[str, Any]


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

    The state (:class:`LearnedRuleState`) of each optimised tensor of ``n`` entries is
    ``2 * num_layers`` tensors ``(n, hidden_size)``: ``(h_1, c_1, h_2, c_2, ...)``.

    Examples:
        >>> rule = LSTMRule().rule()
        >>> params = {"w": torch.zeros(3)}
        >>> updates, state = rule.update({"w": torch.ones(3)}, rule.init(params), params)
        >>> updates["w"].shape, state.per_tensor["w"][0].shape
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

        def init(params: Params) -> LearnedRuleState:
            return LearnedRuleState({k: tuple(v.new_zeros(v.numel(), hidden) for _ in range(2 * layers))
                                     for k, v in params.items()})

        def update(grads: Params, state: LearnedRuleState,
                   params: Params) -> tuple[Params, LearnedRuleState]:
            x, sizes = _flat(grads)
            x = preprocess_gradients(x, self.p)
            new = []
            for i in range(layers):
                h = torch.cat([state.per_tensor[k][2 * i] for k in grads])
                c = torch.cat([state.per_tensor[k][2 * i + 1] for k in grads])
                x, c = lstm_cell(x, h, c, w, f"cells.{i}.")
                new += [x, c]
            out = F.linear(x, w["head.weight"], w["head.bias"]).squeeze(-1) * self.output_scale
            split = [t.split(sizes) for t in new]
            new_state = {k: tuple(s[j] for s in split) for j, k in enumerate(grads)}
            return _unflat(out, grads, sizes), LearnedRuleState(new_state)

        return UpdateRule(init, update)


class MLPRule(LearnedRule):
    """Reference rule: a per-parameter MLP on preprocessed gradient and momentum.

    The features of each entry are ``preprocess(g)`` and ``preprocess(m)`` with the momentum
    ``m <- beta m + (1 - beta) g``; two ReLU layers of ``hidden_size`` map them to the update,
    times ``output_scale``. The state (:class:`LearnedRuleState`) of each tensor is its
    momentum (same shape).
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

        def init(params: Params) -> LearnedRuleState:
            return LearnedRuleState({k: torch.zeros_like(v) for k, v in params.items()})

        def update(grads: Params, state: LearnedRuleState,
                   params: Params) -> tuple[Params, LearnedRuleState]:
            momentum = {k: self.beta * state.per_tensor[k] + (1 - self.beta) * g
                        for k, g in grads.items()}
            g, sizes = _flat(grads)
            m, _ = _flat(momentum)
            x = torch.cat([preprocess_gradients(g, self.p), preprocess_gradients(m, self.p)], -1)
            out = torch.func.functional_call(self.net, {k[4:]: v for k, v in w.items()}, (x,))
            return _unflat(out.squeeze(-1) * self.output_scale, grads, sizes), LearnedRuleState(momentum)

        return UpdateRule(init, update)


class MetaSGDRule(LearnedRule):
    """Reference rule: Meta-SGD's learned per-parameter rates (Li et al. 2017).

    The rates are stored as ``log_lrs`` (``lr = exp(log_lr)``): over 100-step unrolls a raw
    rate nudged past the stability limit makes the trajectory explode, and in log space a
    meta-optimiser step changes a rate by a fraction of itself instead of by a fixed amount.
    :class:`~metalearn.algorithms.meta_sgd.MetaSGD` keeps raw rates instead (the paper's
    parametrisation, for its one to five inner steps: the rates may reach zero or change sign,
    and its reproduced figures and checkpoints hold raw ``lrs``); both make their step with the
    one :func:`~metalearn.optim.update_rules.meta_sgd` rule. The state is a
    :class:`LearnedRuleState` of empty tuples.

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

        def init(params: Params) -> LearnedRuleState:
            unknown = sorted(set(params) - set(self.names))
            if unknown:
                raise KeyError(f"MetaSGDRule has no rates for {unknown}: build it with the shapes "
                               f"of every optimised tensor (it knows {sorted(self.names)})")
            return LearnedRuleState({k: () for k in params})

        def update(grads: Params, state: LearnedRuleState,
                   params: Params) -> tuple[Params, LearnedRuleState]:
            updates, _ = inner.update(grads, inner.init(params), params)
            return updates, state

        return UpdateRule(init, update)


RULES: dict[str, Callable[..., LearnedRule]] = {"lstm": LSTMRule, "mlp": MLPRule}
"""Rules that need no parameter shapes, by name (for
:class:`~metalearn.algorithms.learned_optimizer.LearnedOptimizerMAMLConfig`)."""
