"""Task-specific adapters (TSA): adapt a frozen pretrained backbone to each task on its support set.

Li, Liu and Bilen, "Cross-domain Few-shot Learning with Task-specific Adapters", CVPR 2022
(arXiv:2107.00358); the pre-classifier transform is from Li, Liu and Bilen, "Universal
Representation Learning from Multiple Domains for Few-shot Classification", ICCV 2021.

*Pretraining* is Baseline's classification over all meta-train classes
(:class:`~metalearn.algorithms.Baseline`, held by composition): :meth:`TSA.meta_loss` is its
loss, so ``metalearn train`` pretrains the backbone and ``metalearn eval`` adapts it with TSA.

*Adaptation* keeps the backbone frozen and learns, on one task's support set only:

- residual adapters in matrix form, ``alpha``: beside every 3x3 convolution of the residual
  blocks (every conv of Conv4), a 1x1 convolution with the conv's stride whose output is
  added to the conv's, ``conv(x) + conv1x1(x; alpha)``. Initialised as the identity scaled by
  1e-4 (the reference code's ``eye`` init; ``alpha_init="zeros"`` starts at exactly the
  frozen backbone);
- a pre-classifier linear transform ``beta`` ``(d, d)`` of the flat features, initialised to
  the identity;

by minimising the nearest-centroid loss of the support set against its own prototypes
(cosine similarity times 10) for 40 Adadelta steps, learning rates 0.5 for ``alpha`` and 1 for
``beta`` (the reference code's settings for domains unseen in training, where the paper's
gains are). Queries are then classified by cosine similarity to the adapted prototypes.

The adapters reach the backbone through forward hooks on its convolutions (PyTorch's public
extension point, as :mod:`metalearn.models.film` does), registered for one forward pass and
removed after it: the backbone's parameters and modules are never changed, and ``adapt``
returns a new predictor holding its own ``alpha`` and ``beta``. Differences from the reference
code: our norms normalise by batch (or support) statistics where the reference ResNet-18 uses
the running statistics of its pretraining (``norm`` of :mod:`metalearn.models.norm`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.baseline import Baseline, BaselineConfig
from metalearn.algorithms.checks import check_steps
from metalearn.algorithms.metric_common import (
    check_support,
    cosine_similarity,
    embed_support_query,
    flatten_features,
    prototypes,
)
from metalearn.models.conv4 import Conv4
from metalearn.models.heads import run_backbone
from metalearn.models.resnet12 import ResNet12
from metalearn.models.resnet18 import ResNet18
from metalearn.types import Episode, EpisodeBatch

SUPPORTED = (Conv4, ResNet12, ResNet18)
"""Backbones TSA attaches adapters to (it knows which of their convolutions are in blocks)."""


@dataclass
class TSAConfig:
    """Hyperparameters of :class:`TSA`: the pretraining head (as :class:`BaselineConfig`) and
    the per-task adaptation."""

    n_classes: int = 0
    """Number of meta-train classes: the size of the pretraining head (required; any value
    >= 1 when the backbone was pretrained elsewhere and TSA only adapts)."""

    head: Literal["linear", "cosine"] = "linear"
    """Pretraining head: linear (Baseline) or cosine (Baseline++)."""

    feature_dim: int | None = None
    """Backbone feature size; read from ``backbone.out_dim`` when ``None``."""

    pretrain_scale: float | None = None
    """Cosine pretraining head's temperature (``BaselineConfig.scale``); ``None``: Baseline's rule."""

    learn_alpha: bool = True
    """Learn the residual adapters (``False``: the pre-classifier transform only, URL's PA)."""

    learn_beta: bool = True
    """Learn the pre-classifier linear transform (``False``: the adapters only)."""

    alpha_init: Literal["eye", "zeros"] = "eye"
    """Adapter initialisation: the identity times ``alpha_init_scale`` (the reference code),
    or zeros (exactly the frozen backbone before the first step)."""

    alpha_init_scale: float = 1e-4
    """Scale of the ``"eye"`` initialisation."""

    steps: int = 40
    """Adadelta steps on the support set per task (0: the frozen backbone's classifier)."""

    lr_alpha: float = 0.5
    """Adadelta learning rate of the adapters."""

    lr_beta: float = 1.0
    """Adadelta learning rate of the pre-classifier transform."""

    temperature: float = 10.0
    """Scale of the cosine similarity in the support loss and the query logits."""


def adapter_sites(backbone: nn.Module) -> list[str]:
    """Names of the convolutions of ``backbone`` that get an adapter: the 3x3 convs of its
    blocks (all of Conv4's; ResNet-12's and ResNet-18's residual blocks, not ResNet-18's stem).

    Raises:
        TypeError: for a backbone TSA cannot attach adapters to, naming the supported ones.

    Examples:
        >>> adapter_sites(Conv4(1, hidden=4, n_blocks=2, image_size=8))
        ['convs.0', 'convs.1']
    """
    if not isinstance(backbone, SUPPORTED):
        raise TypeError(
            f"TSA attaches adapters to the 3x3 convolutions of {', '.join(c.__name__ for c in SUPPORTED)} "
            f"(metalearn.models); {type(backbone).__name__} is not one of them. Build the model with "
            "model.backbone=conv4, resnet12 or resnet18, or use baseline / protonet with this backbone."
        )
    skip = {"conv1"} if isinstance(backbone, ResNet18) else set()  # URL: residual blocks only
    return [name for name, m in backbone.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and name not in skip]


def init_adapters(backbone: nn.Module, sites: Sequence[str], config: TSAConfig) -> list[Tensor]:
    """Fresh adapters ``alpha``, one ``(c_out, c_in, 1, 1)`` tensor per site (see :class:`TSAConfig`)."""
    alphas = []
    for name in sites:
        w = backbone.get_submodule(name).weight
        eye = torch.eye(w.shape[0], w.shape[1], dtype=w.dtype, device=w.device)
        scale = config.alpha_init_scale if config.alpha_init == "eye" else 0.0
        alphas.append((eye * scale)[:, :, None, None])
    return alphas


@contextmanager
def adapted(backbone: nn.Module, sites: Sequence[str], alphas: Sequence[Tensor]) -> Iterator[None]:
    """Within the block, conv ``sites[i]`` outputs ``conv(x) + conv2d(x, alphas[i], stride)``.

    Forward hooks, removed on exit: the backbone's parameters and modules stay as they are.
    """
    def hook(alpha: Tensor):
        def add(conv: nn.Conv2d, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
            return out + F.conv2d(args[0], alpha, stride=conv.stride)
        return add

    handles = [backbone.get_submodule(n).register_forward_hook(hook(a)) for n, a in zip(sites, alphas)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def ncc_logits(features: Tensor, protos: Tensor, beta: Tensor, temperature: float) -> Tensor:
    """Cosine nearest-centroid logits after the pre-classifier transform.

    Args:
        features: ``(n, d)`` flat features.
        protos: ``(n_way, d)`` prototypes, already transformed by ``beta``.
        beta: ``(d, d)``; features map to ``features @ beta.T``.
        temperature: Scale of the cosine similarity.

    Returns:
        ``(n, n_way)``.
    """
    return temperature * cosine_similarity(features @ beta.T, protos)


class TSAPredictor:
    """The frozen backbone with one task's adapters and transform; ``(n, *x_shape) -> (n, n_way)``.

    Attributes:
        alphas: The learned adapters, ``(c_out, c_in, 1, 1)`` each.
        beta: The learned pre-classifier transform ``(d, d)``.
        support_losses: The support loss before each step and after the last, ``steps + 1``
            values (one when nothing is learned).
    """

    def __init__(self, backbone: nn.Module, sites: list[str], alphas: list[Tensor], beta: Tensor,
                 support_x: Tensor, support_y: Tensor, n_way: int, temperature: float,
                 support_losses: list[float]):
        self.backbone, self.sites, self.alphas, self.beta = backbone, sites, alphas, beta
        self.support_x, self.support_y, self.n_way = support_x, support_y, n_way
        self.temperature, self.support_losses = temperature, support_losses

    def __call__(self, query_x: Tensor) -> Tensor:
        """Logits ``(n, n_way)``; the support set goes along (``norm="task"`` statistics)."""
        with torch.no_grad(), adapted(self.backbone, self.sites, self.alphas):
            zs, zq = embed_support_query(self.backbone, self.support_x, query_x)
            protos = prototypes(flatten_features(zs) @ self.beta.T, self.support_y, self.n_way)
            return ncc_logits(flatten_features(zq), protos, self.beta, self.temperature)


class TSA(nn.Module):
    """Task-specific adapters over a Conv4, ResNet-12 or ResNet-18 backbone.

    Args:
        backbone: A :class:`~metalearn.models.Conv4`, :class:`~metalearn.models.ResNet12` or
            :class:`~metalearn.models.ResNet18` returning flat features
            (``out_features=None``). Pretrained by :meth:`meta_loss`, never changed by
            :meth:`adapt`.
        config: Hyperparameters; ``n_classes`` is required (the pretraining head).

    Examples:
        >>> from metalearn.models import Conv4
        >>> algo = TSA(Conv4(1, hidden=4), TSAConfig(n_classes=10, steps=2))
        >>> predictor = algo.adapt(torch.randn(6, 1, 28, 28), torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> predictor(torch.randn(4, 1, 28, 28)).shape
        torch.Size([4, 3])
    """

    def __init__(self, backbone: nn.Module, config: TSAConfig):
        super().__init__()
        self.config = config
        self.sites = adapter_sites(backbone)
        if backbone.head is not None:
            raise ValueError(f"TSA classifies the backbone's features: build the {type(backbone).__name__} "
                             "with out_features=None (model.out_features=null), not with a linear head.")
        if config.alpha_init not in ("eye", "zeros"):
            raise ValueError(f"unknown alpha_init {config.alpha_init!r}; choose 'eye' or 'zeros'")
        check_steps(config.steps, "TSAConfig.steps", minimum=0)
        if config.n_classes < 1:
            raise ValueError("TSA needs TSAConfig.n_classes: the number of meta-train classes its "
                             "pretraining head (Baseline's) classifies; any value >= 1 if the "
                             "backbone was pretrained elsewhere and TSA only adapts it.")
        self.baseline = Baseline(backbone, BaselineConfig(
            n_classes=config.n_classes, head=config.head, feature_dim=config.feature_dim,
            scale=config.pretrain_scale))

    @property
    def backbone(self) -> nn.Module:
        """The pretrained feature extractor (held by the composed :class:`Baseline`)."""
        return self.baseline.backbone

    def meta_loss(self, batch: EpisodeBatch | Sequence[Episode]) -> tuple[Tensor, dict[str, float]]:
        """The pretraining loss: Baseline's classification of every example of ``batch`` over
        all meta-train classes (by its ``class_ids``); see :meth:`Baseline.meta_loss`."""
        return self.baseline.meta_loss(batch)

    def support_loss(self, alphas: Sequence[Tensor], beta: Tensor, support_x: Tensor, support_y: Tensor,
                     n_way: int) -> Tensor:
        """Nearest-centroid cross-entropy of the support set against its own prototypes.

        Args:
            alphas: Adapters, one ``(c_out, c_in, 1, 1)`` tensor per site.
            beta: Pre-classifier transform ``(d, d)``.
            support_x: ``(n_support, *x_shape)``.
            support_y: ``(n_support,)`` labels in ``0..n_way-1``.
            n_way: Number of classes.
        """
        with adapted(self.backbone, self.sites, alphas):
            z = flatten_features(run_backbone(self.backbone, support_x, support_x.shape[0]))
        protos = prototypes(z @ beta.T, support_y, n_way)
        return F.cross_entropy(ncc_logits(z, protos, beta, self.config.temperature), support_y)

    def adapt(self, support_x: Tensor, support_y: Tensor) -> TSAPredictor:
        """Learn this task's adapters and transform on its support set; the backbone stays frozen.

        Args:
            support_x: ``(n_support, *x_shape)``, any number of examples per class.
            support_y: ``(n_support,)`` labels in ``0..n_way-1``.

        Returns:
            A :class:`TSAPredictor` mapping queries ``(n, *x_shape)`` to logits ``(n, n_way)``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
            FloatingPointError: if the support loss stops being finite.
        """
        cfg = self.config
        n_way = check_support(support_y)
        losses = []
        # Runs inside an evaluator's no_grad/inference_mode too: the adapters are fitted by
        # gradients (and autograd cannot save inference tensors: the inputs are cloned out).
        with torch.inference_mode(False), torch.enable_grad():
            support_x, support_y = support_x.clone(), support_y.clone()
            alphas = init_adapters(self.backbone, self.sites, cfg)
            w = alphas[0]
            beta = torch.eye(self.baseline.head.in_features, dtype=w.dtype, device=w.device)
            groups = ([{"params": alphas, "lr": cfg.lr_alpha}] if cfg.learn_alpha else []) + \
                     ([{"params": [beta], "lr": cfg.lr_beta}] if cfg.learn_beta else [])
            learned = [t.requires_grad_(True) for g in groups for t in g["params"]]
            opt = torch.optim.Adadelta(groups) if groups else None
            for step in range(cfg.steps + 1):
                loss = self.support_loss(alphas, beta, support_x, support_y, n_way)
                losses.append(loss.item())
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"TSA's support loss became {loss.item()} at step {step}: lower "
                        "TSAConfig.lr_alpha / lr_beta, or check this task's inputs for NaN/inf.")
                if step == cfg.steps or opt is None:
                    break
                # gradients of the adapters and the transform only: nothing reaches the backbone
                for t, g in zip(learned, torch.autograd.grad(loss, learned)):
                    t.grad = g
                opt.step()
        alphas, beta = [a.detach() for a in alphas], beta.detach()
        return TSAPredictor(self.backbone, self.sites, alphas, beta, support_x, support_y, n_way,
                            cfg.temperature, losses)
