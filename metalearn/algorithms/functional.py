"""The functional core of the gradient-based learners (MAML, Meta-SGD, ANIL, Reptile).

Meta-parameters are the algorithm's own ``nn.Parameter``s; adapted parameters are plain
tensors in a dict passed through :func:`torch.func.functional_call`. The inner loop is written
once, as the pure function :func:`inner_loop` ``(params, support, rule, steps) -> params``, and
used by meta-training and by ``adapt``. A per-task function (adapt, then measure the query loss
and its meta-gradient, :func:`task_meta_gradient`) is mapped over the tasks of a meta-batch by
:mod:`metalearn.algorithms.task_map` (a loop, a pool of threads, or ``torch.func.vmap``).

Meta-gradients are computed per task inside the mapped function (``vmap(vjp(...))``, never
autograd through a vmapped inner ``autograd.grad``: that combination gives wrong second-order
gradients with batch norm), then averaged and attached to the returned loss by
:func:`attach_gradients`, so ``loss.backward()`` in an ordinary training loop fills
``.grad`` exactly. Computing them per task also frees each task's graph at once, which keeps peak
memory at one task's worth.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp

from metalearn.algorithms.losses import task_loss
from metalearn.optim.update_rules import UpdateRule, apply_updates
from metalearn.types import Params

Forward = Callable[..., Tensor]
"""``forward(params, x, n_support=None) -> outputs``: a module as a pure function."""

Differentiate = Callable[..., Callable[[Params], tuple[Params, Any]]]
"""``differentiate(fn, create_graph) -> (params -> (grads, aux))`` for ``fn(params) -> (loss, aux)``."""


def make_forward(module: nn.Module) -> Forward:
    """Wrap ``module`` as ``forward(params, x, n_support=None)`` via ``functional_call``.

    ``n_support`` is passed on only to modules whose ``forward`` accepts it (the metalearn
    backbones, for ``norm="task"``). Buffers of the module are used as they are.

    ``functional_call`` swaps the given tensors into the module while it runs, so calls from
    other threads (task mode ``"threads"``) each use a private copy of the module's structure,
    made once per thread and always given every parameter, so its own copies are never read.
    """
    takes_n_support = "n_support" in inspect.signature(module.forward).parameters
    buffers = dict(module.named_buffers())
    owner = threading.get_ident()
    local = threading.local()

    def forward(params: Params, x: Tensor, n_support: int | None = None) -> Tensor:
        kwargs = {"n_support": n_support} if takes_n_support and n_support is not None else {}
        state = {**buffers, **params} if buffers else params
        if threading.get_ident() == owner:
            return functional_call(module, state, (x,), kwargs)
        replica = getattr(local, "module", None)
        if replica is None:
            replica = local.module = copy.deepcopy(module)
        return functional_call(replica, {**dict(module.named_parameters()), **state}, (x,), kwargs)

    return forward


def uses_task_norm(module: nn.Module) -> bool:
    """True when ``module`` normalises the query with support statistics (``norm="task"``)."""
    return getattr(module, "norm", None) == "task"


def predict(forward: Forward, params: Params, support_x: Tensor, query_x: Tensor,
            task_norm: bool) -> Tensor:
    """Outputs on ``query_x`` ``(n_query, ...)``; with task norm the support rides along.

    With ``task_norm`` the support and query are forwarded together, the first
    ``len(support_x)`` rows providing the normalisation statistics, and the query rows returned.
    """
    if task_norm:
        n = support_x.shape[0]
        return forward(params, torch.cat([support_x, query_x]), n_support=n)[n:]
    return forward(params, query_x)


def func_grad(fn: Callable[[Params], tuple[Tensor, Any]], create_graph: bool = True):
    """Gradient by ``torch.func.grad`` (composes with ``vmap``/``vjp``; ``create_graph`` unused:
    the function transforms keep whatever the enclosing transforms need)."""
    return grad(fn, has_aux=True)


def autograd_grad(fn: Callable[[Params], tuple[Tensor, Any]], create_graph: bool = True):
    """Gradient by ``torch.autograd.grad``: the plain engine, lowest overhead on CPU.

    Tensors of ``params`` that do not require grad are made leaves that do. With
    ``create_graph`` (and a ``params`` tensor that requires grad) the gradient is itself
    differentiable, as second-order MAML needs.
    """

    def wrapped(params: Params) -> tuple[Params, Any]:
        graph = create_graph and any(v.requires_grad for v in params.values())
        with torch.enable_grad():
            leaves = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}
            loss, aux = fn(leaves)
            grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=graph)
        return dict(zip(leaves, grads)), aux

    return wrapped


def inner_loop(forward: Forward, params: Params, support_x: Tensor | None,
               support_y: Tensor | None, rule: UpdateRule, steps: int, *,
               first_order: bool = False, adapt: Sequence[str] | None = None,
               differentiate: Differentiate = func_grad,
               loss: Callable[[Params], Tensor] | None = None) -> tuple[Params, Tensor]:
    """Adapt ``params`` to one task's support set: ``steps`` applications of ``rule``.

    A pure function: nothing is mutated, and the result is differentiable with respect to
    ``params`` (and to tensors the rule closes over) unless ``first_order`` detaches the
    inner gradients. Works unchanged under ``torch.func.vmap``.

    Args:
        forward: The model as a pure function (see :func:`make_forward`).
        params: Starting point, name -> tensor.
        support_x: ``(n_support, *x_shape)``.
        support_y: ``(n_support,)`` labels or ``(n_support, *y_shape)`` targets.
        rule: The inner optimiser.
        steps: Number of gradient steps (0 returns ``params``).
        first_order: Treat inner gradients as constants (FOMAML).
        adapt: Names of the parameters to adapt (default: all); the rest stay fixed.
        differentiate: :func:`func_grad` (required under ``vmap``) or :func:`autograd_grad`.
        loss: ``loss(params) -> scalar`` used instead of
            ``task_loss(forward(params, support_x), support_y)``, for tasks whose support data
            are not ``(x, y)`` pairs (the policy-gradient surrogate of :mod:`metalearn.rl`);
            ``support_x``/``support_y`` may then be ``None``.

    Returns:
        ``(adapted_params, support_losses)`` with ``support_losses`` of shape ``(steps,)``:
        the support loss before each step (for NaN checks and logging).
    """
    names = list(params) if adapt is None else list(adapt)
    fast = {k: params[k] for k in names}
    fixed = {k: v for k, v in params.items() if k not in fast}
    state = rule.init(fast)

    def support_loss(fast_params: Params) -> tuple[Tensor, Tensor]:
        if loss is not None:
            value = loss({**fixed, **fast_params})
        else:
            value = task_loss(forward({**fixed, **fast_params}, support_x), support_y)
        return value, value.detach()

    losses = []
    for _ in range(steps):
        grads, step_loss = differentiate(support_loss, not first_order)(fast)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        updates, state = rule.update(grads, state, fast)
        fast = apply_updates(fast, updates)
        losses.append(step_loss)
    empty = support_x.new_zeros(0) if support_x is not None else torch.zeros(0)
    stacked = torch.stack(losses) if losses else empty
    return {**fixed, **fast}, stacked


def task_meta_gradient(adapt: Callable[[Any, Differentiate], tuple[Params, Tensor]],
                       query: Callable[[Params], tuple[Tensor, Any]], meta: Any,
                       functorch: bool) -> tuple[Any, Any, Tensor]:
    """One task's meta-gradient: adapt, then pull the query gradient back through the inner loop.

    The query forward/backward runs at the (detached) adapted parameters without any graph back
    to ``meta``; its gradient ``v`` is then pulled back through the inner loop (a
    vector-Jacobian product, the only second-order computation). Same result as
    differentiating the query loss through the inner loop, with one graph fewer.

    Args:
        adapt: ``adapt(meta, differentiate) -> (adapted_params, support_losses)``.
        query: ``query(adapted_params) -> (loss, aux)``.
        meta: Pytree of meta-parameters (closed over by the caller, never batched).
        functorch: Use ``torch.func`` transforms (required under ``vmap``) instead of the
            plain autograd engine (faster on CPU).

    Returns:
        ``(meta_grad, aux, support_losses)`` with ``meta_grad`` shaped like ``meta``.
    """
    if functorch:
        adapted, vjp_fn, inner = vjp(lambda m: adapt(m, func_grad), meta, has_aux=True)
        v, aux = grad(query, has_aux=True)(detach(adapted))
        (meta_grad,) = vjp_fn(v)
        return meta_grad, aux, inner
    leaves = _leaves(meta)
    with torch.enable_grad():
        adapted, inner = adapt(meta, autograd_grad)
        v, aux = autograd_grad(query, create_graph=False)(detach(adapted))
        outs = [(a, v[k]) for k, a in adapted.items() if a.requires_grad]
        wrt = [p for p in leaves if p.requires_grad]
        grads = torch.autograd.grad([a for a, _ in outs], wrt, [g for _, g in outs],
                                    allow_unused=True) if outs and wrt else []
    it = iter(grads)
    flat = [(next(it) if p.requires_grad else None) for p in leaves]
    flat = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, flat)]
    return _rebuild(meta, iter(flat)), aux, inner


def _leaves(tree: Any) -> list[Tensor]:
    if isinstance(tree, Tensor):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree
    return [leaf for item in items for leaf in _leaves(item)]


def _rebuild(tree: Any, flat: Iterator[Tensor]) -> Any:
    # Plain recursion (not torch.utils._pytree, whose recursive closure forms a reference
    # cycle that kept each task's autograd graph alive until the next garbage collection).
    if isinstance(tree, Tensor):
        return next(flat)
    if isinstance(tree, dict):
        return {k: _rebuild(v, flat) for k, v in tree.items()}
    items = (_rebuild(v, flat) for v in tree)
    return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)


def attach_gradients(value: Tensor, params: Iterable[Tensor], grads: Iterable[Tensor]) -> Tensor:
    """Return ``value`` (detached) wired so that its gradient w.r.t. ``params`` is ``grads``.

    The result is ``value + sum_i <p_i - stopgrad(p_i), g_i>``: numerically ``value``, and
    ``backward()`` deposits exactly ``g_i`` (times the incoming gradient) into ``p_i.grad``.
    """
    out = value.detach()
    for p, g in zip(params, grads):
        if p.requires_grad:
            out = out + ((p - p.detach()) * g.detach()).sum()
    return out


def detach(params: Params) -> Params:
    """Detached copies (views) of every tensor in ``params``."""
    return {k: v.detach() for k, v in params.items()}


class AdaptedPredictor:
    """What ``adapt`` returns: the model with task-specific parameters.

    Calling it on ``query_x`` ``(n, *x_shape)`` returns logits ``(n, n_way)`` or predictions.
    With ``norm="task"`` it keeps the support inputs to normalise with their statistics.
    """

    def __init__(self, forward: Forward, params: Params, support_x: Tensor, task_norm: bool):
        self.forward = forward
        self.params = params
        self.support_x = support_x
        self.task_norm = task_norm

    def __call__(self, query_x: Tensor) -> Tensor:
        return predict(self.forward, self.params, self.support_x, query_x, self.task_norm)
