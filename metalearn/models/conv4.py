"""Conv4: the four-block convolutional backbone of MAML and Prototypical Networks.

Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017; Snell, Swersky and Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017;
Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.

Each block is a 3x3 convolution (padding 1), normalisation, ReLU and 2x2 max-pooling. The
standard widths are 64 filters for Omniglot (28x28) and 32 for mini-ImageNet (84x84). On CPU
the first block runs by the kernels of :mod:`metalearn.kernels.cpu_conv` (the same function,
faster), which the ``fast_cpu`` switch turns off.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.kernels.cpu_conv import fused_first_block, supports_channels_last
from metalearn.models.heads import Backbone
from metalearn.models.norm import NormMode, check_norm, make_norm


class Conv4(Backbone):
    """Four conv blocks, flattened, optionally followed by a linear head.

    Args:
        in_channels: Input channels (1 for Omniglot, 3 for mini-ImageNet).
        hidden: Filters per block (64 for 28x28 inputs, 32 for 84x84).
        out_features: Size of the linear head, or ``None`` to return flat features.
        norm: One of ``"transductive"``, ``"task"``, ``"group"``, ``"none"``
            (see :mod:`metalearn.models.norm`).
        image_size: Input height and width; fixes ``out_dim``.
        n_blocks: Number of blocks (4 in the papers).
        channels_last: Run the convolutions in channels-last memory format (same results,
            faster with oneDNN); ``None`` means on CPU only (or everywhere with
            ``fast_cpu=True``).
        fast_cpu: Run the first block by :func:`metalearn.kernels.cpu_conv.fused_first_block`
            (the same function, about 2x faster forward + backward on CPU) wherever the
            activations are channels-last: ``"auto"`` (see ``channels_last``), ``True`` (on
            any device) or ``False`` (never: the plain layers). Never inside ``torch.func``
            transforms, which cannot change memory formats.

    Shapes:
        ``x``: ``(N, in_channels, image_size, image_size)`` -> ``(N, out_features)``, or
        ``(N, out_dim)`` when ``out_features`` is None. ``out_dim = hidden * s * s`` with
        ``s = image_size // 2**n_blocks`` (64 for 28x28, 800 for 84x84 with 32 filters).

    Examples:
        >>> import torch
        >>> net = Conv4(in_channels=1, hidden=8, out_features=5)
        >>> net(torch.randn(3, 1, 28, 28)).shape
        torch.Size([3, 5])
        >>> Conv4(in_channels=3, hidden=32, image_size=84).out_dim
        800
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, out_features: int | None = None,
                 norm: NormMode = "transductive", image_size: int = 28, n_blocks: int = 4,
                 channels_last: bool | None = None, fast_cpu: Literal["auto", True, False] = "auto"):
        super().__init__()
        self.norm = check_norm(norm)
        if not (fast_cpu == "auto" or isinstance(fast_cpu, bool)):
            raise ValueError(f"fast_cpu must be 'auto', True or False, got {fast_cpu!r}")
        if fast_cpu is True and channels_last is False:
            raise ValueError("fast_cpu=True needs channels-last activations: "
                             "leave channels_last as None (or True)")
        self.channels_last = channels_last
        self.fast_cpu = fast_cpu
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        size = image_size
        for i in range(n_blocks):
            self.convs.append(nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1))
            self.norms.append(make_norm(norm, hidden))
            size //= 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for {n_blocks} pooling blocks: use "
                             f"images of at least {2 ** n_blocks} pixels (data.image_size) or fewer "
                             "blocks (model.n_blocks)")
        self.out_dim = hidden * size * size
        self._init_head(out_features)

    def features(self, x: Tensor, n_support: int | None = None) -> Tensor:
        blocks = list(zip(self.convs, self.norms))
        cl = self._channels_last(x)
        if cl and self.fast_cpu is not False and not _hooked(*blocks[0]):
            # the first (largest) block by the CPU kernels: the same function, faster. They
            # bypass the modules' forward, so hooks on them (FiLM's modulation) need the layers.
            x = fused_first_block(x, *blocks[0], n_support)
            blocks = blocks[1:]
        for conv, norm in blocks:
            x = conv(x)
            if cl:
                # oneDNN picks the layout from the input's; a 1-channel input is ambiguous
                # and would keep the whole network in NCHW, where pooling and batch norm
                # are ~10x slower on CPU. A no-op once the activations are channels-last.
                x = x.contiguous(memory_format=torch.channels_last)
            # conv, norm, ReLU, pool, with the ReLU after the pooling: they commute (ReLU is
            # monotone), so outputs and gradients of every order are the textbook block's, with
            # the ReLU on a 4x smaller tensor (4% of second-order MAML's step on CPU)
            x = F.relu(F.max_pool2d(norm(x, n_support), 2))
        return x.flatten(1)

    def _channels_last(self, x: Tensor) -> bool:
        """Whether this forward pass runs channels-last: ``channels_last``, else on CPU (or
        anywhere with ``fast_cpu=True``); never inside ``torch.func`` transforms."""
        cl = self.channels_last
        if cl is None:
            cl = self.fast_cpu is True or x.device.type == "cpu"
        return cl and supports_channels_last(x)


def _hooked(*modules: nn.Module) -> bool:
    """Whether any of ``modules`` has forward hooks (which only its own ``forward`` runs)."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)
