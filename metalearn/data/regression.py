"""Regression task families: each task is a function drawn from a family; its support and query
sets are points of that function.

``SinusoidTasks`` is the family of the MAML paper (Finn et al. 2017, section 5.1):
``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5]``, phase ``phi ~ U[0, pi]`` and inputs
``x ~ U[-5, 5]``. ``LinearTasks`` is ``y = a x + b``. Both produce :class:`EpisodeBatch` es with
``x`` and ``y`` of shape ``(n, 1)`` and ``task_params`` holding the drawn parameters.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearn.types import EpisodeBatch


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g) * (high - low) + low


def _check_range(name: str, rng: tuple[float, float]) -> None:
    low, high = rng
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{name} must be a finite (low, high) range with low <= high, got {rng}")


@dataclass(frozen=True)
class TaskFamily(ABC):
    """Base of regression task families: draws parameters, evaluates functions, builds batches.

    Subclasses define ``param_names``, :meth:`sample_params` and :meth:`function`.
    """

    x_range: tuple[float, float] = (-5.0, 5.0)
    """Inputs are drawn uniformly from this range."""

    param_names = ()

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.endswith("_range"):
                _check_range(name, value)

    @abstractmethod
    def sample_params(self, n_tasks: int, g: torch.Generator) -> Tensor:
        """Draw ``(n_tasks, n_params)`` task parameters."""

    @abstractmethod
    def function(self, params: Tensor, x: Tensor) -> Tensor:
        """Evaluate the tasks' functions: params ``(T, n_params)``, x ``(T, n, 1)`` -> y ``(T, n, 1)``."""

    def sample_batch(self, n_tasks: int, k_shot: int, n_query: int, g: torch.Generator) -> EpisodeBatch:
        """Draw ``n_tasks`` tasks with ``k_shot`` support and ``n_query`` query points each."""
        params = self.sample_params(n_tasks, g)
        x = _uniform(n_tasks * (k_shot + n_query), *self.x_range, g).reshape(n_tasks, -1, 1)
        y = self.function(params, x)
        return EpisodeBatch(support_x=x[:, :k_shot], support_y=y[:, :k_shot],
                            query_x=x[:, k_shot:], query_y=y[:, k_shot:], task_params=params)


@dataclass(frozen=True)
class SinusoidTasks(TaskFamily):
    """``y = amplitude * sin(x - phase)``, the MAML paper's regression benchmark.

    Examples:
        >>> batch = SinusoidTasks().sample_batch(4, 5, 10, torch.Generator().manual_seed(0))
        >>> tuple(batch.support_x.shape), tuple(batch.query_y.shape), tuple(batch.task_params.shape)
        ((4, 5, 1), (4, 10, 1), (4, 2))
    """

    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    param_names = ("amplitude", "phase")

    def sample_params(self, n_tasks: int, g: torch.Generator) -> Tensor:
        return torch.stack([_uniform(n_tasks, *self.amplitude_range, g),
                            _uniform(n_tasks, *self.phase_range, g)], dim=1)

    def function(self, params: Tensor, x: Tensor) -> Tensor:
        amplitude, phase = params[:, 0, None, None], params[:, 1, None, None]
        return amplitude * torch.sin(x - phase)


@dataclass(frozen=True)
class LinearTasks(TaskFamily):
    """``y = slope * x + intercept`` with slope and intercept drawn uniformly.

    Examples:
        >>> batch = LinearTasks().sample_batch(2, 3, 4, torch.Generator().manual_seed(0))
        >>> a, b = batch.task_params[0]
        >>> torch.allclose(batch.support_y[0], a * batch.support_x[0] + b)
        True
    """

    slope_range: tuple[float, float] = (-3.0, 3.0)
    intercept_range: tuple[float, float] = (-3.0, 3.0)
    param_names = ("slope", "intercept")

    def sample_params(self, n_tasks: int, g: torch.Generator) -> Tensor:
        return torch.stack([_uniform(n_tasks, *self.slope_range, g),
                            _uniform(n_tasks, *self.intercept_range, g)], dim=1)

    def function(self, params: Tensor, x: Tensor) -> Tensor:
        return params[:, 0, None, None] * x + params[:, 1, None, None]


@dataclass(frozen=True)
class QuadraticTasks(TaskFamily):
    """``y = a x^2 + b x + c`` with the three coefficients drawn uniformly.

    Examples:
        >>> batch = QuadraticTasks().sample_batch(2, 3, 4, torch.Generator().manual_seed(0))
        >>> a, b, c = batch.task_params[1]
        >>> x = batch.query_x[1]
        >>> torch.allclose(batch.query_y[1], a * x * x + b * x + c)
        True
    """

    a_range: tuple[float, float] = (-0.3, 0.3)
    b_range: tuple[float, float] = (-1.0, 1.0)
    c_range: tuple[float, float] = (-3.0, 3.0)
    param_names = ("a", "b", "c")

    def sample_params(self, n_tasks: int, g: torch.Generator) -> Tensor:
        return torch.stack([_uniform(n_tasks, *self.a_range, g), _uniform(n_tasks, *self.b_range, g),
                            _uniform(n_tasks, *self.c_range, g)], dim=1)

    def function(self, params: Tensor, x: Tensor) -> Tensor:
        a, b, c = (params[:, i, None, None] for i in range(3))
        return (a * x + b) * x + c


@dataclass(frozen=True)
class MixtureTasks(TaskFamily):
    """Each task comes from one of several families, drawn with the given weights.

    ``task_params`` is ``(n_tasks, 1 + max n_params)``: column 0 is the index of the family
    (as a float), then that family's parameters, zero-padded. Inputs are drawn from this
    mixture's ``x_range`` for every family.

    Args:
        families: The component families (by keyword), e.g.
            ``families=(SinusoidTasks(), LinearTasks(), QuadraticTasks())``.
        weights: Relative probability of each family; ``None``: uniform.

    Examples:
        >>> mix = MixtureTasks(families=(SinusoidTasks(), LinearTasks()))
        >>> batch = mix.sample_batch(6, 5, 5, torch.Generator().manual_seed(0))
        >>> tuple(batch.task_params.shape), sorted(set(batch.task_params[:, 0].tolist())) <= [0.0, 1.0]
        ((6, 3), True)
    """

    families: tuple[TaskFamily, ...] = ()
    weights: tuple[float, ...] | None = None
    param_names = ("family",)

    def __post_init__(self) -> None:
        if any(isinstance(v, TaskFamily) for v in self.x_range):
            raise ValueError("give the families by keyword: MixtureTasks(families=(...)); the "
                             "first positional field is x_range")
        super().__post_init__()
        if len(self.families) == 0:
            raise ValueError("MixtureTasks needs at least one family, e.g. "
                             "MixtureTasks((SinusoidTasks(), LinearTasks()))")
        if self.weights is not None and (len(self.weights) != len(self.families)
                                         or any(not w >= 0 for w in self.weights) or sum(self.weights) <= 0):
            raise ValueError(f"weights must be {len(self.families)} non-negative numbers with a "
                             f"positive sum (one per family), got {self.weights}")

    def sample_params(self, n_tasks: int, g: torch.Generator) -> Tensor:
        w = torch.ones(len(self.families)) if self.weights is None else torch.tensor(self.weights, dtype=torch.float)
        family = torch.multinomial(w, n_tasks, replacement=True, generator=g)
        width = max(len(f.param_names) for f in self.families)
        out = torch.zeros(n_tasks, 1 + width)
        out[:, 0] = family.float()
        for i, f in enumerate(self.families):
            p = f.sample_params(n_tasks, g)  # drawn for all tasks so the stream is shape-stable
            out[family == i, 1 : 1 + p.shape[1]] = p[family == i]
        return out

    def function(self, params: Tensor, x: Tensor) -> Tensor:
        y = torch.zeros_like(x)
        for i, f in enumerate(self.families):
            mask = (params[:, 0] == i)[:, None, None]
            y = torch.where(mask, f.function(params[:, 1 : 1 + len(f.param_names)], x), y)
        return y
