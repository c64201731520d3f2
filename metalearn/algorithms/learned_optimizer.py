"""MAML with a learned optimiser as its inner loop, meta-learned jointly with the initialisation.

The rules (Andrychowicz et al. 2016's coordinate-wise LSTM, an MLP reference) live in
:mod:`metalearn.optim.learned_rules`; this module only plugs one into MAML's ``make_rule`` hook,
so one meta-gradient reaches both the backbone's initialisation and the rule's parameters through
the unrolled inner loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from metalearn.algorithms.maml import MAML, MAMLConfig
from metalearn.optim.learned_rules import RULES, LearnedRule
from metalearn.optim.update_rules import UpdateRule
from metalearn.types import Params


@dataclass
class LearnedOptimizerMAMLConfig(MAMLConfig):
    """Hyperparameters of :class:`LearnedOptimizerMAML`."""

    inner_lr: float = 0.1
    """Output scale of the learned rule (0.1 in Andrychowicz et al.); not an SGD step size."""
    rule: Literal["lstm", "mlp"] = "lstm"
    """The inner rule: ``lstm`` (:class:`~metalearn.optim.LSTMRule`) or ``mlp``
    (:class:`~metalearn.optim.MLPRule`)."""
    hidden_size: int = 20
    """Hidden units of the rule (20 for the paper's LSTM)."""


class LearnedOptimizerMAML(MAML):
    """MAML whose inner loop is a learned optimiser, meta-learned jointly with the initialisation.

    The meta-parameters are the backbone's (the initialisation) and the rule's (``rule_module``);
    one meta-gradient reaches both through the unrolled inner loop.

    Args:
        backbone: As for :class:`~metalearn.algorithms.maml.MAML`.
        config: Hyperparameters; defaults to :class:`LearnedOptimizerMAMLConfig()`.
        rule_module: A ready rule module (e.g. one meta-trained by
            :func:`metalearn.optim.train_learned_rule`); default: a new one from ``config.rule``.
    """

    def __init__(self, backbone: nn.Module, config: LearnedOptimizerMAMLConfig | None = None,
                 rule_module: LearnedRule | None = None):
        config = config or LearnedOptimizerMAMLConfig()
        super().__init__(backbone, config)
        if rule_module is None:
            if config.rule not in RULES:
                raise ValueError(f"unknown rule {config.rule!r}; choose one of {sorted(RULES)}")
            rule_module = RULES[config.rule](hidden_size=config.hidden_size, output_scale=config.inner_lr)
        self.rule_module = rule_module

    def rule_params(self) -> Params:
        """The rule's parameters, keyed as in ``rule_module.named_parameters()``."""
        return dict(self.rule_module.named_parameters())

    def make_rule(self, rule_params: Params) -> UpdateRule:
        """The learned rule evaluated at ``rule_params``."""
        return self.rule_module.rule(rule_params)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Until the rename the rule module was the attribute ``optimizer``: state dicts saved then
        # hold ``optimizer.*`` keys, read here as ``rule_module.*`` (before the submodules load).
        old = prefix + "optimizer."
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + "rule_module." + key[len(old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
