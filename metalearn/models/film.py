"""FiLM on the metalearn backbones: where each block can be modulated, and a context that does it.

Perez et al., "FiLM: Visual Reasoning with a General Conditioning Layer", AAAI 2018: a
per-channel scale and shift of a block's output. :class:`metalearn.algorithms.ParameterGenerator`
generates them from a task's support set (as CNAPs do); this module only knows the backbones'
blocks and applies given scales and shifts with forward hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn


def film_sites(backbone: nn.Module) -> list[tuple[str, int]]:
    """Where FiLM modulates a metalearn backbone: ``(submodule name, channels)`` per block.

    Conv4 and MLP are modulated after each block's normalisation (where batch norm's own affine
    acts), ResNet-12 after each residual block.

    Raises:
        ValueError: for a backbone whose blocks are unknown (set ``film=False``).
    """
    if hasattr(backbone, "blocks"):  # ResNet-12
        return [(f"blocks.{i}", b.convs[-1].out_channels) for i, b in enumerate(backbone.blocks)]
    if hasattr(backbone, "convs") and hasattr(backbone, "norms"):  # Conv4
        return [(f"norms.{i}", c.out_channels) for i, c in enumerate(backbone.convs)]
    if hasattr(backbone, "layers") and hasattr(backbone, "norms"):  # MLP
        return [(f"norms.{i}", lin.out_features) for i, lin in enumerate(backbone.layers)]
    raise ValueError(f"film=True needs a metalearn backbone (Conv4, MLP, ResNet12) whose blocks "
                     f"it can modulate; {type(backbone).__name__} is not one: set film=False")


@contextmanager
def modulated(backbone: nn.Module, sites: list[str], scales: list[Tensor],
              shifts: list[Tensor]) -> Iterator[None]:
    """Within the block, block ``sites[i]`` outputs ``out * scales[i] + shifts[i]`` per channel.

    Implemented with forward hooks (PyTorch's public extension point), removed on exit, so the
    backbone stays an ordinary module and its own parameters are untouched.
    """
    def hook(scale: Tensor, shift: Tensor):
        def apply(module, args, out: Tensor) -> Tensor:
            shape = (1, -1) + (1,) * (out.dim() - 2)
            return out * scale.view(shape) + shift.view(shape)
        return apply

    handles = [backbone.get_submodule(name).register_forward_hook(hook(s, b))
               for name, s, b in zip(sites, scales, shifts)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
