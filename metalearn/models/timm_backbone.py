"""timm image models as metalearn backbones (optional: needs ``timm`` and a working torchvision).

Wightman, "PyTorch Image Models" (https://github.com/huggingface/pytorch-image-models). timm
imports torchvision, so it works only where a torchvision built for the installed torch
imports: a CUDA torchvision next to a CPU torch fails with ``RuntimeError: operator
torchvision::nms does not exist``. :func:`import_timm` turns both that and a missing package
into one error naming the fix. Weights are never downloaded: the model is built with
``pretrained=False`` and filled from a local checkpoint when one is given.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from torch import Tensor

from metalearn.models.heads import Backbone
from metalearn.models.weights import load_backbone


def import_timm() -> ModuleType:
    """``import timm``, or an error naming why it failed and what to install.

    Raises:
        ImportError: timm is not installed, or it is but its torchvision does not match the
            installed torch (the ``torchvision::nms does not exist`` error).

    Examples:
        >>> try:
        ...     ok = import_timm().__name__ == "timm"
        ... except ImportError as e:  # not installed here, or torchvision does not match torch
        ...     ok = "pip install timm" in str(e)
        >>> ok
        True
    """
    try:
        return importlib.import_module("timm")
    except (ImportError, RuntimeError) as e:
        raise ImportError(
            f"timm backbones need timm and a torchvision built for this torch, and `import timm` "
            f"failed with {type(e).__name__}: {e}. Either timm (or torchvision) is missing: "
            "`pip install timm`; or torchvision does not match torch (e.g. a CUDA torchvision "
            "next to a CPU torch: 'operator torchvision::nms does not exist'): install the "
            "torchvision release built for your torch from the same index as torch. Without "
            "timm, use metalearn's own backbones (model.backbone=resnet18, resnet12, conv4)."
        ) from e


class TimmBackbone(Backbone):
    """A timm model without its classifier (``num_classes=0``: pooled features) as a backbone.

    Args:
        name: A timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        checkpoint: A local ``.safetensors`` or ``.pt``/``.pth`` file of the model's weights
            (its classifier entries are ignored), or ``None`` for random initialisation.
            Nothing is downloaded.
        in_channels: Input channels (timm's ``in_chans``).
        out_features: Size of a linear head on the features, or ``None`` for the features.
        **kwargs: Further keyword arguments of ``timm.create_model``.

    Shapes:
        ``x``: ``(N, in_channels, H, W)`` -> ``(N, out_dim)`` with ``out_dim`` the model's
        ``num_features`` (or ``(N, out_features)``).

    The model keeps its own normalisation: timm's batch norms track running statistics, which
    the gradient-based learners (MAML, ...) refuse; the metric and fine-tuning learners use it
    as it is. ``n_support`` is accepted and ignored.

    Raises:
        ImportError: timm cannot be imported (see :func:`import_timm`).
    """

    def __init__(self, name: str = "resnet18", checkpoint: str | None = None, in_channels: int = 3,
                 out_features: int | None = None, **kwargs):
        super().__init__()
        timm = import_timm()
        self.model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
        if checkpoint is not None:
            load_backbone(self.model, Path(checkpoint), strict=True)
        self.out_dim = int(self.model.num_features)
        self._init_head(out_features)

    def features(self, x: Tensor, n_support: int | None = None) -> Tensor:
        return self.model(x).flatten(1)


def timm_backbone(name: str, checkpoint: str | Path | None = None, **kwargs) -> TimmBackbone:
    """Build ``timm.create_model(name, pretrained=False, num_classes=0, **kwargs)`` as a
    :class:`~metalearn.models.Backbone`, with weights from a local ``checkpoint`` if given.

    Args:
        name: A timm model name, e.g. ``"resnet18"``.
        checkpoint: A local weights file (``.safetensors``, ``.pt``/``.pth``), or ``None``.
        **kwargs: :class:`TimmBackbone`'s ``in_channels`` and ``out_features``, and keyword
            arguments of ``timm.create_model``.

    Raises:
        ImportError: timm cannot be imported, naming ``pip install timm`` and a matching
            torchvision.
        ValueError: the checkpoint does not match the model, listing what differs.

    Examples:
        >>> try:
        ...     net = timm_backbone("resnet18")
        ... except ImportError:
        ...     pass  # timm or a matching torchvision is not installed here
    """
    return TimmBackbone(name, None if checkpoint is None else str(checkpoint), **kwargs)
