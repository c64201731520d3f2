"""The functional core of the gradient-based learners (MAML, Meta-SGD, ANIL, Reptile).

Meta-parameters are the algorithm's own ``nn.Parameter``s; adapted parameters are plain
tensors in a dict passed through :func:`torch.func.functional_call`. The inner loop is written
once, as the pure function :func:`inner_loop` ``(params, support, rule, steps) -> params``, and
used by meta-training and by ``adapt``. A per-task function (adapt, then measure the query loss
and its meta-gradient) is mapped over the task dimension of an :class:`EpisodeBatch` by
:func:`over_tasks`, either with ``torch.func.vmap`` or with a Python loop: same results (tested),
different speed. ``vmap`` turns per-task weights into grouped convolutions, which pays on a GPU
and is about 2x slower on a CPU, so ``mode="auto"`` picks vmap on CUDA and, on a CPU, the loop,
spread over a pool of threads for second-order meta-gradients (``"threads"``: each task runs
single-threaded, several at once, which uses the cores better than one task at a time with
multi-threaded kernels).

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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp, vmap

from metalearn.models.norm import BatchStatNorm, check_no_running_stats
from metalearn.optim.update_rules import UpdateRule, apply_updates
from metalearn.types import Episode, EpisodeBatch, Params

Forward = Callable[..., Tensor]
"""``forward(params, x, n_support=None) -> outputs``: a module as a pure function."""

Differentiate = Callable[..., Callable[[Params], tuple[Params, Any]]]
"""``differentiate(fn, create_graph) -> (params -> (grads, aux))`` for ``fn(params) -> (loss, aux)``."""

MODES = ("auto", "loop", "threads", "vmap")


def task_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy for integer labels, mean squared error for float targets.

    Args:
        outputs: Logits ``(n, n_way)`` or predictions ``(n, *y_shape)``.
        targets: Labels ``(n,)`` (int64) or targets ``(n, *y_shape)`` (float).
    """
    if torch.is_floating_point(targets):
        return F.mse_loss(outputs, targets)
    return F.cross_entropy(outputs, targets)


def task_metric(outputs: Tensor, targets: Tensor) -> Tensor:
    """Accuracy (classification) or mean squared error (regression), as a 0-d tensor."""
    if torch.is_floating_point(targets):
        return F.mse_loss(outputs.detach(), targets)
    return (outputs.detach().argmax(-1) == targets).float().mean()


def metric_name(targets: Tensor) -> str:
    """``"mse"`` for float targets, else ``"accuracy"``."""
    return "mse" if torch.is_floating_point(targets) else "accuracy"


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


def inner_loop(forward: Forward, params: Params, support_x: Tensor, support_y: Tensor,
               rule: UpdateRule, steps: int, *, first_order: bool = False,
               adapt: Sequence[str] | None = None,
               differentiate: Differentiate = func_grad) -> tuple[Params, Tensor]:
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

    Returns:
        ``(adapted_params, support_losses)`` with ``support_losses`` of shape ``(steps,)``:
        the support loss before each step (for NaN checks and logging).
    """
    names = list(params) if adapt is None else list(adapt)
    fast = {k: params[k] for k in names}
    fixed = {k: v for k, v in params.items() if k not in fast}
    state = rule.init(fast)

    def support_loss(fast_params: Params) -> tuple[Tensor, Tensor]:
        loss = task_loss(forward({**fixed, **fast_params}, support_x), support_y)
        return loss, loss.detach()

    losses = []
    for _ in range(steps):
        grads, loss = differentiate(support_loss, not first_order)(fast)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        updates, state = rule.update(grads, state, fast)
        fast = apply_updates(fast, updates)
        losses.append(loss)
    stacked = torch.stack(losses) if losses else support_x.new_zeros(0)
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
    return type(tree)(_rebuild(v, flat) for v in tree)


def resolve_mode(mode: str, device: torch.device, module: nn.Module | None = None,
                 second_order: bool = False) -> str:
    """Map ``"auto"`` to the faster task mode for ``device`` and ``module``; validate the rest.

    ``"vmap"`` on CUDA. On CPU, for convolutional backbones (per-task convolutions are large
    enough to keep a core busy; vmap's batched kernels were slower here), ``"threads"`` when the
    meta-gradient is ``second_order`` and torch uses several threads, else ``"loop"``: with one
    task per core, second-order MAML ran 1.1-1.2x faster than one task at a time on all cores,
    while first-order MAML gained under 3% and, holding two tasks' graphs at once, peaked 25%
    higher in memory (benchmarks/maml_throughput.py). ``"vmap"`` for small fully connected
    backbones such as the sinusoid MLP, where per-task Python overhead dominates (vmap was 2.2x
    faster for MAML on 5-shot sinusoids with meta-batch 25). Without ``module``, CPU is treated
    as convolutional.
    """
    if mode not in MODES:
        raise ValueError(f"unknown task mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "auto":
        if device.type == "cuda":
            return "vmap"
        if module is not None and not any(
                isinstance(m, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, BatchStatNorm))
                for m in module.modules()):
            return "vmap"
        return "threads" if second_order and torch.get_num_threads() > 1 else "loop"
    return mode


def _stack(trees: list[Any]) -> Any:
    first = trees[0]
    if isinstance(first, Tensor):
        return torch.stack(trees)
    if isinstance(first, dict):
        return {k: _stack([t[k] for t in trees]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_stack([t[i] for t in trees]) for i in range(len(first)))
    raise TypeError(f"cannot stack outputs of type {type(first).__name__}")


def over_tasks(fn: Callable[..., Any], tensors: Sequence[Tensor], mode: str,
               chunk_size: int | None = None) -> Any:
    """Map ``fn`` over the leading task dimension of ``tensors`` and stack its outputs.

    Args:
        fn: Per-task function of one slice of each tensor; returns a pytree of tensors.
        tensors: Tensors with a leading task dimension ``(n_tasks, ...)``.
        mode: ``"loop"`` (Python loop) or ``"vmap"`` (``torch.func.vmap``).
        chunk_size: With ``"vmap"``, tasks per vectorised call (bounds memory); None = all.
    """
    if mode == "vmap":
        return vmap(fn, chunk_size=chunk_size)(*tensors)
    n = tensors[0].shape[0]
    workers = min(torch.get_num_threads(), n) if mode == "threads" else 1
    if workers > 1:
        return _stack(_thread_map(fn, tensors, n, workers))
    return _stack([fn(*(t[i] for t in tensors)) for i in range(n)])


_POOL: tuple[ThreadPoolExecutor, int] | None = None
"""The task-thread pool and its number of workers."""
_POOL_LOCK = threading.Lock()


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """The process's task-thread pool, (re)built for ``workers`` threads."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[1] != workers:
            if _POOL is not None:
                _POOL[0].shutdown(wait=True)
            _POOL = (ThreadPoolExecutor(workers, thread_name_prefix="metalearn-task"), workers)
        return _POOL[0]


def _thread_map(fn: Callable[..., Any], tensors: Sequence[Tensor], n: int, workers: int) -> list[Any]:
    """``[fn(task i) for i in range(n)]`` on ``workers`` threads, one intra-op thread each.

    Each task is computed by exactly the operations of the serial loop, so results are those of
    ``"loop"`` run with one thread; autograd is thread-safe for independent graphs, and the
    grad mode of the calling thread is carried into the workers (it is thread-local).
    """
    grad_enabled = torch.is_grad_enabled()

    def run(i: int) -> Any:
        torch.set_num_threads(1)
        with torch.set_grad_enabled(grad_enabled):
            return fn(*(t[i] for t in tensors))

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return list(_thread_pool(workers).map(run, range(n)))
    finally:
        torch.set_num_threads(previous)


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


def check_finite(inner_losses: Tensor, query_losses: Tensor | None = None) -> None:
    """Raise if a support loss (``(n_tasks, steps)``) or query loss (``(n_tasks,)``) is not finite.

    Raises:
        FloatingPointError: naming the first bad task and inner step, and what to try.
    """
    bad = ~torch.isfinite(inner_losses)
    if bool(bad.any()):
        task, step = (int(i) for i in bad.nonzero()[0])
        raise FloatingPointError(
            f"support loss became {inner_losses[task, step].item()} at inner step {step} of task "
            f"{task}: the inner loop diverged. Lower the inner learning rate, use fewer inner "
            "steps, or check the inputs of that task for NaN/inf."
        )
    if query_losses is not None:
        bad = ~torch.isfinite(query_losses)
        if bool(bad.any()):
            task = int(bad.nonzero()[0, 0])
            raise FloatingPointError(
                f"query loss became {query_losses[task].item()} for task {task} after the inner "
                "loop: lower the inner learning rate or use fewer inner steps."
            )


def as_batch(batch: EpisodeBatch | Sequence[Episode]) -> EpisodeBatch:
    """Accept an :class:`EpisodeBatch` or a list of same-shape episodes.

    Raises:
        TypeError: for a single :class:`Episode` (wrap it: ``EpisodeBatch.stack([episode])``).
        ValueError: if the episodes of a list differ in shape.
    """
    if isinstance(batch, EpisodeBatch):
        return batch
    if isinstance(batch, Episode):
        raise TypeError("meta_loss takes an EpisodeBatch, got a single Episode: pass "
                        "EpisodeBatch.stack([episode]) (or use adapt() for one task)")
    return EpisodeBatch.stack(list(batch))


def check_backbone(module: nn.Module) -> nn.Module:
    """Validate a backbone for the functional inner loop (no running statistics)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"backbone must be an nn.Module, got {type(module).__name__}")
    check_no_running_stats(module)
    return module


def check_steps(steps: int, name: str, minimum: int = 1) -> int:
    """Validate an inner step count (at least ``minimum``, 1 by default).

    Raises:
        ValueError: for a count below ``minimum``, naming the argument.
    """
    if int(steps) != steps or steps < minimum:
        why = "the inner loop needs at least one step to adapt" if minimum >= 1 else "a step count"
        raise ValueError(f"{name} must be an integer >= {minimum} ({why}), got {steps!r}")
    return int(steps)


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
