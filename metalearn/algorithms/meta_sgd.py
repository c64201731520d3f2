"""Meta-SGD: MAML with learned per-parameter inner learning rates.

Li, Zhou, Chen and Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning",
arXiv:1707.09835, 2017.

The inner step is ``theta' = theta - alpha * grad L_support(theta)`` where ``alpha`` has one
learning rate per parameter entry (same shape as ``theta``) and is meta-learned together with
``theta`` through the query loss. Everything else is MAML: this class only swaps the update
rule (:func:`metalearn.optim.update_rules.meta_sgd`) and owns the learning rates.

The rates are stored raw, as in the paper, while :class:`metalearn.optim.MetaSGDRule` (the
same rule as a learned optimiser over 100-step unrolls) stores log-rates. Raw rates stay here:
Meta-SGD lets a rate reach zero or turn negative (a learned direction, not only a step size),
``learn_lr=False`` may freeze them at ``inner_lr=0``, Adam on log-rates takes different steps
(the reproduced Meta-SGD figures would move), and checkpoints store these tensors as ``lrs``.
Both classes make their step with the one ``meta_sgd`` rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metalearn.algorithms.maml import MAML, MAMLConfig
from metalearn.optim.update_rules import UpdateRule, meta_sgd
from metalearn.types import Params


@dataclass
class MetaSGDConfig(MAMLConfig):
    """Hyperparameters of :class:`MetaSGD`; ``inner_lr`` initialises every learned rate."""

    learn_lr: bool = True
    """Meta-learn the learning rates (False freezes them at ``inner_lr``: plain MAML)."""


class MetaSGD(MAML):
    """MAML whose inner learning rates are meta-parameters, one per parameter entry.

    Args:
        backbone: As for :class:`~metalearn.algorithms.maml.MAML`.
        config: Hyperparameters; defaults to :class:`MetaSGDConfig()`.

    Examples:
        >>> from metalearn.models import MLP
        >>> algo = MetaSGD(MLP(1, (8,), out_features=1), MetaSGDConfig(inner_lr=0.01))
        >>> sorted(n for n, _ in algo.named_parameters())[:2]
        ['backbone.head.bias', 'backbone.head.weight']
        >>> algo.lrs["head__weight"].shape
        torch.Size([1, 8])
    """

    def __init__(self, backbone: nn.Module, config: MetaSGDConfig | None = None):
        config = config or MetaSGDConfig()
        super().__init__(backbone, config)
        # ParameterDict keys cannot contain dots; "__" keeps them readable in state_dict.
        self._lr_keys = {name: name.replace(".", "__") for name, _ in backbone.named_parameters()}
        self.lrs = nn.ParameterDict({
            key: nn.Parameter(torch.full_like(p.detach(), config.inner_lr),
                              requires_grad=config.learn_lr)
            for (name, p), key in zip(backbone.named_parameters(), self._lr_keys.values())
        })

    def rule_params(self) -> Params:
        """The learned learning rates, keyed by the backbone's parameter names."""
        return {name: self.lrs[key] for name, key in self._lr_keys.items()}

    def make_rule(self, rule_params: Params) -> UpdateRule:
        """Per-parameter SGD with the given learning rates."""
        return meta_sgd(rule_params)
