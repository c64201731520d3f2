"""Inner-loop update rules as composable ``(init, update)`` pairs of pure tensor functions.

An :class:`UpdateRule` maps gradients to parameter updates (``params + updates`` is the new
point), optax style: ``init(params) -> state`` and ``update(grads, state, params) -> (updates,
state)``. Rules are plain differentiable tensor code, so MAML differentiates through them and
their own tensors (Meta-SGD's learning rates) are meta-learned like any other parameter.

Every state is a named type, as optax names its states: :class:`EmptyState` for the stateless
rules, :class:`ChainState` for :func:`chain`, and the learned rules' own states
(:mod:`metalearn.optim.learned_rules`). They are ``NamedTuple`` s of tensors, dicts of tensors
and tuples: pytrees that ``torch.func.vmap`` and autograd go through unchanged.

Examples:
    >>> import torch
    >>> params = {"w": torch.tensor([1.0, 2.0])}
    >>> rule = chain(clip_by_global_norm(1.0), sgd(0.5))
    >>> state = rule.init(params)
    >>> updates, state = rule.update({"w": torch.tensor([3.0, 4.0])}, state, params)
    >>> apply_updates(params, updates)["w"]
    tensor([0.7000, 1.6000])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from metalearn.types import Params

State = tuple
"""A rule's state: an instance of one of the ``NamedTuple`` state types (so a tuple)."""


class EmptyState(NamedTuple):
    """The state of a rule that carries nothing between steps (:func:`sgd`, :func:`meta_sgd`,
    :func:`scale`, :func:`clip_by_global_norm`)."""


class ChainState(NamedTuple):
    """The state of :func:`chain`.

    Attributes:
        states: The chained rules' states, in the order of the rules.
    """

    states: tuple[State, ...]


class UpdateRule(NamedTuple):
    """A pure inner-loop optimiser.

    Attributes:
        init: ``init(params) -> state``.
        update: ``update(grads, state, params) -> (updates, new_state)``; the new parameters
            are ``apply_updates(params, updates)``.
    """

    init: Callable[[Params], State]
    update: Callable[[Params, State, Params], tuple[Params, State]]


def check_lr(lr: float, name: str = "inner learning rate") -> float:
    """Return ``lr`` as a float after checking that it is finite and not negative.

    Raises:
        ValueError: naming the bad value and what to pass instead.
    """
    value = float(lr)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {lr!r} (MAML uses 0.4 on "
                         "Omniglot, 0.01 on mini-ImageNet and sinusoids)")
    return value


def apply_updates(params: Params, updates: Params) -> Params:
    """``params + updates`` key by key (keys missing from ``updates`` are kept)."""
    return {k: (p + updates[k] if k in updates else p) for k, p in params.items()}


def _empty(params: Params) -> EmptyState:
    return EmptyState()


def sgd(lr: float) -> UpdateRule:
    """Plain gradient descent: ``updates = -lr * grads``.

    Args:
        lr: Step size, finite and ``>= 0``.
    """
    lr = check_lr(lr)

    def update(grads: Params, state: EmptyState, params: Params) -> tuple[Params, EmptyState]:
        return {k: -lr * g for k, g in grads.items()}, state

    return UpdateRule(_empty, update)


def meta_sgd(lrs: Mapping[str, Tensor]) -> UpdateRule:
    """Per-parameter learning rates (Li et al. 2017): ``updates[k] = -lrs[k] * grads[k]``.

    The one Meta-SGD update of the package: :class:`~metalearn.algorithms.meta_sgd.MetaSGD`
    passes its raw rates, :class:`~metalearn.optim.learned_rules.MetaSGDRule` the exponential
    of its log-rates (each class says why it stores its rates as it does).

    Args:
        lrs: One tensor per adapted parameter, each broadcastable to it (usually the same
            shape). They are meta-parameters: gradients flow into them.
    """

    def update(grads: Params, state: EmptyState, params: Params) -> tuple[Params, EmptyState]:
        return {k: -lrs[k] * g for k, g in grads.items()}, state

    return UpdateRule(_empty, update)


def scale(factor: float) -> UpdateRule:
    """Multiply the incoming updates by ``factor`` (a building block for :func:`chain`)."""

    def update(grads: Params, state: EmptyState, params: Params) -> tuple[Params, EmptyState]:
        return {k: factor * g for k, g in grads.items()}, state

    return UpdateRule(_empty, update)


def clip_by_global_norm(max_norm: float) -> UpdateRule:
    """Rescale the incoming gradients so that their joint L2 norm is at most ``max_norm``."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")

    def update(grads: Params, state: EmptyState, params: Params) -> tuple[Params, EmptyState]:
        norm = torch.sqrt(sum((g * g).sum() for g in grads.values()))
        factor = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
        return {k: g * factor for k, g in grads.items()}, state

    return UpdateRule(_empty, update)


def chain(*rules: UpdateRule) -> UpdateRule:
    """Compose rules left to right: each transforms the previous one's output.

    ``chain(clip_by_global_norm(1.0), sgd(0.4))`` clips the gradients, then takes an SGD step.
    """

    def init(params: Params) -> ChainState:
        return ChainState(tuple(rule.init(params) for rule in rules))

    def update(grads: Params, state: ChainState, params: Params) -> tuple[Params, ChainState]:
        new_states = []
        for rule, s in zip(rules, state.states):
            grads, s = rule.update(grads, s, params)
            new_states.append(s)
        return grads, ChainState(tuple(new_states))

    return UpdateRule(init, update)
