"""A backbone wrapper that restores the spatial feature maps a flattening backbone returns.

Relation Networks (:mod:`metalearn.algorithms.relation`) compare feature maps ``(C, H, W)``,
while the metalearn backbones return flat features. Flattening is row-major over
``(C, H, W)``, so viewing the flat vector with the maps' shape recovers them exactly.
"""

from __future__ import annotations

from torch import Tensor, nn

from metalearn.models.heads import run_backbone


class FeatureMaps(nn.Module):
    """View a backbone's flat features ``(n, C*H*W)`` as feature maps ``(n, C, H, W)``.

    Args:
        backbone: Returns flat features of a conv stack (e.g. ``Conv4(out_features=None)``).
        shape: The maps' ``(C, H, W)`` before flattening.

    Examples:
        >>> import torch
        >>> maps = FeatureMaps(nn.Flatten(), (2, 3, 3))
        >>> maps(torch.randn(5, 2, 3, 3)).shape, maps.out_shape
        (torch.Size([5, 2, 3, 3]), (2, 3, 3))
    """

    takes_n_support = True  # forwards ``n_support`` to a metalearn backbone (norm="task")

    def __init__(self, backbone: nn.Module, shape: tuple[int, int, int]):
        super().__init__()
        self.backbone, self.out_shape = backbone, tuple(shape)

    def forward(self, x: Tensor, n_support: int | None = None) -> Tensor:
        z = run_backbone(self.backbone, x, n_support)
        return z.reshape(z.shape[0], *self.out_shape)
