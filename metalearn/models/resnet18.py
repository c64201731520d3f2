"""ResNet-18, the backbone of the Meta-Dataset leaderboard (URL, TSA, Simple CNAPS).

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016;
Triantafillou et al., "Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few
Examples", ICLR 2020.

A stem, then four stages of two basic blocks (two 3x3 conv + norm layers, ReLU between them, a
1x1 conv + norm shortcut where the shape changes, a ReLU after the sum) of widths 64, 128, 256
and 512, the last three starting with stride 2, and global average pooling. The ``"imagenet"``
stem is torchvision's (7x7 conv of stride 2, norm, ReLU, 3x3 max-pooling of stride 2: for
84-224 px inputs); the ``"small"`` stem is a 3x3 conv of stride 1 without pooling (CIFAR-style,
for 28-32 px inputs). Module names follow torchvision's ``resnet18`` (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer2.0.downsample.0`` ...), so :func:`load_pretrained` maps its state
dicts name for name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.models.heads import Backbone
from metalearn.models.norm import NormMode, check_norm, make_norm
from metalearn.models.weights import _read_state_dict

Stem = Literal["imagenet", "small"]
"""The first layers of :class:`ResNet18`: ImageNet's 7x7/2 conv + max-pool, or a 3x3/1 conv."""


class BasicBlock(nn.Module):
    """Two 3x3 conv + norm layers with a residual connection: ``(N, c_in, H, W) ->
    (N, c_out, H / stride, W / stride)``; the shortcut is a 1x1 conv + norm (``downsample``)
    where the stride or the width changes, else the identity."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: NormMode):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            # a ModuleList, not nn.Sequential: the norm takes n_support (names stay downsample.0/1)
            self.downsample = nn.ModuleList([nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                             make_norm(norm, c_out)])

    def forward(self, x: Tensor, n_support: int | None = None) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x), n_support))
        h = self.bn2(self.conv2(h), n_support)
        if self.downsample is not None:
            conv, norm = self.downsample
            x = norm(conv(x), n_support)
        return F.relu(h + x)


class ResNet18(Backbone):
    """ResNet-18 with global average pooling, optionally followed by a linear head.

    Args:
        in_channels: Input channels.
        channels: Widths of the four stages (``(64, 128, 256, 512)`` in the paper).
        out_features: Size of the linear head, or ``None`` to return pooled features.
        norm: One of ``"transductive"``, ``"task"``, ``"group"``, ``"none"`` (see
            :mod:`metalearn.models.norm`; never running statistics).
        stem: ``"imagenet"`` (7x7 conv of stride 2 and 3x3 max-pooling of stride 2: inputs of
            84-224 px) or ``"small"`` (3x3 conv of stride 1, no pooling: 28-32 px).

    Shapes:
        ``x``: ``(N, in_channels, H, W)`` -> ``(N, out_features)``, or ``(N, channels[-1])``
        when ``out_features`` is None. The stages divide ``H`` and ``W`` by 8 and the
        ``"imagenet"`` stem by 4 more (an 84 px input ends in 3x3 maps, a 32 px one with the
        ``"small"`` stem in 4x4).

    Examples:
        >>> import torch
        >>> net = ResNet18(3, channels=(4, 8, 8, 16))
        >>> net(torch.randn(2, 3, 84, 84)).shape
        torch.Size([2, 16])
        >>> ResNet18(1, channels=(4, 8, 8, 16), stem="small", out_features=5)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 5])
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (64, 128, 256, 512),
                 out_features: int | None = None, norm: NormMode = "transductive",
                 stem: Stem = "imagenet"):
        super().__init__()
        self.norm = check_norm(norm)
        if stem not in ("imagenet", "small"):
            raise ValueError(f"unknown stem {stem!r}; choose 'imagenet' (7x7/2 conv + max-pool, for "
                             "84-224 px inputs) or 'small' (3x3/1 conv, for 28-32 px inputs)")
        if len(channels) != 4:
            raise ValueError(f"ResNet-18 has four stages: give four widths, got channels={tuple(channels)}")
        self.stem = stem
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, channels[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = make_norm(norm, channels[0])
        widths = [channels[0], *channels]
        for i in range(4):
            stride = 1 if i == 0 else 2
            stage = nn.ModuleList([BasicBlock(widths[i], widths[i + 1], stride, norm),
                                   BasicBlock(widths[i + 1], widths[i + 1], 1, norm)])
            self.add_module(f"layer{i + 1}", stage)
        self.out_dim = widths[-1]
        self._init_head(out_features)

    def stages(self) -> list[nn.ModuleList]:
        """``[layer1, layer2, layer3, layer4]``, two :class:`BasicBlock` each."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def features(self, x: Tensor, n_support: int | None = None) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x), n_support))
        if self.stem == "imagenet":
            x = F.max_pool2d(x, 3, stride=2, padding=1)
        for stage in self.stages():
            for block in stage:
                x = block(x, n_support)
        return x.mean(dim=(2, 3))


_DROPPED = ("running_mean", "running_var", "num_batches_tracked")


def load_pretrained(net: ResNet18, path: str | Path) -> ResNet18:
    """Load a torchvision-format ResNet-18 state dict from a local file into ``net`` (in place).

    The file is a ``.pth``/``.pt`` (read with ``torch.load(weights_only=True)``, so no code in it
    runs; a checkpoint holding the state dict under ``state_dict``/``model`` works too) or a
    ``.safetensors`` file, with torchvision's names: ``conv1``, ``bn1``,
    ``layerX.Y.conv1/bn1/conv2/bn2``, ``layerX.0.downsample.0`` (conv) and ``.1`` (norm), ``fc``.
    Our modules carry the same names, so each tensor goes to the module of its name:

    - convolution weights as they are;
    - batch norm's affine ``weight``/``bias`` to the affine of ``net``'s norm layers
      (``norm="transductive"``, ``"task"`` or ``"group"``);
    - batch norm's running statistics (``running_mean``, ``running_var``,
      ``num_batches_tracked``) are **dropped**: our norms always normalise by the statistics
      of the batch (or the support set), never by stored ones, so a network pretrained with
      running statistics computes slightly different features here;
    - ``fc`` (the ImageNet classifier) is dropped; ``net``'s own head, if any, is kept as it is.

    Nothing is downloaded: fetch the file yourself (e.g. torchvision's
    ``resnet18-f37072fd.pth``) where you have internet.

    Args:
        net: A :class:`ResNet18` with the checkpoint's widths and stem (``stem="imagenet"`` and
            ``in_channels=3`` for ImageNet weights).
        path: The checkpoint file.

    Returns:
        ``net``.

    Raises:
        ValueError: if tensors are missing, left over (e.g. norm weights for ``norm="none"``)
            or of other shapes, listing them.

    Examples:
        >>> import tempfile, torch
        >>> src = ResNet18(3, channels=(4, 4, 8, 8))
        >>> state = {k: v for k, v in src.state_dict().items()}
        >>> state["fc.weight"] = torch.zeros(10, 8)  # torchvision's classifier: dropped
        >>> path = tempfile.mkdtemp() + "/r18.pth"
        >>> torch.save(state, path)
        >>> net = load_pretrained(ResNet18(3, channels=(4, 4, 8, 8)), path)
        >>> bool(torch.equal(net.layer2[0].downsample[0].weight, src.layer2[0].downsample[0].weight))
        True
    """
    path = Path(path)
    state = {k.removeprefix("module."): v for k, v in _read_state_dict(path).items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith(_DROPPED)}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("head.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs net {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"without a place in the net {len(unexpected)}: {', '.join(unexpected[:8])}"
                         f"{' ...' if len(unexpected) > 8 else ''}")
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:8]))
        raise ValueError(
            f"{path.name} is not a torchvision-format ResNet-18 state dict for this net "
            f"(channels={tuple(stage[0].conv2.out_channels for stage in net.stages())}, "
            f"stem={net.stem!r}, norm={net.norm!r}): {' | '.join(parts)}. Build the net with the "
            "checkpoint's widths, in_channels and stem (ImageNet weights: in_channels=3, "
            "channels=(64, 128, 256, 512), stem='imagenet') and a norm with an affine "
            "('transductive', 'task' or 'group')."
        )
    net.load_state_dict(state, strict=False)  # strict=False: the head (ours only) stays as it is
    return net
