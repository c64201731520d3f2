"""ResNet-12, the backbone of TADAM, MetaOptNet and most recent few-shot work.

Oreshkin, Rodriguez and Lacoste, "TADAM: Task dependent adaptive metric for improved few-shot
learning", NeurIPS 2018; Lee et al., "Meta-Learning with Differentiable Convex Optimization",
CVPR 2019.

Four residual blocks; each has three 3x3 conv + norm layers (leaky ReLU 0.1 between them), a
1x1 conv + norm shortcut, a leaky ReLU after the sum and 2x2 max-pooling. Features are averaged
over space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.models.heads import Backbone
from metalearn.models.norm import NormMode, check_norm, make_norm


class ResBlock(nn.Module):
    """One ResNet-12 block: ``(N, c_in, H, W) -> (N, c_out, H // 2, W // 2)``."""

    def __init__(self, c_in: int, c_out: int, norm: NormMode):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False) for i in range(3)
        )
        self.norms = nn.ModuleList(make_norm(norm, c_out) for _ in range(3))
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.shortcut_norm = make_norm(norm, c_out)

    def forward(self, x: Tensor, n_support: int | None = None) -> Tensor:
        h = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(conv(h), n_support)
            if i < 2:
                h = F.leaky_relu(h, 0.1)
        h = h + self.shortcut_norm(self.shortcut(x), n_support)
        # leaky ReLU, then pool, computed as pool, then leaky ReLU: they commute (it is
        # monotone), the same function on a 4x smaller tensor (as Conv4's blocks)
        return F.leaky_relu(F.max_pool2d(h, 2), 0.1)


class ResNet12(Backbone):
    """ResNet-12 with global average pooling, optionally followed by a linear head.

    Args:
        in_channels: Input channels.
        channels: Widths of the four blocks (``(64, 160, 320, 640)`` as in MetaOptNet).
        out_features: Size of the linear head, or ``None`` to return pooled features.
        norm: One of ``"transductive"``, ``"task"``, ``"group"``, ``"none"``.

    Shapes:
        ``x``: ``(N, in_channels, H, W)`` with ``H, W >= 16`` -> ``(N, out_features)``, or
        ``(N, channels[-1])`` when ``out_features`` is None.

    Examples:
        >>> import torch
        >>> net = ResNet12(3, channels=(8, 8, 16, 16))
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 16])
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (64, 160, 320, 640),
                 out_features: int | None = None, norm: NormMode = "transductive"):
        super().__init__()
        self.norm = check_norm(norm)
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleList(ResBlock(a, b, norm) for a, b in zip(widths[:-1], widths[1:]))
        self.out_dim = widths[-1]
        self._init_head(out_features)

    def features(self, x: Tensor, n_support: int | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, n_support)
        return x.mean(dim=(2, 3))
