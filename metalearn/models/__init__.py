"""Backbones for meta-learning: Conv4, MLP and ResNet-12 with vmap-safe normalisation, and text
encoders over token ids (TextCNN, TextTransformer, a pretrained Hugging Face model), and MeLU's
rating network over user and item attribute codes (RatingNet).

Every backbone takes ``norm`` (``"transductive"``, ``"task"``, ``"group"`` or ``"none"``),
never keeps running statistics, and with ``out_features=None`` returns flat features and
exposes their size as ``.out_dim``. ``forward(x, n_support=None)``: with ``norm="task"`` the
first ``n_support`` rows of ``x`` provide the normalisation statistics.
"""

from metalearn.models.conv4 import Conv4
from metalearn.models.feature_maps import FeatureMaps
from metalearn.models.heads import Backbone, run_backbone
from metalearn.models.mlp import MLP
from metalearn.models.norm import (
    NORM_MODES,
    BatchStatNorm,
    check_no_running_stats,
    make_norm,
)
from metalearn.models.rating import RatingNet
from metalearn.models.resnet12 import ResNet12
from metalearn.models.resnet18 import ResNet18, load_pretrained
from metalearn.models.text import PretrainedTextEncoder, TextBag, TextCNN, TextTransformer
from metalearn.models.timm_backbone import TimmBackbone, timm_backbone

BACKBONES = {
    "conv4": Conv4,
    "mlp": MLP,
    "resnet12": ResNet12,
    "resnet18": ResNet18,
    "timm": TimmBackbone,
    "text-cnn": TextCNN,
    "text-bag": TextBag,
    "text-transformer": TextTransformer,
    "hf-text": PretrainedTextEncoder,
    "rating-net": RatingNet,
}
"""Name table for the CLI: backbone name -> class (constructor keyword arguments as documented)."""

__all__ = [
    "BACKBONES",
    "NORM_MODES",
    "Backbone",
    "BatchStatNorm",
    "Conv4",
    "FeatureMaps",
    "MLP",
    "PretrainedTextEncoder",
    "RatingNet",
    "ResNet12",
    "ResNet18",
    "TextBag",
    "TextCNN",
    "TextTransformer",
    "TimmBackbone",
    "check_no_running_stats",
    "load_pretrained",
    "make_norm",
    "run_backbone",
    "timm_backbone",
]
