"""Validators of the gradient-based learners: backbones, step counts, meta-batches and losses.

They run once per call of ``meta_loss`` / ``adapt`` (or once in a constructor), never inside
the per-task function, and raise errors that say what to change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from metalearn.models.norm import check_no_running_stats
from metalearn.types import Episode, EpisodeBatch

Tasks = EpisodeBatch | list[Episode]
"""A meta-batch: tasks of equal shape stacked, or a list of episodes of different shapes."""


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


def _shapes(ep: Episode) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(t.shape) for t in (ep.support_x, ep.support_y, ep.query_x, ep.query_y))


def as_batch(batch: EpisodeBatch | Sequence[Episode]) -> Tasks:
    """An :class:`EpisodeBatch` as it is; a list of episodes stacked when their shapes agree.

    Episodes of different shapes (another ``n_way``, ``k_shot`` or ``n_query`` per task) stay a
    list, which the learners map task by task (never with ``vmap``, which needs one shape).

    Raises:
        TypeError: for a single :class:`Episode` (wrap it: ``EpisodeBatch.stack([episode])``).
        ValueError: for an empty list, or for episodes of equal shapes of which only some
            have ``class_ids`` or ``task_params`` (see :meth:`EpisodeBatch.stack`).
    """
    if isinstance(batch, EpisodeBatch):
        return batch
    if isinstance(batch, Episode):
        raise TypeError("meta_loss takes an EpisodeBatch, got a single Episode: pass "
                        "EpisodeBatch.stack([episode]) (or use adapt() for one task)")
    episodes = list(batch)
    if len({_shapes(ep) for ep in episodes}) > 1:
        return episodes
    return EpisodeBatch.stack(episodes)


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
