"""Non-episodic pretraining: train a :class:`~metalearn.algorithms.Baseline` as a classifier.

Chen et al. (ICLR 2019) pretrain the backbone and a head over all meta-train classes with
ordinary cross-entropy on shuffled minibatches; the algorithm supplies the per-batch loss
(:meth:`Baseline.pretrain_loss`) and this module drives the loop: the seeded minibatch order
(:func:`class_minibatches`) and the Adam steps (:func:`pretrain`). The shared episodic loop
(:func:`metalearn.train.train`) can instead train the same objective through
``Baseline.meta_loss``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import torch
from torch import Tensor

from metalearn._rng import make_generator
from metalearn.algorithms.baseline import Baseline
from metalearn.data.base import ClassDataset


def class_minibatches(dataset: ClassDataset, batch_size: int, seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled ``(x, y)`` minibatches of a dataset's examples for pretraining.

    Each pass over the data is a fresh seeded permutation (the last partial batch is dropped).

    Args:
        dataset: A :class:`~metalearn.data.ClassDataset` of the meta-train classes.
        batch_size: Examples per minibatch.
        seed: Seed of the shuffling.

    Yields:
        ``x`` ``(batch_size, *item_shape)`` and dataset class ids ``y`` ``(batch_size,)``.

    Examples:
        >>> import numpy as np
        >>> ds = ClassDataset(np.zeros((6, 2), np.float32), np.array([0, 0, 1, 1, 2, 2]), ["a", "b", "c"])
        >>> x, y = next(class_minibatches(ds, batch_size=4))
        >>> tuple(x.shape), tuple(y.shape)
        ((4, 2), (4,))
    """
    if batch_size < 1 or batch_size > len(dataset):
        raise ValueError(f"batch_size must lie in 1..{len(dataset)} (the dataset size), got {batch_size}")
    g = make_generator(seed, "baseline-pretrain")
    labels = torch.as_tensor(dataset.labels)
    while True:
        for idx in torch.randperm(len(dataset), generator=g).split(batch_size):
            if len(idx) == batch_size:
                yield dataset.gather(idx), labels[idx]


def pretrain(algo: Baseline, dataset: ClassDataset, steps: int, batch_size: int = 64, lr: float = 1e-3,
             seed: int = 0, progress: bool | None = None) -> list[dict[str, float]]:
    """Pretrain ``algo`` (backbone and head) as an ordinary classifier with Adam.

    Args:
        algo: A :class:`~metalearn.algorithms.Baseline` whose ``n_classes`` equals
            ``dataset.num_classes``.
        dataset: The meta-train classes.
        steps: Number of minibatch steps.
        batch_size: Examples per step.
        lr: Adam learning rate (the paper's 1e-3).
        seed: Seed of the minibatch order.
        progress: Show a tqdm bar with the running loss and accuracy (as ``metalearn train``
            does); ``None`` shows it only when stderr is a terminal.

    Returns:
        The metrics ``{"loss", "accuracy"}`` of every step.

    Raises:
        ValueError: if the dataset's number of classes differs from ``BaselineConfig.n_classes``.
    """
    if dataset.num_classes != algo.config.n_classes:
        raise ValueError(f"the dataset has {dataset.num_classes} classes but BaselineConfig.n_classes is "
                         f"{algo.config.n_classes}: make them equal.")
    from tqdm.auto import tqdm

    device = next(algo.parameters()).device
    opt = torch.optim.Adam(algo.parameters(), lr=lr)
    history = []
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=steps, desc="pretrain", unit="step", disable=not show, dynamic_ncols=True) as bar:
        for _, (x, y) in zip(range(steps), class_minibatches(dataset, batch_size, seed)):
            loss, metrics = algo.pretrain_loss(x.to(device), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(metrics)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
    return history
