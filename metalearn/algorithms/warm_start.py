"""Warm starts: adapt a new task from the parameters of the most similar past tasks.

Retrieval-based initialisation in the spirit of "Meta-learning with task-aware modulation"
(MMAML, Vuorio et al. 2019) and HSML (Yao et al. 2019), which condition the initialisation on
the task instead of sharing one.

:class:`TaskMemory` stores ``(embedding, adapted parameters)`` of meta-training tasks
(:func:`build_memory` fills it); :meth:`TaskMemory.query` returns the ``k`` most similar with
softmax weights; :class:`WarmStartAdapter` adapts a new task with a MAML-family learner's own
update rule and number of steps, but starting from the weighted combination of the retrieved
parameters instead of the meta-initialisation. The task embeddings and similarities are in
:mod:`metalearn.algorithms.task_embedding`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from metalearn.algorithms.functional import (
    AdaptedPredictor,
    autograd_grad,
    detach,
    func_grad,
    inner_loop,
    make_forward,
    uses_task_norm,
)
from metalearn.algorithms.task_embedding import METRICS, similarity
from metalearn.algorithms.task_map import over_tasks
from metalearn.optim.update_rules import UpdateRule
from metalearn.types import EpisodeBatch, Params


class TaskMemory:
    """Embeddings of past tasks with their adapted parameters; retrieves the most similar.

    Args:
        metric: ``"cosine"`` or ``"euclidean"``.
        temperature: Softmax temperature of the retrieval weights (smaller: sharper).
        projection: Optional ``(d, d')`` map applied to every embedding before comparing
            (see :func:`fit_projection`).

    Examples:
        >>> memory = TaskMemory(metric="euclidean")
        >>> memory.add(torch.tensor([[0.0, 0.0], [5.0, 5.0]]), {"w": torch.tensor([[1.0], [2.0]])})
        >>> index, weight = memory.query(torch.tensor([4.0, 5.0]), k=1)
        >>> index.tolist(), memory.warm_start(torch.tensor([4.0, 5.0]), k=1)["w"].tolist()
        ([1], [2.0])
    """

    def __init__(self, metric: str = "cosine", temperature: float = 0.1,
                 projection: Tensor | None = None):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.metric, self.temperature, self.projection = metric, float(temperature), projection
        self._keys: list[Tensor] = []
        self._params: list[Params] = []

    def __len__(self) -> int:
        return sum(k.shape[0] for k in self._keys)

    @property
    def dim(self) -> int | None:
        """Size of the stored embeddings (``None`` while empty)."""
        return int(self._keys[0].shape[1]) if self._keys else None

    def _check_dim(self, embedding: Tensor, what: str) -> None:
        if self.dim is not None and embedding.shape[-1] != self.dim:
            raise ValueError(
                f"{what} has dimension {embedding.shape[-1]} but this memory stores task "
                f"embeddings of dimension {self.dim}: embed new tasks with the same backbone "
                "and embedding function (and stats) as the stored ones, or build a new memory")

    def add(self, embeddings: Tensor, params: Params) -> None:
        """Store tasks: ``embeddings`` ``(d,)`` or ``(n, d)``, ``params`` name -> ``(n, ...)`` (or unbatched for one task)."""
        single = embeddings.dim() == 1
        keys = embeddings.detach()[None] if single else embeddings.detach()
        values = {k: (v.detach()[None] if single else v.detach()) for k, v in params.items()}
        self._check_dim(keys, "the new embedding")
        if self._params and set(values) != set(self._params[0]):
            raise ValueError("the new tasks' parameters have different names from the stored ones: "
                             "store adapted parameters of the same model")
        if any(v.shape[0] != keys.shape[0] for v in values.values()):
            raise ValueError("give one set of parameters per embedding (same leading size)")
        self._keys.append(keys)
        self._params.append(values)

    def keys(self) -> Tensor:
        """All stored embeddings ``(n_tasks, d)`` (projected when a projection is set)."""
        if not self._keys:
            raise ValueError("the task memory is empty: add meta-training tasks first with "
                             "memory.add(embeddings, adapted_params) (see build_memory)")
        keys = torch.cat(self._keys)
        return keys @ self.projection if self.projection is not None else keys

    def params(self) -> Params:
        """All stored parameters, name -> ``(n_tasks, ...)``."""
        self.keys()  # raises the empty-memory error
        return {k: torch.cat([p[k] for p in self._params]) for k in self._params[0]}

    def query(self, embedding: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
        """The ``k`` most similar stored tasks and their weights.

        Args:
            embedding: ``(d,)`` embedding of the new task.
            k: Number of tasks to retrieve (at most the memory size).

        Returns:
            ``(indices (k,), weights (k,))``, most similar first; weights are a softmax of the
            similarities over ``temperature`` and sum to 1.

        Raises:
            ValueError: an empty memory, a dimension mismatch, or ``k < 1``.
        """
        keys = self.keys()
        self._check_dim(embedding, "the query embedding")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        e = embedding.detach().reshape(1, -1)
        e = e @ self.projection if self.projection is not None else e
        sim = similarity(e, keys, self.metric)[0]
        top, idx = sim.topk(min(k, keys.shape[0]))
        return idx, torch.softmax(top / self.temperature, 0)

    def warm_start(self, embedding: Tensor, k: int = 5) -> Params:
        """Similarity-weighted combination of the ``k`` most similar tasks' parameters."""
        idx, w = self.query(embedding, k)
        out = {}
        for name in self._params[0]:
            stored = torch.cat([p[name] for p in self._params])[idx]  # (k, ...)
            out[name] = (w.view(-1, *[1] * (stored.dim() - 1)).to(stored.dtype) * stored).sum(0)
        return out


def build_memory(learner: nn.Module, batch: EpisodeBatch, embed: Callable[[Tensor, Tensor], Tensor],
                 steps: int, rule: UpdateRule, memory: TaskMemory | None = None,
                 task_mode: Literal["vmap", "loop"] = "vmap") -> TaskMemory:
    """Fill a memory with meta-training tasks adapted from ``learner``'s meta-initialisation.

    Each task is embedded from its support set, then its parameters are fitted with ``steps``
    applications of ``rule`` on support and query together (meta-training tasks are fully
    labelled), starting from the meta-parameters.

    Args:
        learner: A MAML-family algorithm with a ``backbone`` (its parameters: the start).
        batch: Meta-training tasks ``(n_tasks, ...)``.
        embed: ``embed(support_x, support_y) -> (d,)`` for one task (must work under ``vmap``
            when ``task_mode="vmap"``).
        steps: Fitting steps per task.
        rule: Update rule of the fit, e.g. ``sgd(0.01)``.
        memory: Memory to add to (a new cosine one when ``None``).
        task_mode: ``"vmap"`` or ``"loop"`` over tasks (see :mod:`metalearn.algorithms.task_map`).
    """
    memory = memory if memory is not None else TaskMemory()
    forward = make_forward(learner.backbone)
    meta = detach(dict(learner.backbone.named_parameters()))

    def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Params]:
        x, y = torch.cat([sx, qx]), torch.cat([sy, qy])
        fitted, _ = inner_loop(forward, meta, x, y, rule, steps,
                               differentiate=func_grad if task_mode == "vmap" else autograd_grad)
        return embed(sx, sy), detach(fitted)

    keys, params = over_tasks(one, (batch.support_x, batch.support_y, batch.query_x, batch.query_y),
                               task_mode)
    memory.add(keys, params)
    return memory


class WarmStartAdapter(nn.Module):
    """Adapts like ``learner`` (same rule, same steps) but from retrieved parameters.

    Args:
        learner: A MAML-family algorithm (MAML, Meta-SGD): provides the backbone, the update
            rule (``make_rule(rule_params())``) and the number of test-time steps.
        memory: Stored tasks with parameters of ``learner.backbone``.
        embed: ``embed(support_x, support_y) -> (d,)`` with the same embedding as the memory.
        k: Tasks retrieved per new task.
        steps: Adaptation steps; ``None``: the learner's ``eval_inner_steps`` (or ``inner_steps``).

    Raises:
        ValueError: if the memory's parameters do not match the backbone's names and shapes.
    """

    def __init__(self, learner: nn.Module, memory: TaskMemory,
                 embed: Callable[[Tensor, Tensor], Tensor], k: int = 5, steps: int | None = None):
        super().__init__()
        self.learner, self.memory, self.embed, self.k = learner, memory, embed, k
        cfg = learner.config
        self.steps = steps if steps is not None else (cfg.eval_inner_steps or cfg.inner_steps)
        own = {n: tuple(p.shape) for n, p in learner.backbone.named_parameters()}
        stored = {n: tuple(v.shape[1:]) for n, v in memory.params().items()}
        if own != stored:
            raise ValueError("the memory holds parameters of a different model than the "
                             "learner's backbone: build the memory from this learner (build_memory)")
        self._forward = make_forward(learner.backbone)

    def start(self, support_x: Tensor, support_y: Tensor) -> Params:
        """The warm start of one task: weighted combination of its ``k`` nearest stored tasks."""
        return self.memory.warm_start(self.embed(support_x, support_y).detach(), self.k)

    def adapt(self, support_x: Tensor, support_y: Tensor) -> AdaptedPredictor:
        """Adapt from the warm start with the learner's rule and steps (meta-parameters untouched)."""
        rule = self.learner.make_rule(detach(self.learner.rule_params()))
        adapted, _ = inner_loop(self._forward, self.start(support_x, support_y), support_x, support_y,
                                rule, self.steps, first_order=True, differentiate=autograd_grad)
        return AdaptedPredictor(self._forward, detach(adapted), support_x,
                                uses_task_norm(self.learner.backbone))
