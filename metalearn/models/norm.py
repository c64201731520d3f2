"""Normalisation layers that never keep running statistics, so they are safe under ``vmap``.

Every backbone in :mod:`metalearn.models` takes a ``norm`` argument, recorded with each result:

- ``"transductive"``: batch norm with the statistics of the batch being normalised (the
  support set while adapting, the query set when predicting), as in the MAML reference code.
- ``"task"``: batch norm whose statistics come from the support rows only and are applied to
  the query rows too. The forward pass then receives support and query concatenated, with
  ``n_support`` telling where the support ends.
- ``"group"``: group norm (per example, so independent of the batch).
- ``"none"``: no normalisation.

None of them has buffers, so a forward pass never mutates the module, which is what makes the
inner loop a pure function that ``torch.func.vmap`` can batch over tasks.
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormMode = Literal["transductive", "task", "group", "none"]
"""The type of every backbone's ``norm`` argument (the run config checks it by this type)."""

NORM_MODES: tuple[str, ...] = typing.get_args(NormMode)
"""Normalisation modes accepted by every backbone's ``norm`` argument."""


def check_norm(norm: str) -> NormMode:
    """Validate a ``norm`` argument and return it.

    Raises:
        ValueError: if ``norm`` is not one of :data:`NORM_MODES`.
    """
    if norm not in NORM_MODES:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORM_MODES)}")
    return norm


class BatchStatNorm(nn.Module):
    """Batch norm over dimension 1 using current statistics only (no running buffers).

    Args:
        num_features: Number of channels ``C``.
        support_stats: If True (``norm="task"``), statistics are computed from the first
            ``n_support`` rows and applied to every row; otherwise from all rows.
        eps: Added to the variance.

    Shapes:
        ``x``: ``(N, C)`` or ``(N, C, H, W)``; output has the same shape.
    """

    def __init__(self, num_features: int, support_stats: bool = False, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.support_stats = support_stats
        self.eps = eps

    def stat_rows(self, n: int, n_support: int | None = None) -> int:
        """How many leading rows of a batch of ``n`` supply the statistics for all ``n`` rows:
        ``n_support`` with ``norm="task"`` (when given and smaller than ``n``), else ``n``."""
        if self.support_stats and n_support is not None and n_support < n:
            return n_support
        return n

    def scale_shift(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """The per-channel affine map ``x -> x * scale + shift`` that this layer applies to a
        batch whose statistic rows have channel ``mean`` and (biased) ``var``, shapes ``(C,)``.

        For callers that obtain the statistics another way than from the activations, e.g.
        :func:`metalearn.kernels.cpu_conv.fused_first_block` folds them into a convolution.
        """
        scale = self.weight * torch.rsqrt(var + self.eps)
        return scale, self.bias - mean * scale

    def forward(self, x: Tensor, n_support: int | None = None) -> Tensor:
        rows = self.stat_rows(x.shape[0], n_support)
        if rows < x.shape[0]:
            dims = [0, *range(2, x.dim())]
            s = x[:rows]
            var, mean = torch.var_mean(s, dim=dims, correction=0, keepdim=True)
            shape = [1, -1] + [1] * (x.dim() - 2)
            scale = torch.rsqrt(var + self.eps) * self.weight.view(shape)
            return (x - mean) * scale + self.bias.view(shape)
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)

    def extra_repr(self) -> str:
        mode = "task" if self.support_stats else "transductive"
        return f"{self.weight.shape[0]}, mode={mode}"


class GroupNormN(nn.GroupNorm):
    """``nn.GroupNorm`` that accepts (and ignores) ``n_support``: it is per example."""

    def forward(self, x: Tensor, n_support: int | None = None) -> Tensor:
        return super().forward(x)


class NoNorm(nn.Module):
    """Identity that accepts ``n_support``."""

    def forward(self, x: Tensor, n_support: int | None = None) -> Tensor:
        return x


def make_norm(norm: NormMode, num_features: int) -> nn.Module:
    """Build the normalisation layer for ``norm`` over ``num_features`` channels.

    Group norm uses 8 groups when the channel count allows it (else 1 group, layer norm).

    Examples:
        >>> make_norm("task", 4)
        BatchStatNorm(4, mode=task)
    """
    check_norm(norm)
    if norm == "transductive":
        return BatchStatNorm(num_features)
    if norm == "task":
        return BatchStatNorm(num_features, support_stats=True)
    if norm == "group":
        groups = 8 if num_features % 8 == 0 else 1
        return GroupNormN(groups, num_features)
    return NoNorm()


def check_no_running_stats(module: nn.Module) -> None:
    """Refuse modules whose forward pass would update running statistics.

    Batch norm with running statistics mutates its buffers on every training forward pass,
    so an inner loop through it is not a pure function: it cannot run under ``vmap`` and
    adapting would change the model.

    Raises:
        ValueError: naming the offending submodule and the modes that work.
    """
    for name, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            raise ValueError(
                f"submodule {name or type(module).__name__!r} ({type(m).__name__}) keeps running "
                "statistics, which the inner loop would update (not vmap-safe, and adapting would "
                "mutate the model). Build the backbone with norm='transductive', 'task', 'group' "
                "or 'none' (metalearn.models), or construct it with track_running_stats=False."
            )
