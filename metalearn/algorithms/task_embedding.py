"""Task embeddings and task similarity: a task as a vector computed from its support set.

Achille et al., "Task2Vec: Task Embedding for Meta-Learning", ICCV 2019 (a task as the
gradient/Fisher information of a shared probe network); Vinyals et al. 2016 and Snell et al.
2017 for pooled support statistics.

* :func:`class_statistics_embedding` (classification): per-class statistics of the support
  embeddings, pooled over classes by means, so the vector does not depend on the order of
  the examples nor on the labels' names (``"mean"``: centroid of the class means; ``"spread"``:
  their per-dimension standard deviation, how far apart the classes lie; ``"std"``: the mean
  within-class standard deviation, which needs two examples per class).
* :func:`gradient_embedding` (any differentiable model, used here for regression): the
  gradient of the support loss at the meta-initialisation. To first order it is the
  direction that adaptation will take from the shared start, so tasks that want to go the
  same way get similar vectors whatever their input points; it needs one backward pass and
  no hand-made features (Task2Vec uses the Fisher, the gradient's second moment; the mean
  gradient keeps the sign, which tells ``y = x`` from ``y = -x``).

Similarity (:func:`similarity`) is cosine or negative Euclidean distance, optionally after a
linear projection fitted so that distances between projected embeddings match distances
between the tasks' adapted parameters (:func:`fit_projection`). The warm starts that retrieve
similar tasks by these embeddings are in :mod:`metalearn.algorithms.warm_start`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from metalearn.algorithms.functional import detach, func_grad
from metalearn.algorithms.losses import task_loss
from metalearn.algorithms.metric_common import check_support, cosine_similarity, prototypes
from metalearn.types import Params

METRICS = ("cosine", "euclidean")
STATS = ("mean", "spread", "std")


def class_statistics_embedding(features: Tensor, labels: Tensor, n_way: int | None = None,
                               stats: Sequence[str] = ("mean", "spread")) -> Tensor:
    """Order-invariant task embedding from per-class statistics of support embeddings.

    Args:
        features: Support embeddings ``(n_support, d)``.
        labels: Support labels ``(n_support,)`` in ``0..n_way-1``.
        n_way: Number of classes (inferred from ``labels`` when ``None``).
        stats: Any of ``"mean"``, ``"spread"`` and ``"std"`` (see the module docstring).

    Returns:
        ``(len(stats) * d,)``.

    Raises:
        ValueError: an unknown statistic, or ``"std"`` with a class of a single example.

    Examples:
        >>> z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
        >>> class_statistics_embedding(z, torch.tensor([0, 0, 1, 1]), stats=("mean", "std"))
        tensor([0.5000, 2.5000, 0.5000, 0.5000])
    """
    unknown = [s for s in stats if s not in STATS]
    if unknown or not stats:
        raise ValueError(f"unknown task statistics {unknown or stats}; choose from {STATS}")
    n_way = check_support(labels, n_way)
    means = prototypes(features, labels, n_way)  # (n_way, d)
    parts = []
    for s in stats:
        if s == "mean":
            parts.append(means.mean(0))
        elif s == "spread":
            parts.append(means.std(0, correction=0))
        else:
            counts = torch.bincount(labels, minlength=n_way)
            if int(counts.min()) < 2:
                raise ValueError(f"the 'std' task statistic needs at least 2 support examples per "
                                 f"class, but a class has {int(counts.min())}: sample k_shot >= 2 or "
                                 "use stats=('mean', 'spread')")
            sq = prototypes(features * features, labels, n_way) - means * means
            parts.append(sq.clamp_min(0).sqrt().mean(0))
    return torch.cat(parts)


def gradient_embedding(forward: Callable[..., Tensor], params: Params, support_x: Tensor,
                       support_y: Tensor) -> Tensor:
    """Task2Vec-like embedding: the support-loss gradient at ``params``, flattened.

    Args:
        forward: The model as a pure function ``forward(params, x)`` (see
            :func:`~metalearn.algorithms.functional.make_forward`).
        params: Where the gradient is taken (the meta-initialisation).
        support_x: ``(n_support, *x_shape)``.
        support_y: ``(n_support, ...)`` targets or labels.

    Returns:
        ``(n_parameters,)``, the gradient in the order of ``params``; works under ``vmap``.

    Examples:
        >>> from metalearn.algorithms.functional import make_forward
        >>> net = torch.nn.Linear(1, 1)
        >>> e = gradient_embedding(make_forward(net), dict(net.named_parameters()),
        ...                        torch.randn(5, 1), torch.randn(5, 1))
        >>> e.shape
        torch.Size([2])
    """
    def loss(p: Params) -> tuple[Tensor, Tensor]:
        value = task_loss(forward(p, support_x), support_y)
        return value, value

    grads, _ = func_grad(loss)(detach(params))
    return torch.cat([g.reshape(-1) for g in grads.values()])


def similarity(queries: Tensor, keys: Tensor, metric: str = "cosine") -> Tensor:
    """Similarity of each query embedding with each key: ``(..., q, d), (n, d) -> (..., q, n)``.

    ``"cosine"`` is the cosine similarity; ``"euclidean"`` is minus the Euclidean distance
    (higher means more similar for both).
    """
    if metric == "cosine":
        return cosine_similarity(queries, keys)
    if metric == "euclidean":
        return -torch.cdist(queries, keys)
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


def fit_projection(embeddings: Tensor, targets: Tensor, dim: int, steps: int = 500,
                   lr: float = 1e-2, seed: int = 0) -> Tensor:
    """Fit a linear map under which embedding distances match target distances.

    Minimises the mean over pairs of ``(|P e_i - P e_j| - |t_i - t_j|)^2`` with Adam, so that
    tasks whose adapted parameters ``t`` are close end up close (the learned metric of the
    task memory).

    Args:
        embeddings: ``(n, d)`` task embeddings.
        targets: ``(n, p)``, e.g. the flattened adapted parameters of the same tasks.
        dim: Output size of the projection.
        steps: Adam steps.
        lr: Adam learning rate.
        seed: Seed of the initial projection.

    Returns:
        The projection ``(d, dim)``; apply it as ``embeddings @ projection``.
    """
    if embeddings.shape[0] < 2 or embeddings.shape[0] != targets.shape[0]:
        raise ValueError(f"need >= 2 tasks with one target each, got {embeddings.shape[0]} "
                         f"embeddings and {targets.shape[0]} targets")
    g = torch.Generator().manual_seed(seed)
    e = embeddings.detach()
    scale = e.std().clamp_min(1e-8)
    proj = torch.randn(e.shape[1], dim, generator=g).to(e.device, e.dtype)
    proj = (proj / (scale * e.shape[1] ** 0.5)).requires_grad_()
    goal = torch.cdist(targets.detach(), targets.detach())
    opt = torch.optim.Adam([proj], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            z = e @ proj
            dist = (torch.cdist(z, z) ** 2 + 1e-12).sqrt()  # smooth at 0 (the diagonal)
            loss = ((dist - goal) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return proj.detach()
