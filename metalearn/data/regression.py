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
