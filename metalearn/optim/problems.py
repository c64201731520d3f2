"""Optimisation problems to meta-train and measure learned rules on.

Each family draws a batch of independent problems (an :class:`Optimizee`), every tensor with a
leading task dimension: :class:`QuadraticFamily` (Andrychowicz et al.'s ``||W theta - y||^2``),
:class:`BlobMLPFamily` (a small MLP on sampled Gaussian-blob classification tasks),
:class:`SinusoidMLPFamily` (an MLP regressing a sinusoid of :class:`metalearn.data.SinusoidTasks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearn.types import Params


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
