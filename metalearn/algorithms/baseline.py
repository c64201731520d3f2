"""Baseline and Baseline++: pretrain a classifier, then fit a new head per task.

Chen, Liu, Kira, Wang and Huang, "A Closer Look at Few-shot Classification", ICLR 2019
(arXiv:1904.04232).

*Pretraining* is ordinary, non-episodic classification: the backbone plus a head over all
meta-train classes, trained with cross-entropy on ``(x, y)`` minibatches
(:meth:`Baseline.pretrain_loss`; :func:`pretrain` runs it over a dataset). :meth:`Baseline.meta_loss` trains the same objective from an
:class:`EpisodeBatch` (every support and query example labelled with its dataset class id,
``class_ids``), so the shared training loop can run it unchanged. Baseline uses a linear head;
Baseline++ a cosine head, ``logits = scale * cos(w_c, f(x))``, which is invariant to the scale
of the features and reduces intra-class variation.

*Adaptation* freezes the backbone, embeds the support set once and fits a fresh head of the
same kind on it (full-batch Adam on the fixed features; the paper uses 100 SGD epochs with
batch 4). Heads of many tasks are fitted at once (:func:`fit_heads`, :meth:`Baseline.adapt_batch`).
The pretrained backbone can come from a user's checkpoint (:func:`load_backbone`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn._rng import make_generator
from metalearn.algorithms.metric_common import (
    check_support,
    cosine_similarity,
    flatten_features,
    prototypes,
)
from metalearn.data.base import ClassDataset
from metalearn.models.heads import run_backbone
from metalearn.types import EpisodeBatch


@dataclass
class BaselineConfig:
    """Hyperparameters of :class:`Baseline` (``head="linear"``) and Baseline++ (``"cosine"``)."""

    n_classes: int = 0
    """Number of meta-train classes: the size of the pretraining head (required)."""

    head: Literal["linear", "cosine"] = "linear"
    """Linear head (Baseline) or cosine head (Baseline++)."""

    feature_dim: int | None = None
    """Backbone feature size; read from ``backbone.out_dim`` when ``None``."""

    scale: float | None = None
    """Cosine-head temperature; ``None`` uses the paper code's rule: 2 for heads of at most
    200 classes, else 10."""

    finetune_steps: int = 100
    """Full-batch optimisation steps of a new task's head."""

    finetune_lr: float = 0.01
    """Adam learning rate of a new task's head."""

    finetune_weight_decay: float = 1e-3
    """L2 penalty on a new task's head weights (the paper's 1e-3)."""


def head_logits(features: Tensor, weight: Tensor, bias: Tensor | None, kind: str, scale: float) -> Tensor:
    """Logits of a linear or cosine head.

    Args:
        features: ``(..., n, d)``.
        weight: ``(..., n_classes, d)``.
        bias: ``(..., n_classes)`` for a linear head, ``None`` for a cosine head.
        kind: ``"linear"`` or ``"cosine"``.
        scale: Temperature of the cosine head.

    Returns:
        ``(..., n, n_classes)``.
    """
    if kind == "cosine":
        return scale * cosine_similarity(features, weight)
    return features @ weight.transpose(-1, -2) + bias.unsqueeze(-2)


def cosine_scale(n_classes: int, scale: float | None) -> float:
    """The cosine-head temperature: ``scale`` if given, else 2 (<= 200 classes) or 10."""
    return float(scale) if scale is not None else (2.0 if n_classes <= 200 else 10.0)


def fit_heads(features: Tensor, labels: Tensor, n_way: int, config: BaselineConfig) -> tuple[Tensor, Tensor | None]:
    """Fit one new head per task on fixed support features, all tasks at once.

    Each task's loss is its own mean cross-entropy and Adam is elementwise, so fitting a stack
    of tasks gives the same heads as fitting each task alone.

    Args:
        features: Support features ``(n_tasks, n_support, d)`` (treated as constants).
        labels: ``(n_tasks, n_support)`` in ``0..n_way-1``.
        n_way: Number of classes per task.
        config: Head kind and fine-tuning hyperparameters.

    Returns:
        Weights ``(n_tasks, n_way, d)`` and biases ``(n_tasks, n_way)`` (``None`` for a cosine head).
    """
    # Runs inside an evaluator's no_grad/inference_mode too: the head is fitted by gradients.
    with torch.inference_mode(False), torch.enable_grad():
        features = features.detach().clone()
        scale = cosine_scale(n_way, config.scale)
        if config.head == "cosine":  # start from the normalised class means ("weight imprinting")
            init = prototypes(F.normalize(features, dim=-1), labels, n_way)
        else:
            init = torch.zeros(*features.shape[:-2], n_way, features.shape[-1], dtype=features.dtype, device=features.device)
        weight = init.clone().requires_grad_(True)
        bias = None if config.head == "cosine" else features.new_zeros(weight.shape[:-1]).requires_grad_(True)
        params = [weight] + ([bias] if bias is not None else [])
        opt = torch.optim.Adam(params, lr=config.finetune_lr, eps=1e-6)  # eps: no sign-amplified rounding noise
        for _ in range(config.finetune_steps):
            logits = head_logits(features, weight, bias, config.head, scale)
            ce = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")
            loss = ce.view(labels.shape).mean(-1).sum() + 0.5 * config.finetune_weight_decay * (weight**2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return weight.detach(), None if bias is None else bias.detach()


class BaselinePredictor:
    """Frozen backbone plus the heads fitted by :meth:`Baseline.adapt` / :meth:`Baseline.adapt_batch`.

    Called on ``(n, *x_shape)`` (one task) or ``(n_tasks, n, *x_shape)`` (batched) queries.
    """

    def __init__(self, backbone: nn.Module, support_x: Tensor, weight: Tensor, bias: Tensor | None,
                 kind: str, scale: float, batched: bool):
        self.backbone, self.support_x, self.weight, self.bias = backbone, support_x, weight, bias
        self.kind, self.scale, self.batched = kind, scale, batched

    def __call__(self, query_x: Tensor) -> Tensor:
        """Logits ``(n, n_way)``, or ``(n_tasks, n, n_way)`` for a batched predictor."""
        query_x = query_x if self.batched else query_x.unsqueeze(0)
        with torch.no_grad():
            z = torch.stack([query_features(self.backbone, s, q) for s, q in zip(self.support_x, query_x)])
            logits = head_logits(z, self.weight, self.bias, self.kind, self.scale)
        return logits if self.batched else logits[0]


def query_features(backbone: nn.Module, support_x: Tensor, query_x: Tensor) -> Tensor:
    """Flat query features ``(n, d)``; the support rows go along so that ``norm="task"``
    normalises the queries with the support statistics, as when the head was fitted."""
    ns = support_x.shape[0]
    return flatten_features(run_backbone(backbone, torch.cat([support_x, query_x]), ns)[ns:])


class Baseline(nn.Module):
    """Baseline / Baseline++ over any feature extractor.

    Args:
        backbone: Maps ``(n, *x_shape)`` to features ``(n, *feature_shape)`` (flattened).
        config: Hyperparameters; ``n_classes`` is required.

    Examples:
        >>> algo = Baseline(nn.Linear(4, 8), BaselineConfig(n_classes=10, feature_dim=8))
        >>> loss, metrics = algo.pretrain_loss(torch.randn(16, 4), torch.randint(0, 10, (16,)))
        >>> algo.adapt(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]))(torch.randn(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(self, backbone: nn.Module, config: BaselineConfig):
        super().__init__()
        self.config = config
        if config.n_classes < 1:
            raise ValueError("Baseline needs BaselineConfig.n_classes: the number of meta-train classes it pretrains on.")
        if config.head not in ("linear", "cosine"):
            raise ValueError(f"unknown head {config.head!r}; choose 'linear' (Baseline) or 'cosine' (Baseline++)")
        dim = config.feature_dim or getattr(backbone, "out_dim", None)
        if dim is None:
            raise ValueError("set BaselineConfig.feature_dim or use a backbone with an `out_dim` attribute.")
        self.backbone = backbone
        self.head = nn.Linear(int(dim), config.n_classes, bias=config.head == "linear")
        self.scale = cosine_scale(config.n_classes, config.scale)

    def pretrain_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of the pretraining classifier on a minibatch.

        Args:
            x: ``(n, *x_shape)``.
            y: ``(n,)`` dataset class ids in ``0..n_classes-1``.

        Returns:
            The loss and metrics ``{"loss", "accuracy"}``.
        """
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.config.n_classes):
            raise ValueError(
                f"class ids span {int(y.min())}..{int(y.max())} but the pretraining head has "
                f"{self.config.n_classes} classes: set BaselineConfig.n_classes to the number of "
                "meta-train classes (class ids must index them)."
            )
        z = flatten_features(run_backbone(self.backbone, x))
        logits = head_logits(z, self.head.weight, self.head.bias, self.config.head, self.scale)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "accuracy": (logits.argmax(-1) == y).float().mean().item()}

    def meta_loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, float]]:
        """Pretraining loss on every example of ``batch``, labelled by its dataset class id.

        Raises:
            ValueError: if the batch has no ``class_ids``.
        """
        if batch.class_ids is None:
            raise ValueError(
                "Baseline pretrains on dataset class ids, but this batch has no class_ids: sample "
                "classification episodes from a dataset, or call pretrain_loss(x, y) on minibatches."
            )
        x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        return self.pretrain_loss(x, torch.gather(batch.class_ids, 1, y).flatten())

    def adapt_batch(self, support_x: Tensor, support_y: Tensor) -> BaselinePredictor:
        """Fit new heads for a stack of tasks with the frozen backbone.

        Args:
            support_x: ``(n_tasks, n_way * k_shot, *x_shape)``.
            support_y: ``(n_tasks, n_way * k_shot)`` labels in ``0..n_way-1``.

        Returns:
            A predictor mapping ``(n_tasks, n, *x_shape)`` to ``(n_tasks, n, n_way)``.
        """
        n_way = check_support(support_y)
        with torch.no_grad():  # the backbone is frozen: one forward pass per task's support set
            z = torch.stack([flatten_features(run_backbone(self.backbone, s, s.shape[0])) for s in support_x])
        weight, bias = fit_heads(z, support_y, n_way, self.config)
        scale = cosine_scale(n_way, self.config.scale)
        return BaselinePredictor(self.backbone, support_x, weight, bias, self.config.head, scale, True)

    def adapt(self, support_x: Tensor, support_y: Tensor) -> BaselinePredictor:
        """Fit a new head on one task's support set ``(n_support, *x_shape)``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
        """
        batched = self.adapt_batch(support_x.unsqueeze(0), support_y.unsqueeze(0))
        return BaselinePredictor(self.backbone, batched.support_x, batched.weight, batched.bias,
                                 batched.kind, batched.scale, False)


def class_minibatches(dataset: ClassDataset, batch_size: int, seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled ``(x, y)`` minibatches of a dataset's examples for pretraining.

    Each pass over the data is a fresh seeded permutation (the last partial batch is dropped).

    Args:
        dataset: A :class:`~metalearn.data.ClassDataset` of the meta-train classes.
        batch_size: Examples per minibatch.
        seed: Seed of the shuffling.

    Yields:
        ``x`` ``(batch_size, *item_shape)`` and dataset class ids ``y`` ``(batch_size,)``.
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
             seed: int = 0, log_every: int = 0) -> list[dict[str, float]]:
    """Pretrain ``algo`` (backbone and head) as an ordinary classifier with Adam.

    Args:
        algo: A :class:`Baseline` whose ``n_classes`` equals ``dataset.num_classes``.
        dataset: The meta-train classes.
        steps: Number of minibatch steps.
        batch_size: Examples per step.
        lr: Adam learning rate (the paper's 1e-3).
        seed: Seed of the minibatch order.
        log_every: Print the running metrics every this many steps (0: never).

    Returns:
        The metrics of every step.
    """
    if dataset.num_classes != algo.config.n_classes:
        raise ValueError(f"the dataset has {dataset.num_classes} classes but BaselineConfig.n_classes is "
                         f"{algo.config.n_classes}: make them equal.")
    device = next(algo.parameters()).device
    opt = torch.optim.Adam(algo.parameters(), lr=lr)
    history = []
    for step, (x, y) in zip(range(1, steps + 1), class_minibatches(dataset, batch_size, seed)):
        loss, metrics = algo.pretrain_loss(x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(metrics)
        if log_every and step % log_every == 0:
            print(f"pretrain step {step}: loss {metrics['loss']:.4f} accuracy {metrics['accuracy']:.3f}", flush=True)
    return history


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # an optional dependency (extra "train")
            raise ImportError("reading .safetensors needs `pip install safetensors`") from e
        return load_file(str(path))
    # weights_only: a checkpoint is data; never execute code from a user's file.
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (name -> Tensor).")
    return state


def load_backbone(backbone: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load pretrained weights into ``backbone`` (in place) from a user's checkpoint.

    Accepts ``.safetensors`` files and ``.pt``/``.pth`` files read with
    ``torch.load(weights_only=True)``, holding either the backbone's own state dict or one of a
    larger model with the backbone under a prefix such as ``backbone.`` (a :class:`Baseline`
    checkpoint, for example); other entries (heads) are ignored.

    Args:
        backbone: The module to fill; its architecture must match the checkpoint.
        path: The checkpoint file.
        strict: Require every parameter and buffer of ``backbone`` to be present.

    Returns:
        ``backbone``.

    Raises:
        ValueError: if the checkpoint's tensors do not match the backbone (missing names or
            different shapes), naming what differs.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = backbone.state_dict()
    prefixes = sorted({k[: len(k) - len(n)] for k in state for n in own if k.endswith(n)}, key=len)
    best, best_hits = "", -1
    for p in prefixes:
        hits = sum(p + n in state for n in own)
        if hits > best_hits:
            best, best_hits = p, hits
    found = {n: state[best + n] for n in own if best + n in state}
    missing = [n for n in own if n not in found]
    shapes = [f"{n}: checkpoint {tuple(t.shape)} vs backbone {tuple(own[n].shape)}"
              for n, t in found.items() if t.shape != own[n].shape]
    if shapes or (strict and missing):
        unexpected = [k for k in state if not k.startswith(best) or k[len(best):] not in own][:5]
        raise ValueError(
            f"the checkpoint {path.name} does not match the backbone ({type(backbone).__name__}): "
            + (f"shape mismatches {shapes[:5]}; " if shapes else "")
            + (f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}; " if missing else "")
            + f"unmatched checkpoint entries {unexpected}. Build the backbone with the same "
            "architecture (depth, widths, norm) as the one that was saved."
        )
    backbone.load_state_dict(found, strict=strict)
    return backbone
