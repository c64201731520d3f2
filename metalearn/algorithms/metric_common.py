"""Small pure helpers shared by the metric-based learners (ProtoNet, Matching, Relation, Baseline).

"Metric" as in metric learning (distances between embeddings); the evaluation metrics
(accuracy, confidence intervals) live in :mod:`metalearn.eval.metrics`.

Everything here is a plain function of tensors: class prototypes, pairwise distances and
similarities, and the checks on a support set that every metric method needs (a class with no
support example, an empty support set). Leading batch dimensions are allowed wherever a shape
says ``...``, so the same code serves one task or a stack of tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearn.models.heads import run_backbone
from metalearn.types import Episode, EpisodeBatch


def check_support(support_y: Tensor, n_way: int | None = None, query_y: Tensor | None = None) -> int:
    """Validate the labels of one task's support set and return ``n_way``.

    Args:
        support_y: Support labels, shape ``(..., n_support)``, int64 in ``0..n_way-1``.
        n_way: Number of classes of the task; inferred as ``max(label) + 1`` over the support
            and query labels when ``None``.
        query_y: Optional query labels, shape ``(..., n_query_total)``.

    Returns:
        The number of classes ``n_way``.

    Raises:
        ValueError: if the support set is empty (``k_shot`` of zero), the labels are not
            integers, or some class (for example one that the query contains) has no support
            example.

    Examples:
        >>> check_support(torch.tensor([0, 0, 1, 1]))
        2
    """
    if support_y.shape[-1] == 0:
        raise ValueError(
            "the support set is empty (k_shot=0): metric-based methods need at least one "
            "labelled example per class; sample episodes with k_shot >= 1."
        )
    if torch.is_floating_point(support_y):
        raise ValueError(
            f"support labels have dtype {support_y.dtype}; a classification task needs int64 "
            "labels in 0..n_way-1 (use an Episode from a classification dataset)."
        )
    if n_way is None:
        n_way = int(support_y.max()) + 1
        if query_y is not None and query_y.numel():
            n_way = max(n_way, int(query_y.max()) + 1)
    counts = F.one_hot(support_y.reshape(-1, support_y.shape[-1]), n_way).sum(-2)
    missing = sorted({int(c) for c in (counts == 0).nonzero()[:, 1]})
    if missing:
        raise ValueError(
            f"class(es) {missing} of this {n_way}-way task have no support example (the query "
            "contains them or the labels skip them): every class needs >= 1 support example; "
            "sample support and query from the same classes with labels remapped to 0..n_way-1."
        )
    return n_way


def prototypes(features: Tensor, labels: Tensor, n_way: int) -> Tensor:
    """Class means of support embeddings (Snell et al. 2017, eq. 1).

    Args:
        features: Support embeddings, shape ``(..., n_support, d)``.
        labels: Support labels, shape ``(..., n_support)``, int64 in ``0..n_way-1``; every
            class must occur (see :func:`check_support`).
        n_way: Number of classes.

    Returns:
        Prototypes, shape ``(..., n_way, d)``.

    Examples:
        >>> prototypes(torch.tensor([[0.0], [2.0], [5.0]]), torch.tensor([0, 0, 1]), 2)
        tensor([[1.],
                [5.]])
    """
    # A comparison, not F.one_hot, which reads label values (.item()) and so fails under vmap.
    onehot = (labels.unsqueeze(-1) == torch.arange(n_way, device=labels.device)).to(features.dtype)
    sums = onehot.transpose(-1, -2) @ features  # (..., n_way, d)
    return sums / onehot.sum(-2).unsqueeze(-1)


def pairwise_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances between two sets of vectors.

    Computed as ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product; clamped at zero against
    rounding), which is what makes ProtoNet a linear classifier in the embedding.

    Args:
        a: Shape ``(..., n, d)``.
        b: Shape ``(..., m, d)``.

    Returns:
        Shape ``(..., n, m)``.

    Examples:
        >>> pairwise_sq_dist(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([[25.,  1.]])
    """
    sq = (a * a).sum(-1).unsqueeze(-1) + (b * b).sum(-1).unsqueeze(-2)
    return (sq - 2.0 * (a @ b.transpose(-1, -2))).clamp_min(0.0)


def cosine_similarity(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine similarity between every pair of vectors of two sets.

    Args:
        a: Shape ``(..., n, d)``.
        b: Shape ``(..., m, d)``.
        eps: Lower bound on the norms, so that a zero vector gives similarity 0.

    Returns:
        Shape ``(..., n, m)``, values in ``[-1, 1]``.

    Examples:
        >>> cosine_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
        tensor([[1., 0.]])
    """
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    return a @ b.transpose(-1, -2)


def flatten_features(features: Tensor) -> Tensor:
    """Flatten per-example feature maps ``(n, *shape)`` to vectors ``(n, prod(shape))``."""
    return features.reshape(features.shape[0], -1)


def embed_support_query(backbone: torch.nn.Module, support_x: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
    """Embed a task's support and query inputs in one forward pass.

    One pass is faster than two, and a backbone whose normalisation uses batch statistics
    then sees the same batch composition (support + query of one task) when it is trained and
    when it is evaluated; with ``norm="task"`` the support rows alone give the statistics.

    Args:
        backbone: Feature extractor mapping ``(n, *x_shape)`` to ``(n, *feature_shape)``.
        support_x: ``(n_support, *x_shape)``.
        query_x: ``(n_query_total, *x_shape)``.

    Returns:
        Support features ``(n_support, *feature_shape)`` and query features
        ``(n_query_total, *feature_shape)``.
    """
    z = run_backbone(backbone, torch.cat([support_x, query_x]), support_x.shape[0])
    return z[: support_x.shape[0]], z[support_x.shape[0] :]


class SupportSetPredictor:
    """A predictor bound to one support set: ``score(support_x, support_y, query_x, n_way)``.

    Returned by ``adapt`` of methods that compare each query with the whole support set
    (Matching and Relation Networks); ``predictor(query_x)`` gives ``(n, n_way)`` scores.
    """

    def __init__(self, score: Callable[[Tensor, Tensor, Tensor, int], Tensor],
                 support_x: Tensor, support_y: Tensor, n_way: int):
        self.score, self.support_x, self.support_y, self.n_way = score, support_x, support_y, n_way

    def __call__(self, query_x: Tensor) -> Tensor:
        return self.score(self.support_x, self.support_y, query_x, self.n_way)


def episodes_of(batch: EpisodeBatch | Sequence[Episode]) -> list[Episode]:
    """The tasks of a meta-batch, one :class:`Episode` each.

    Args:
        batch: An :class:`EpisodeBatch` (tasks of equal shape), or a sequence of episodes that
            may differ in ``n_way``, ``k_shot``, ``n_query`` and input size (kept as given,
            never padded).

    Raises:
        TypeError: for a single :class:`Episode` (a meta-batch is a list of them).
        ValueError: for an empty sequence.

    Examples:
        >>> ep = Episode(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(1, 3), torch.tensor([1]))
        >>> len(episodes_of([ep, ep])), len(episodes_of(EpisodeBatch.stack([ep])))
        (2, 1)
    """
    if isinstance(batch, Episode):
        raise TypeError("meta_loss takes a meta-batch, got a single Episode: pass [episode] "
                        "or EpisodeBatch.stack([episode]) (or use adapt() for one task)")
    episodes = list(batch)
    if not episodes:
        raise ValueError("the meta-batch is empty: give at least one episode")
    return episodes


def episodic_loss(batch: EpisodeBatch | Sequence[Episode],
                  score: Callable[[Tensor, Tensor, Tensor, int], Tensor],
                  loss_fn: Callable[[Tensor, Tensor, int], Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Mean per-task query loss and accuracy over the tasks of ``batch``.

    Args:
        batch: Classification tasks: an :class:`EpisodeBatch`, or a list of episodes that may
            differ in ``n_way``, ``k_shot`` and ``n_query`` (each task's ``n_way`` is read
            from its own labels).
        score: ``score(support_x, support_y, query_x, n_way)`` -> ``(n_query, n_way)`` scores
            (higher is more likely).
        loss_fn: ``loss_fn(scores, query_y, n_way)`` -> a scalar loss for one task.

    Returns:
        The loss (a scalar) and metrics ``{"loss", "accuracy"}`` on the query sets, each the
        mean over tasks.
    """
    if isinstance(batch, EpisodeBatch):
        # One vectorised check serves every task: it passes only if each task's support holds
        # every class 0..n_way-1 and no label above, i.e. every task has the batch's n_way.
        n_way = check_support(batch.support_y, None, batch.query_y)
        tasks = [(ep, n_way) for ep in batch]
    else:
        tasks = [(ep, check_support(ep.support_y, None, ep.query_y)) for ep in episodes_of(batch)]
    losses, correct = [], 0.0
    for ep, n_way in tasks:
        s = score(ep.support_x, ep.support_y, ep.query_x, n_way)
        losses.append(loss_fn(s, ep.query_y, n_way))
        correct += (s.argmax(-1) == ep.query_y).float().mean().item()
    loss = torch.stack(losses).mean()
    return loss, {"loss": loss.item(), "accuracy": correct / len(tasks)}
