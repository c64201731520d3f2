"""ANIL: Almost No Inner Loop.

Raghu, Raghu, Bengio and Vinyals, "Rapid Learning or Feature Reuse? Towards Understanding the
Effectiveness of MAML", ICLR 2020 (arXiv:1909.09157).

MAML where the inner loop adapts only the network's head (the final linear layer); the body is
shared by all tasks and receives its meta-gradient through the query loss and through the
head's inner updates (second order by default, ``first_order=True`` for the first-order
variant). Everything but the choice of adapted parameters is MAML's.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from metalearn.algorithms.functional import Differentiate, func_grad, inner_loop
from metalearn.algorithms.maml import MAML, MAMLConfig
from metalearn.types import Params


@dataclass
class ANILConfig(MAMLConfig):
    """Hyperparameters of :class:`ANIL`."""

    head: str = "head"
    """Name of the submodule adapted in the inner loop (``head`` in metalearn backbones built
    with ``out_features``)."""


class ANIL(MAML):
    """MAML with an inner loop over the head's parameters only.

    Args:
        backbone: A network ending in a submodule named ``config.head`` (metalearn
            backbones built with ``out_features=n_way``).
        config: Hyperparameters; defaults to :class:`ANILConfig()`.

    Raises:
        ValueError: if the backbone has no parameters under ``config.head``.

    Examples:
        >>> from metalearn.models import MLP
        >>> ANIL(MLP(4, (8,), out_features=3)).head_names
        ['head.weight', 'head.bias']
    """

    def __init__(self, backbone: nn.Module, config: ANILConfig | None = None):
        config = config or ANILConfig()
        super().__init__(backbone, config)
        prefix = config.head + "."
        self.head_names = [n for n, _ in backbone.named_parameters() if n.startswith(prefix)]
        if not self.head_names:
            raise ValueError(
                f"ANIL adapts the parameters of submodule {config.head!r}, but the backbone has "
                "none: build it with out_features=n_way (metalearn.models) or set "
                "config.head to the name of its final layer"
            )

    def _adapt_fn(self, support_x: Tensor, support_y: Tensor, steps: int, first_order: bool):
        def adapt(meta: tuple[Params, Params], differentiate: Differentiate = func_grad):
            params, rule_params = meta
            return inner_loop(self._forward, params, support_x, support_y,
                              self.make_rule(rule_params), steps, first_order=first_order,
                              adapt=self.head_names, differentiate=differentiate)
        return adapt
