"""Honest evaluation: one adapted predictor per fixed episode, mean and 95% CI over episodes.

Every method is evaluated on the same fixed, seeded episodes (``FixedEpisodes``) and every
number comes with its confidence interval, ``1.96 * std / sqrt(n)`` over episodes
(see :func:`metalearn.eval.metrics.mean_ci95`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from metalearn.eval.metrics import (
    accuracy,
    macro_recall_f1,
    mae,
    mean_ci95,
    mse,
    ndcg_at_k,
    pooled_mean_ci95,
    rmse,
)
from metalearn.types import Episode, EpisodeBatch

DEFAULT_EPISODES = 600
"""Default number of evaluation episodes (the MAML/mini-ImageNet protocol; Omniglot uses 1000)."""


@dataclass(frozen=True)
class EvalResult:
    """The outcome of :func:`evaluate`.

    Attributes:
        metric: ``"accuracy"`` (classification, in ``[0, 1]``) or ``"mse"`` (regression).
        mean: Mean of ``metric`` over episodes.
        ci95: Half-width of the 95% confidence interval of ``mean`` (population std, see
            :func:`~metalearn.eval.metrics.mean_ci95`).
        n: Number of episodes.
        per_episode: ``metric`` of each episode, in episode order.
        extra: Other metrics, name -> ``(mean, ci95)``: ``macro_recall`` and ``macro_f1`` for
            classification; ``mae`` and ``rmse`` (per task, then averaged) for regression, and
            ``ndcg@k`` of the query items ranked by prediction when ``ranking_k`` is given.
        seconds: Wall-clock time of the evaluation.
    """

    metric: str
    mean: float
    ci95: float
    n: int
    per_episode: list[float]
    extra: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        d = asdict(self)
        d["extra"] = {k: {"mean": m, "ci95": c} for k, (m, c) in self.extra.items()}
        return d

    @staticmethod
    def from_dict(d: dict) -> EvalResult:
        """Inverse of :meth:`to_dict`."""
        extra = {k: (v["mean"], v["ci95"]) for k, v in d.get("extra", {}).items()}
        return EvalResult(d["metric"], d["mean"], d["ci95"], d["n"], list(d["per_episode"]),
                          extra, d.get("seconds", 0.0))

    def __str__(self) -> str:
        if self.metric == "accuracy":
            text = f"accuracy {100 * self.mean:.2f}% ± {100 * self.ci95:.2f}%"
        else:
            text = f"{self.metric} {self.mean:.4f} ± {self.ci95:.4f}"
        return f"{text} (95% CI, {self.n} episodes)"

    def __repr__(self) -> str:  # short: the dataclass repr would print every per-episode score
        """E.g. ``EvalResult(accuracy=98.58 ± 0.17%, n=1000)`` (``per_episode`` holds the scores)."""
        if self.metric == "accuracy":
            value = f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f}%"
        else:
            value = f"{self.mean:.4f} ± {self.ci95:.4f}"
        return f"EvalResult({self.metric}={value}, n={self.n})"

    def reported_extra(self) -> dict[str, tuple[float, float]]:
        """The :attr:`extra` metrics worth printing beside the main one.

        On a balanced query set (the same number of queries per class, as in every standard
        N-way K-shot protocol) the macro recall is exactly the accuracy, and the macro F1 differs
        from it only through the precision of the same predictions: both are left out of printed
        summaries then (they stay in :attr:`extra` and :meth:`to_dict`). They are shown when the
        macro recall differs from the accuracy, i.e. some query set was imbalanced.

        Examples:
            >>> r = EvalResult("accuracy", 0.9, 0.01, 2, [0.9, 0.9], {"macro_recall": (0.9, 0.01), "macro_f1": (0.89, 0.01)})
            >>> r.reported_extra()
            {}
            >>> r = EvalResult("accuracy", 0.9, 0.01, 2, [0.9, 0.9], {"macro_recall": (0.8, 0.01), "macro_f1": (0.79, 0.01)})
            >>> sorted(r.reported_extra())
            ['macro_f1', 'macro_recall']
        """
        recall = self.extra.get("macro_recall")
        if recall is not None and math.isclose(recall[0], self.mean, rel_tol=1e-9, abs_tol=1e-12):
            return {k: v for k, v in self.extra.items() if k not in ("macro_recall", "macro_f1")}
        return dict(self.extra)


def _device_of(algorithm: nn.Module) -> torch.device:
    for t in algorithm.parameters():
        return t.device
    for t in algorithm.buffers():
        return t.device
    return torch.device("cpu")


def _predictions(algorithm, group: list[Episode]) -> list[torch.Tensor]:
    """Query predictions for a group of episodes, batched when the algorithm supports it."""
    adapt_batch = getattr(algorithm, "adapt_batch", None)
    shapes = {(ep.support_x.shape, ep.support_y.shape, ep.query_x.shape) for ep in group}
    if len(group) > 1 and adapt_batch is not None and len(shapes) == 1:  # variable episodes: one by one
        batch = EpisodeBatch.stack(group)
        predictor = adapt_batch(batch.support_x, batch.support_y)
        with torch.no_grad():
            out = predictor(batch.query_x)
        return [o.detach() for o in out]
    preds = []
    for ep in group:
        # adapt may need autograd (an inner loop); the query forward does not.
        predictor = algorithm.adapt(ep.support_x, ep.support_y)
        with torch.no_grad():
            preds.append(predictor(ep.query_x).detach())
    return preds


def _extra_metrics(pred: torch.Tensor, ep: Episode, ranking_k: Sequence[int]) -> dict[str, float]:
    """The :attr:`EvalResult.extra` metrics of one episode."""
    if ep.is_classification:
        recall, f1 = macro_recall_f1(pred, ep.query_y, ep.n_way)
        return {"macro_recall": recall, "macro_f1": f1}
    out = {"mae": mae(pred, ep.query_y), "rmse": rmse(pred, ep.query_y)}
    for k in ranking_k:
        out[f"ndcg@{k}"] = ndcg_at_k(pred, ep.query_y, k)
    return out


def _groups(episodes: Iterable[Episode], size: int) -> Iterator[list[Episode]]:
    group: list[Episode] = []
    for ep in episodes:
        group.append(ep)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def evaluate(
    algorithm,
    episodes: Iterable[Episode],
    *,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    desc: str = "eval",
    ranking_k: Sequence[int] = (),
) -> EvalResult:
    """Evaluate ``algorithm`` on fixed episodes: adapt on each support set, score its query set.

    For each episode, ``algorithm.adapt(support_x, support_y)`` returns a predictor that is
    applied to ``query_x``. Classification is scored by accuracy (macro recall and F1 are
    reported in ``extra``); regression by MSE. The algorithm is put in ``eval()`` mode for the
    duration (restored afterwards), so a backbone with running batch-norm statistics uses them;
    backbones built with ``track_running_stats=False`` keep using batch statistics.

    Args:
        algorithm: Any :class:`~metalearn.types.Algorithm` (an ``nn.Module``).
        episodes: Any iterable of :class:`~metalearn.types.Episode`, for example
            ``FixedEpisodes(source, n_way, k_shot, n_query, n_episodes=600, seed=0)``. Use at
            least :data:`DEFAULT_EPISODES` for a reported number.
        batch_size: Episodes handled together. When above 1 and the algorithm has an optional
            ``adapt_batch(support_x (n_tasks, n_support, ...), support_y)`` method returning a
            predictor of ``query_x (n_tasks, n_query_total, ...)`` (adapting many tasks at once),
            it is used; otherwise episodes are adapted one by one. Results do not depend on it.
        device: Where to run; defaults to the device of the algorithm's parameters.
        progress: Show a tqdm bar; ``None`` shows it only when stderr is a terminal.
        desc: Label of the progress bar.
        ranking_k: Regression tasks whose query targets are ratings (a recommender's users):
            also report ``ndcg@k`` for each ``k`` (:func:`~metalearn.eval.metrics.ndcg_at_k`,
            ties in the predictions counted at their expected gain).

    Returns:
        An :class:`EvalResult`.

    Raises:
        ValueError: if ``episodes`` is empty or ``batch_size < 1``.

    Examples:
        >>> from metalearn.types import Episode
        >>> class Nearest(torch.nn.Module):  # 1-nearest-neighbour, no parameters
        ...     def adapt(self, sx, sy):
        ...         return lambda qx: -torch.cdist(qx, sx)[:, sy.argsort()]
        >>> ep = Episode(torch.tensor([[0.0], [1.0]]), torch.tensor([0, 1]),
        ...              torch.tensor([[0.1], [0.9]]), torch.tensor([0, 1]))
        >>> r = evaluate(Nearest(), [ep, ep], progress=False)
        >>> r.metric, r.mean, r.ci95, r.n
        ('accuracy', 1.0, 0.0, 2)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else _device_of(algorithm)
    try:
        total = len(episodes)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="ep", disable=not progress, dynamic_ncols=True)
    was_training = getattr(algorithm, "training", False)
    if hasattr(algorithm, "eval"):
        algorithm.eval()
    per_episode: list[float] = []
    others: dict[str, list[float]] = {}  # the extra metrics, per episode
    metric = None
    start = time.perf_counter()
    try:
        for group in _groups(episodes, batch_size):
            group = [ep.to(device) for ep in group]
            for ep, pred in zip(group, _predictions(algorithm, group)):
                metric = "accuracy" if ep.is_classification else "mse"
                per_episode.append(accuracy(pred, ep.query_y) if ep.is_classification
                                   else mse(pred, ep.query_y))
                for name, value in _extra_metrics(pred, ep, ranking_k).items():
                    others.setdefault(name, []).append(value)
            bar.update(len(group))
            m, c = mean_ci95(per_episode)
            bar.set_postfix_str(f"{metric} {m:.4f} ± {c:.4f}", refresh=False)
    finally:
        bar.close()
        if hasattr(algorithm, "train"):
            algorithm.train(was_training)
    if not per_episode:
        raise ValueError("no episodes to evaluate: pass a non-empty FixedEpisodes or list")
    mean, ci = mean_ci95(per_episode)
    extra = {name: mean_ci95(values) for name, values in others.items()}
    return EvalResult(metric, mean, ci, len(per_episode), per_episode, extra,
                      time.perf_counter() - start)


def combine_results(results: Sequence[EvalResult]) -> EvalResult:
    """One :class:`EvalResult` over the episodes of several (e.g. one per source), as if they had
    been evaluated together: the per-episode scores concatenated, the mean and CI over all of
    them, each ``extra`` metric pooled over the episodes it was measured on.

    Raises:
        ValueError: no results, or results of different metrics.

    Examples:
        >>> a = EvalResult("accuracy", 0.5, 0.0, 2, [0.5, 0.5])
        >>> b = EvalResult("accuracy", 1.0, 0.0, 2, [1.0, 1.0])
        >>> r = combine_results([a, b])
        >>> r.n, r.mean
        (4, 0.75)
    """
    if not results:
        raise ValueError("no results to combine")
    metrics = {r.metric for r in results}
    if len(metrics) > 1:
        raise ValueError(f"cannot combine results of different metrics {sorted(metrics)}")
    per_episode = [v for r in results for v in r.per_episode]
    mean, ci = mean_ci95(per_episode)
    extra = {name: pooled_mean_ci95([(r.n, *r.extra[name]) for r in results if name in r.extra])
             for name in results[0].extra}
    return EvalResult(results[0].metric, mean, ci, len(per_episode), per_episode, extra,
                      sum(r.seconds for r in results))
