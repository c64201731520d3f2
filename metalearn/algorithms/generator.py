"""A parameter-generating meta-model: a set encoder writes the classifier head of each task.

Gidaris and Komodakis, "Dynamic Few-Shot Visual Learning without Forgetting", CVPR 2018;
Qiao, Liu, Shen and Yuille, "Few-Shot Image Recognition by Predicting Parameters from
Activations", CVPR 2018; the set encoders of VERSA (Gordon et al., ICLR 2019) and LEO (Rusu et
al., ICLR 2019); FiLM task conditioning as in CNAPs (Requeima et al., NeurIPS 2019).

The backbone embeds every support example, ``z_i = f(x_i)``. A Deep-Sets encoder reads the
labelled support set: ``h_i = phi(z_i)``, class summaries ``c_k = mean_{y_i = k} h_i``, a task
context ``t = mean_k c_k`` and per-class codes ``u_k = rho([c_k, t])``. The head of the task
is generated from them,

    w_k = zbar_k + A u_k,    weight_k = 2 w_k,    bias_k = -|w_k|^2 + b(u_k),

where ``zbar_k`` is the class mean embedding. ``A`` and ``b`` start at zero, so an untrained
generator is exactly ProtoNet's linear classifier (Snell et al. 2017, section 2.3); meta-training
learns how the rest of the task (the other classes, the spread of the examples) should move
each class's weights. The head is invariant to the order of the support examples and
equivariant to relabelling the classes (tested).

Options: ``film`` also generates a per-channel scale and shift (``1 + gamma``, ``beta``, from
``t``) for every block of a metalearn backbone; the context then comes from a first,
unmodulated pass over the support set. ``finetune_steps`` takes that many gradient steps on the
support cross-entropy starting from the generated head (the backbone stays fixed); with 0
steps the predictor uses exactly the generated parameters. Meta-training differentiates
through those steps (cheap: they touch the head only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.algorithms.functional import autograd_grad, inner_loop
from metalearn.algorithms.metric_common import (
    check_support,
    embed_support_query,
    episodic_loss,
    flatten_features,
    prototypes,
)
from metalearn.models.film import film_sites, modulated
from metalearn.models.heads import run_backbone
from metalearn.optim.update_rules import check_lr, sgd
from metalearn.types import Episode, EpisodeBatch, Params


@dataclass
class GeneratorConfig:
    """Hyperparameters of :class:`ParameterGenerator`."""

    hidden: int = 128
    """Width of the set encoder (``phi`` and ``rho``)."""
    film: bool = False
    """Also generate a FiLM scale and shift per backbone block (Conv4, MLP, ResNet-12)."""
    finetune_steps: int = 0
    """Gradient steps on the support set from the generated head (0: use it as generated)."""
    eval_finetune_steps: int | None = None
    """Fine-tuning steps in ``adapt``; ``None``: same as ``finetune_steps``."""
    finetune_lr: float = 0.1
    """Step size of the head fine-tuning."""
    feature_dim: int | None = None
    """Embedding size of a backbone without ``out_dim`` (a plain ``nn.Module``); else ``None``."""


def feature_size(backbone: nn.Module, given: int | None = None) -> int:
    """The flat output size of ``backbone``: ``given``, or a metalearn backbone's ``out_dim``.

    Raises:
        ValueError: for a backbone that ends in a classifier head, or a plain module without
            ``out_dim`` and no ``given`` size.
    """
    if given is not None:
        return int(given)
    if getattr(backbone, "head", None) is not None:
        raise ValueError("the backbone ends in a linear head (out_features is set), but the "
                         "generator writes the head itself: build it with out_features=None "
                         "(CLI: --set model.out_features=null)")
    if not hasattr(backbone, "out_dim"):
        raise ValueError(f"cannot tell the embedding size of {type(backbone).__name__}: pass "
                         "feature_dim in the config (algorithm.feature_dim=...)")
    return int(backbone.out_dim)


def linear_head(params: Params, features: Tensor, n_support: int | None = None) -> Tensor:
    """Logits ``(n, n_way)`` of features ``(n, d)`` under a head ``{"weight": (n_way, d), "bias": (n_way,)}``."""
    return features @ params["weight"].transpose(-1, -2) + params["bias"]


class GeneratorPredictor:
    """Classifies queries with the head generated from one support set.

    Returned by :meth:`ParameterGenerator.adapt`. As in ProtoNet, the support set is embedded
    together with each query batch (batch-statistics normalisation sees the same composition as
    in meta-training), so the head is generated per call; :meth:`head` returns it.
    """

    def __init__(self, algo: ParameterGenerator, support_x: Tensor, support_y: Tensor,
                 n_way: int, steps: int):
        self.algo, self.support_x, self.support_y = algo, support_x, support_y
        self.n_way, self.steps = n_way, steps

    def head(self, query_x: Tensor) -> Params:
        """The (fine-tuned) head used for ``query_x``: ``weight (n_way, d)``, ``bias (n_way,)``."""
        return self.algo.task_head(self.support_x, self.support_y, query_x, self.n_way, self.steps)[0]

    def __call__(self, query_x: Tensor) -> Tensor:
        """Logits ``(n, n_way)`` for queries ``(n, *x_shape)``."""
        head, zq = self.algo.task_head(self.support_x, self.support_y, query_x, self.n_way, self.steps)
        return linear_head(head, zq)


class ParameterGenerator(nn.Module):
    """Generates each task's classifier head (and optionally FiLM) from its support set.

    Args:
        backbone: Feature extractor ``(n, *x_shape) -> (n, d)`` without a head (any metalearn
            backbone with ``out_features=None``, or a module with ``config.feature_dim``).
        config: Hyperparameters; defaults to :class:`GeneratorConfig()`.

    Raises:
        ValueError: a backbone with a head, unknown embedding size, FiLM on an unknown
            backbone, negative fine-tuning steps or learning rate.

    Examples:
        >>> from metalearn.models import MLP
        >>> algo = ParameterGenerator(MLP(4, (16,), out_features=None), GeneratorConfig(hidden=8))
        >>> predictor = algo.adapt(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> predictor(torch.randn(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, backbone: nn.Module, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = cfg = config or GeneratorConfig()
        for name in ("finetune_steps", "eval_finetune_steps"):
            steps = getattr(cfg, name)
            if steps is not None and (int(steps) != steps or steps < 0):
                raise ValueError(f"{name} must be an integer >= 0 (0 uses the generated head "
                                 f"as it is), got {steps!r}")
        check_lr(cfg.finetune_lr, "finetune_lr")
        self.backbone = backbone
        d, h = feature_size(backbone, cfg.feature_dim), cfg.hidden
        self.phi = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h))
        self.rho = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU())
        self.to_weight = nn.Linear(h, d)
        self.to_bias = nn.Linear(h, 1)
        zero = [self.to_weight, self.to_bias]
        self.film_sites = film_sites(backbone) if cfg.film else []
        if cfg.film:
            self.to_film = nn.Linear(h, 2 * sum(c for _, c in self.film_sites))
            zero.append(self.to_film)
        for layer in zero:  # start as ProtoNet's classifier with an unmodulated backbone
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def encode(self, support_z: Tensor, support_y: Tensor, n_way: int) -> tuple[Tensor, Tensor]:
        """The set encoder: per-class codes ``u`` ``(n_way, hidden)`` and context ``t`` ``(hidden,)``.

        Args:
            support_z: Support embeddings ``(n_support, d)``.
            support_y: Labels ``(n_support,)`` in ``0..n_way-1``.
        """
        c = prototypes(self.phi(support_z), support_y, n_way)  # (n_way, hidden)
        t = c.mean(0)
        return self.rho(torch.cat([c, t.expand_as(c)], -1)), t

    def generate(self, support_z: Tensor, support_y: Tensor, n_way: int) -> Params:
        """The generated head of one task.

        Args:
            support_z: Support embeddings ``(n_support, d)``.
            support_y: Labels ``(n_support,)`` in ``0..n_way-1``.
            n_way: Number of classes.

        Returns:
            ``{"weight": (n_way, d), "bias": (n_way,)}``; logits are ``z @ weight.T + bias``.
        """
        u, _ = self.encode(support_z, support_y, n_way)
        w = prototypes(support_z, support_y, n_way) + self.to_weight(u)
        return {"weight": 2 * w, "bias": self.to_bias(u).squeeze(-1) - (w * w).sum(-1)}

    def _film(self, support_x: Tensor, support_y: Tensor, n_way: int) -> tuple[list[Tensor], list[Tensor]]:
        _, t = self.encode(flatten_features(run_backbone(self.backbone, support_x)), support_y, n_way)
        gamma, beta = self.to_film(t).chunk(2)
        sizes = [c for _, c in self.film_sites]
        return [1 + g for g in gamma.split(sizes)], list(beta.split(sizes))

    def task_head(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int,
                  steps: int) -> tuple[Params, Tensor]:
        """Generate (and fine-tune) one task's head; return it with the query embeddings.

        Args:
            support_x: ``(n_way * k_shot, *x_shape)``.
            support_y: ``(n_way * k_shot,)``.
            query_x: ``(n_query_total, *x_shape)``.
            n_way: Number of classes.
            steps: Fine-tuning steps on the support set (0: the generated head).

        Returns:
            ``(head, query_features)`` with ``query_features`` ``(n_query_total, d)``.
        """
        if self.config.film:
            scales, shifts = self._film(support_x, support_y, n_way)
            with modulated(self.backbone, [n for n, _ in self.film_sites], scales, shifts):
                zs, zq = embed_support_query(self.backbone, support_x, query_x)
        else:
            zs, zq = embed_support_query(self.backbone, support_x, query_x)
        zs, zq = flatten_features(zs), flatten_features(zq)
        head = self.generate(zs, support_y, n_way)
        if steps:
            head, _ = inner_loop(linear_head, head, zs, support_y, sgd(self.config.finetune_lr),
                                 steps, differentiate=autograd_grad)
        return head, zq

    def logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """Query logits ``(n_query_total, n_way)`` of one task, as in meta-training (differentiable)."""
        head, zq = self.task_head(support_x, support_y, query_x, n_way, self.config.finetune_steps)
        return linear_head(head, zq)

    def meta_loss(self, batch: EpisodeBatch | Sequence[Episode]) -> tuple[Tensor, dict[str, float]]:
        """Mean query cross-entropy of the generated (and fine-tuned) heads over ``batch``.

        Args:
            batch: An :class:`EpisodeBatch` or a list of episodes of any shapes (as in
                :meth:`ProtoNet.meta_loss <metalearn.algorithms.ProtoNet.meta_loss>`).

        Returns:
            The loss (a scalar) and metrics ``{"loss", "accuracy"}`` on the query sets.
        """
        return episodic_loss(batch, self.logits, lambda logits, y, n_way: F.cross_entropy(logits, y))

    def adapt(self, support_x: Tensor, support_y: Tensor) -> GeneratorPredictor:
        """A predictor for a new task; the meta-parameters are untouched.

        Args:
            support_x: ``(n_way * k_shot, *x_shape)``.
            support_y: ``(n_way * k_shot,)`` labels in ``0..n_way-1``.

        Raises:
            ValueError: if the support set is empty or a class has no example.
        """
        n_way = check_support(support_y)
        steps = self.config.eval_finetune_steps
        steps = self.config.finetune_steps if steps is None else steps
        return GeneratorPredictor(self, support_x, support_y, n_way, steps)
