"""Proto-MAML and fo-Proto-MAML: MAML whose output layer starts from the class prototypes.

Triantafillou, Zhu, Dumoulin, Lamblin, Evci, Xu, Goroshin, Gelada, Swersky, Manzagol and
Larochelle, "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few Examples",
ICLR 2020 (arXiv:1903.03096), section 3.

MAML meta-learns one initialisation of a fixed-size output layer, which cannot serve episodes
whose number of ways varies (Meta-Dataset draws 5 to 50). Proto-MAML builds the output layer of
each episode from the prototypes of its support features instead: with ``c_k`` the mean
feature of class ``k`` (ProtoNet's prototype), ``w_k = 2 c_k`` and ``b_k = -||c_k||^2``, the
layer whose logits equal ProtoNet's negative squared distances up to a per-query constant,
so its class probabilities at step 0 are ProtoNet's (Snell et al. 2017, section 2.3). The whole
network (the backbone and that layer) then takes ``inner_steps`` gradient steps on the
support loss, and the query loss at the adapted weights is the meta-loss.

How the meta-gradient flows, as the reference does it (``meta_dataset/learners/
optimization_learners.py``, ``MAMLLearner`` with ``proto_maml_fc_layer_init=True``): the
prototype layer is computed from the support features at the meta-parameters and is a
differentiable function of them; ``first_order`` (``fo-Proto-MAML``) stops the gradient of the
inner steps only (``gradient_descent_step(..., stop_grads=first_order)``), not of that
initialisation. So the first-order meta-gradient is the query gradient at the adapted weights,
passed to the body directly (its inner updates treated as constants) and through the
prototype layer to the body again (``w' = 2 c(theta) - alpha * stopgrad(g)``). With
``first_order=False`` everything is differentiated, second order. Only the backbone's
parameters are meta-learned; the output layer exists within an episode only.

Everything else is :class:`~metalearn.algorithms.maml.MAML`'s: the functional inner loop
(:func:`~metalearn.algorithms.functional.inner_loop` with an update rule), the per-task
meta-gradient and the task modes. A meta-batch that is an
:class:`~metalearn.types.EpisodeList` of episodes of different shapes is mapped task by task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from metalearn.algorithms.checks import as_batch
from metalearn.algorithms.functional import (
    AdaptedPredictor,
    Differentiate,
    autograd_grad,
    detach,
    func_grad,
    inner_loop,
)
from metalearn.algorithms.maml import MAML, MAMLConfig, MetaParams
from metalearn.algorithms.metric_common import check_support, flatten_features, prototypes
from metalearn.models.heads import Backbone
from metalearn.types import EpisodeBatch, EpisodeList, Params

HEAD_WEIGHT = "proto_head.weight"
"""Name of the per-episode output layer's weight ``(n_way, d)`` among the adapted parameters."""
HEAD_BIAS = "proto_head.bias"
"""Name of the per-episode output layer's bias ``(n_way,)`` among the adapted parameters."""


@dataclass
class ProtoMAMLConfig(MAMLConfig):
    """Hyperparameters of :class:`ProtoMAML`.

    The defaults are Meta-Dataset's for its fo-Proto-MAML model
    (``meta_dataset/learn/gin/models/maml_init_with_proto_config.gin``: ``num_update_steps = 5``,
    ``alpha = 0.01``, ``first_order = True``, ``additional_evaluation_update_steps = 0``,
    ``adapt_batch_norm = False``). Its tuned settings, from a ResNet-18 pretrained on ImageNet
    (``learn/gin/best/maml_init_with_proto_imagenet.gin``: 6 steps, ``alpha = 0.005435``, no
    extra test steps; ``..._all.gin``, trained on all sources: 1 step, ``alpha = 0.01988``, and
    1 + 5 = 6 steps at test time, i.e. ``inner_steps=1, eval_inner_steps=6``).
    """

    inner_lr: float = 0.01
    """Inner-loop SGD step size alpha (Meta-Dataset: 0.01)."""
    inner_steps: int = 5
    """Inner gradient steps on the support set during meta-training (Meta-Dataset: 5). With 0
    the prototype layer is used as it is: ProtoNet's classifier (same probabilities)."""
    eval_inner_steps: int | None = None
    """Inner gradient steps in ``adapt`` (evaluation); ``None``: same as ``inner_steps``
    (Meta-Dataset counts ``num_update_steps + additional_evaluation_update_steps``)."""
    first_order: bool = True
    """fo-Proto-MAML: the inner gradients are constants; the gradient still flows through the
    prototype initialisation of the output layer, as in the reference. ``False``: second order."""
    adapt_body: bool = True
    """Adapt the backbone in the inner loop together with the output layer (Proto-MAML);
    ``False`` adapts the prototype layer only (an ANIL-style variant)."""


def prototype_head(features: Tensor, labels: Tensor, n_way: int) -> tuple[Tensor, Tensor]:
    """The linear layer equivalent to ProtoNet's squared-Euclidean classifier.

    ``w_k = 2 c_k`` and ``b_k = -||c_k||^2`` for the prototypes ``c_k``, so that
    ``w_k . z + b_k = -||z - c_k||^2 + ||z||^2``: ProtoNet's logits plus a per-row constant.

    Args:
        features: Support features ``(..., n_support, d)``.
        labels: Support labels ``(..., n_support)`` in ``0..n_way-1``, every class present.
        n_way: Number of classes.

    Returns:
        ``(weight, bias)`` of shapes ``(..., n_way, d)`` and ``(..., n_way)``.

    Examples:
        >>> import torch
        >>> w, b = prototype_head(torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]),
        ...                       torch.tensor([0, 0, 1]), 2)
        >>> w, b
        (tensor([[4., 0.],
                [0., 4.]]), tensor([-4., -4.]))
    """
    protos = prototypes(features, labels, n_way)
    return 2.0 * protos, -(protos * protos).sum(-1)


def _grad_at_detached(fn: Callable[[Params], tuple[Tensor, Any]], create_graph: bool = False):
    """The gradient of ``fn`` at detached copies of ``params``: constants, for first order."""
    at_leaves = autograd_grad(fn, create_graph=False)
    return lambda params: at_leaves(detach(params))


class ProtoMAML(MAML):
    """Proto-MAML over a feature extractor; fo-Proto-MAML by default.

    Args:
        backbone: Maps inputs ``(n, *x_shape)`` to features ``(n, *feature_shape)``
            (flattened to ``(n, d)``), without an output layer of its own (a metalearn
            backbone built with ``out_features=None``) and without running statistics. Its
            parameters are the meta-parameters (used, never copied).
        config: Hyperparameters; defaults to :class:`ProtoMAMLConfig()`.

    Raises:
        ValueError: for a backbone that ends in its own head, and for MAML's reasons (a bad
            ``inner_lr`` or step count, an unknown ``task_mode``, running-statistics norm).

    Examples:
        >>> import torch
        >>> from metalearn.models import MLP
        >>> from metalearn.types import Episode
        >>> algo = ProtoMAML(MLP(4, (8,), out_features=None), ProtoMAMLConfig(inner_lr=0.1, inner_steps=2))
        >>> y = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> ep = Episode(torch.randn(6, 4), y, torch.randn(6, 4), y)
        >>> loss, metrics = algo.meta_loss([ep, ep])
        >>> loss.backward(); sorted(metrics)
        ['accuracy', 'loss']
        >>> algo.adapt(ep.support_x, ep.support_y)(ep.query_x).shape
        torch.Size([6, 3])
    """

    config: ProtoMAMLConfig

    def __init__(self, backbone: nn.Module, config: ProtoMAMLConfig | None = None):
        config = config or ProtoMAMLConfig()
        if isinstance(backbone, Backbone) and backbone.head is not None:
            raise ValueError(
                "ProtoMAML builds the output layer of each episode from the prototypes, but "
                f"this backbone ends in its own head of {backbone.head.out_features} outputs: "
                "build it with out_features=None (flat features)"
            )
        super().__init__(backbone, config)
        self._body = self._forward  # the backbone as a pure function (MAML's make_forward)
        self._forward = self._with_head
        self._batch_n_way: int | None = None

    def _with_head(self, params: Params, x: Tensor, n_support: int | None = None) -> Tensor:
        """Logits ``(n, n_way)``: the backbone's flat features through the episode's layer."""
        body = {k: v for k, v in params.items() if k not in (HEAD_WEIGHT, HEAD_BIAS)}
        z = flatten_features(self._body(body, x, n_support))
        return z @ params[HEAD_WEIGHT].transpose(-1, -2) + params[HEAD_BIAS]

    def adapted_names(self) -> list[str] | None:
        """All parameters (``adapt_body``) or the prototype layer's only."""
        return None if self.config.adapt_body else [HEAD_WEIGHT, HEAD_BIAS]

    def initial_params(self, meta_params: Params, support_x: Tensor, support_y: Tensor,
                       n_way: int | None = None) -> Params:
        """The inner loop's starting point: ``meta_params`` plus the prototype layer.

        Args:
            meta_params: The backbone's parameters, by name.
            support_x: ``(n_support, *x_shape)``.
            support_y: ``(n_support,)`` labels in ``0..n_way-1``.
            n_way: Number of classes; read from ``support_y`` when ``None``.

        Returns:
            ``meta_params`` with :data:`HEAD_WEIGHT` ``(n_way, d)`` and :data:`HEAD_BIAS`
            ``(n_way,)`` added, differentiable with respect to ``meta_params``.
        """
        n_way = int(support_y.max()) + 1 if n_way is None else n_way
        weight, bias = prototype_head(flatten_features(self._body(meta_params, support_x)), support_y, n_way)
        return {**meta_params, HEAD_WEIGHT: weight, HEAD_BIAS: bias}

    def _adapt(self, meta: MetaParams, support_x: Tensor, support_y: Tensor, steps: int,
               first_order: bool, differentiate: Differentiate) -> tuple[Params, Tensor]:
        """Prototype layer, then the inner loop: ``(adapted_params, support_losses (steps,))``."""
        # Under vmap n_way cannot be read from a label tensor: meta_loss supplies the batch's.
        start = self.initial_params(meta.params, support_x, support_y, self._batch_n_way)
        if differentiate is autograd_grad:
            # The plain engine differentiates the support loss with respect to the body through
            # the prototype layer too (that layer is a function of the body), which is not the
            # inner gradient: take it at detached copies (first order: constants anyway), or
            # with torch.func.grad, whose inputs are independent variables (second order).
            differentiate = _grad_at_detached if first_order else func_grad
        return inner_loop(self._forward, start, support_x, support_y, self.make_rule(meta.rule), steps,
                          first_order=first_order, adapt=self.adapted_names(), differentiate=differentiate)

    def meta_loss(self, batch: EpisodeBatch | EpisodeList) -> tuple[Tensor, dict[str, float]]:
        """Mean query loss after adaptation, over the classification tasks of ``batch``.

        Args:
            batch: An :class:`EpisodeBatch` (tasks of one shape) or a list of episodes that may
                differ in ``n_way``, ``k_shot`` and ``n_query`` (mapped task by task).

        Returns:
            ``(loss, metrics)``: a scalar whose ``backward()`` deposits the meta-gradient in the
            backbone's parameters, and floats ``loss`` and ``accuracy`` on the query sets.

        Raises:
            ValueError: for labels that are not integers or a class without support examples.
            FloatingPointError: if a support or query loss is NaN/inf (names task and step).
        """
        tasks = as_batch(batch)
        if isinstance(tasks, EpisodeBatch):  # one vectorised check: every task has this n_way
            n_way = check_support(tasks.support_y, None, tasks.query_y)
        else:
            n_way = None
            for ep in tasks:
                check_support(ep.support_y, None, ep.query_y)
        self._batch_n_way = n_way
        try:
            return super().meta_loss(tasks)
        finally:
            self._batch_n_way = None

    def adapt(self, support_x: Tensor, support_y: Tensor) -> AdaptedPredictor:
        """Adapt to one task with ``eval_inner_steps`` steps; the meta-parameters are untouched.

        Args:
            support_x: ``(n_support, *x_shape)``.
            support_y: ``(n_support,)`` labels in ``0..n_way-1``, every class present.

        Returns:
            A predictor mapping ``query_x`` ``(n, *x_shape)`` to logits ``(n, n_way)``.

        Raises:
            ValueError: for labels that are not integers or a class without support examples.
        """
        check_support(support_y)
        return super().adapt(support_x, support_y)
