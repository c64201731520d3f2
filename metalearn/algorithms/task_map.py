"""Mapping a per-task function over the tasks of a meta-batch: the task modes.

The gradient-based learners compute each task's loss and meta-gradient with one per-task
function ``fn(support_x, support_y, query_x, query_y)`` and map it over the task dimension with
:func:`map_tasks` (an :class:`EpisodeBatch` or a list of episodes) or :func:`over_tasks`
(stacked tensors). The task mode says how; every mode gives the same results (tested),
at different speed:

- ``"loop"``: a Python loop, one task after the other.
- ``"threads"``: the loop spread over a pool of CPU threads, each task single-threaded and
  several at once, which uses the cores better than one task at a time with multi-threaded
  kernels (for second-order meta-gradients).
- ``"vmap"``: ``torch.func.vmap``. Per-task weights become grouped convolutions, which pays on
  a GPU and is about 2x slower on a CPU. It needs tasks of one shape.
- ``"auto"``: the faster of these for the device and the backbone (:func:`resolve_task_mode`).
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import vmap

from metalearn.models.norm import BatchStatNorm
from metalearn.types import Episode, EpisodeBatch

TaskMode = Literal["auto", "loop", "threads", "vmap"]
"""How tasks are mapped (the ``task_mode`` of the learners' configs)."""

TASK_MODES: tuple[str, ...] = typing.get_args(TaskMode)


def check_task_mode(task_mode: str) -> str:
    """Validate a task mode.

    Raises:
        ValueError: for a name outside :data:`TASK_MODES`.
    """
    if task_mode not in TASK_MODES:
        raise ValueError(f"unknown task_mode {task_mode!r}; choose one of {', '.join(TASK_MODES)}")
    return task_mode


def resolve_task_mode(task_mode: str, device: torch.device, module: nn.Module | None = None,
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
    as convolutional. A module with a false ``vmap_safe`` attribute (a Hugging Face encoder,
    whose forward branches on tensor values) is never vmapped.
    """
    check_task_mode(task_mode)
    if task_mode == "auto":
        if module is not None and getattr(module, "vmap_safe", True) is False:
            return "threads" if second_order and torch.get_num_threads() > 1 else "loop"
        if device.type == "cuda":
            return "vmap"
        if module is not None and not any(
                isinstance(m, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, BatchStatNorm))
                for m in module.modules()):
            return "vmap"
        return "threads" if second_order and torch.get_num_threads() > 1 else "loop"
    return task_mode


def map_tasks(fn: Callable[..., Any], batch: EpisodeBatch | Sequence[Episode], task_mode: str,
              chunk_size: int | None = None) -> Any:
    """Map ``fn(support_x, support_y, query_x, query_y)`` over the tasks of ``batch``; stack its outputs.

    A list of episodes (of different shapes, see
    :func:`~metalearn.algorithms.checks.as_batch`) is mapped task by task: ``"vmap"`` falls
    back to ``"loop"`` for it, ``"threads"`` stays.

    Args:
        fn: Per-task function of one task's four tensors; returns a pytree of tensors whose
            shapes do not depend on the task's shape (losses, metrics, parameter-shaped grads).
        batch: The tasks.
        task_mode: A resolved task mode (``"loop"``, ``"threads"`` or ``"vmap"``).
        chunk_size: With ``"vmap"``, tasks per vectorised call (bounds memory); None = all.
    """
    if isinstance(batch, EpisodeBatch):
        tensors = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        return over_tasks(fn, tensors, task_mode, chunk_size)
    tasks = [(ep.support_x, ep.support_y, ep.query_x, ep.query_y) for ep in batch]
    return _map_each(fn, tasks.__getitem__, len(tasks), "loop" if task_mode == "vmap" else task_mode)


def over_tasks(fn: Callable[..., Any], tensors: Sequence[Tensor], task_mode: str,
               chunk_size: int | None = None) -> Any:
    """Map ``fn`` over the leading task dimension of ``tensors`` and stack its outputs.

    Args:
        fn: Per-task function of one slice of each tensor; returns a pytree of tensors.
        tensors: Tensors with a leading task dimension ``(n_tasks, ...)``.
        task_mode: ``"loop"``, ``"threads"`` or ``"vmap"`` (``torch.func.vmap``).
        chunk_size: With ``"vmap"``, tasks per vectorised call (bounds memory); None = all.
    """
    if task_mode == "vmap":
        return vmap(fn, chunk_size=chunk_size)(*tensors)
    return _map_each(fn, lambda i: tuple(t[i] for t in tensors), tensors[0].shape[0], task_mode)


def _map_each(fn: Callable[..., Any], task_args: Callable[[int], Sequence[Tensor]], n: int,
              task_mode: str) -> Any:
    """``stack([fn(*task_args(i)) for i in range(n)])``, on threads for ``"threads"``."""
    workers = min(torch.get_num_threads(), n) if task_mode == "threads" else 1
    if workers > 1:
        return _stack(_thread_map(fn, task_args, n, workers))
    return _stack([fn(*task_args(i)) for i in range(n)])


def _stack(trees: list[Any]) -> Any:
    first = trees[0]
    if isinstance(first, Tensor):
        return torch.stack(trees)
    if isinstance(first, dict):
        return {k: _stack([t[k] for t in trees]) for k in first}
    if isinstance(first, (tuple, list)):
        items = (_stack([t[i] for t in trees]) for i in range(len(first)))
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    raise TypeError(f"cannot stack outputs of type {type(first).__name__}")


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


def _thread_map(fn: Callable[..., Any], task_args: Callable[[int], Sequence[Tensor]], n: int,
                workers: int) -> list[Any]:
    """``[fn(*task_args(i)) for i in range(n)]`` on ``workers`` threads, one intra-op thread each.

    Each task is computed by exactly the operations of the serial loop, so results are those of
    ``"loop"`` run with one thread; autograd is thread-safe for independent graphs, and the
    grad mode of the calling thread is carried into the workers (it is thread-local).
    """
    grad_enabled = torch.is_grad_enabled()

    def run(i: int) -> Any:
        torch.set_num_threads(1)
        with torch.set_grad_enabled(grad_enabled):
            return fn(*task_args(i))

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return list(_thread_pool(workers).map(run, range(n)))
    finally:
        torch.set_num_threads(previous)
