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

from torch import nn

from metalearn.algorithms.maml import MAML, MAMLConfig


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

    def adapted_names(self) -> list[str]:
        """The head's parameter names: the only ones the inner loop adapts."""
        return self.head_names
