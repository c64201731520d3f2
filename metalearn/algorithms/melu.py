"""MeLU: Meta-Learned User preference estimator.

Lee, Im, Jang, Cho and Chung, "MeLU: Meta-Learned User Preference Estimator for Cold-Start
Recommendation", KDD 2019 (arXiv:1908.00413).

Each user is a task: the support set is the ratings the user gave, the query set the ratings to
predict. MeLU is MAML over :class:`~metalearn.models.RatingNet` whose *local update* (the inner
loop) adapts only the decision-making layers, on the user's support ratings, while the attribute
embeddings are shared by all users and learned by the *global update* (the outer loop) with
everything else (paper, Algorithm 1). It is the inner loop of MAML with another set of adapted
parameters, as ANIL is, so this file only names them.

The paper's learning rates (local 5e-6, global 5e-5, one local step, batch 32) belong to its
un-normalised setting and 20 epochs on MovieLens-1M; the presets here use the rates that train
on our data in a few minutes of CPU (``metalearn.presets.recommendation``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from metalearn.algorithms.maml import MAML, MAMLConfig


@dataclass
class MeLUConfig(MAMLConfig):
    """Hyperparameters of :class:`MeLU` (defaults: one local step, first-order off)."""

    inner_lr: float = 0.05
    """Local-update step size on the decision layers."""
    shared: str = "embeddings"
    """Name of the backbone submodule kept out of the local update (the attribute embeddings of
    :class:`~metalearn.models.RatingNet`); every other parameter is adapted per user."""


class MeLU(MAML):
    """MAML whose inner loop adapts every parameter except the attribute embeddings.

    Args:
        backbone: A :class:`~metalearn.models.RatingNet` (or any network with a submodule named
            ``config.shared`` holding the parameters to keep shared).
        config: Hyperparameters; defaults to :class:`MeLUConfig()`.

    Raises:
        ValueError: the backbone has no parameters under ``config.shared``, or nothing else.

    Examples:
        >>> from metalearn.models import RatingNet
        >>> melu = MeLU(RatingNet([["item", 5, 1], ["age", 3, 1]], embed_dim=4, hidden=(8, 8)))
        >>> melu.adapted_names()
        ['decision.0.weight', 'decision.0.bias', 'decision.1.weight', 'decision.1.bias', 'head.weight', 'head.bias']
    """

    def __init__(self, backbone: nn.Module, config: MeLUConfig | None = None):
        config = config or MeLUConfig()
        super().__init__(backbone, config)
        prefix = config.shared + "."
        names = [n for n, _ in backbone.named_parameters()]
        self.local_names = [n for n in names if not n.startswith(prefix)]
        if len(self.local_names) == len(names):
            raise ValueError(f"MeLU keeps the parameters of submodule {config.shared!r} out of the local "
                             f"update, but the backbone has none (its parameters: {names[:4]}...): use "
                             "backbone=rating-net or set algorithm.shared to its embedding module")
        if not self.local_names:
            raise ValueError(f"every parameter is under {config.shared!r}: nothing is left for the "
                             "local update to adapt")

    def adapted_names(self) -> list[str]:
        """The decision layers' parameter names: the ones the local update adapts."""
        return self.local_names
