"""Reading a user's pretrained weights into a backbone (``.safetensors`` or ``.pt``/``.pth``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file, or the state dict inside a ``.pt`` checkpoint."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # an optional dependency (extra "train")
            raise ImportError("reading .safetensors needs `pip install safetensors`") from e
        return load_file(str(path))
    # weights_only: a checkpoint is data; never execute code from a user's file.
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (name -> Tensor).")
    return state


def load_backbone(backbone: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load pretrained weights into ``backbone`` (in place) from a user's checkpoint.

    Accepts ``.safetensors`` files and ``.pt``/``.pth`` files read with
    ``torch.load(weights_only=True)``, holding either the backbone's own state dict or one of a
    larger model with the backbone under a prefix such as ``backbone.`` (a
    :class:`~metalearn.algorithms.Baseline` checkpoint, for example); other entries (heads) are
    ignored.

    Args:
        backbone: The module to fill; its architecture must match the checkpoint.
        path: The checkpoint file.
        strict: Require every parameter and buffer of ``backbone`` to be present.

    Returns:
        ``backbone``.

    Raises:
        ValueError: if the checkpoint's tensors do not match the backbone (missing names or
            different shapes), naming what differs.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = backbone.state_dict()
    prefixes = sorted({k[: len(k) - len(n)] for k in state for n in own if k.endswith(n)}, key=len)
    best, best_hits = "", -1
    for p in prefixes:
        hits = sum(p + n in state for n in own)
        if hits > best_hits:
            best, best_hits = p, hits
    found = {n: state[best + n] for n in own if best + n in state}
    missing = [n for n in own if n not in found]
    shapes = [f"{n}: checkpoint {tuple(t.shape)} vs backbone {tuple(own[n].shape)}"
              for n, t in found.items() if t.shape != own[n].shape]
    if shapes or (strict and missing):
        unexpected = [k for k in state if not k.startswith(best) or k[len(best):] not in own][:5]
        raise ValueError(
            f"the checkpoint {path.name} does not match the backbone ({type(backbone).__name__}): "
            + (f"shape mismatches {shapes[:5]}; " if shapes else "")
            + (f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}; " if missing else "")
            + f"unmatched checkpoint entries {unexpected}. Build the backbone with the same "
            "architecture (depth, widths, norm) as the one that was saved."
        )
    backbone.load_state_dict(found, strict=strict)
    return backbone
