"""Optimisers: inner-loop update rules, learned rules, their meta-training, and the outer loop's.

One home for everything that turns gradients into parameter updates, low in the layer order
(``types -> optim -> algorithms -> eval -> train``; nothing here imports the algorithms):

- :mod:`~metalearn.optim.update_rules`: the pure ``(init, update)`` rules of the inner loops,
  optax style (:func:`sgd`, :func:`meta_sgd`, :func:`chain`, ...), each with a named state type;
- :mod:`~metalearn.optim.learned_rules`: rules whose own parameters are meta-learned
  (:class:`LSTMRule` of Andrychowicz et al. 2016, :class:`MLPRule`, :class:`MetaSGDRule`);
- :mod:`~metalearn.optim.problems`: problem families to meta-train them on;
- :mod:`~metalearn.optim.training`: :func:`unroll` and :func:`train_learned_rule` (truncated
  backpropagation through unrolled optimisation);
- :mod:`~metalearn.optim.torch_optimizer`: :class:`LearnedOptimizer`, a learned rule as a
  ``torch.optim.Optimizer``;
- :mod:`~metalearn.optim.meta_optimizer`: :func:`meta_optimizer`, the Adam / SGD of
  ``metalearn train``'s outer loop.

MAML with a learned inner rule is an algorithm:
:class:`metalearn.algorithms.learned_optimizer.LearnedOptimizerMAML`.
"""

from metalearn.optim.learned_rules import (
    RULES,
    LearnedRule,
    LearnedRuleState,
    LSTMRule,
    MetaSGDRule,
    MLPRule,
    lstm_cell,
    preprocess_gradients,
)
from metalearn.optim.meta_optimizer import meta_optimizer
from metalearn.optim.problems import BlobMLPFamily, Optimizee, QuadraticFamily, SinusoidMLPFamily
from metalearn.optim.torch_optimizer import LearnedOptimizer
from metalearn.optim.training import RuleTrainingConfig, evaluate_rule, train_learned_rule, unroll
from metalearn.optim.update_rules import (
    ChainState,
    EmptyState,
    UpdateRule,
    apply_updates,
    chain,
    check_lr,
    clip_by_global_norm,
    meta_sgd,
    scale,
    sgd,
)

__all__ = [
    "RULES", "BlobMLPFamily", "ChainState", "EmptyState", "LSTMRule", "LearnedOptimizer",
    "LearnedRule", "LearnedRuleState", "MLPRule", "MetaSGDRule", "Optimizee", "QuadraticFamily",
    "RuleTrainingConfig", "SinusoidMLPFamily", "UpdateRule", "apply_updates", "chain", "check_lr",
    "clip_by_global_norm", "evaluate_rule", "lstm_cell", "meta_optimizer", "meta_sgd",
    "preprocess_gradients", "scale", "sgd", "train_learned_rule", "unroll",
]
