"""The dataset name table of the command line: dataset name -> how to build each split.

It lives in the data layer so that the run config (``metalearn.train.config``, which checks
``data.dataset`` against it) and the samplers of a run (``metalearn.train.data``) both read it
without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metalearn.data.folders import ImageFolder, MiniImageNet
from metalearn.data.omniglot import Omniglot
from metalearn.data.regression import LinearTasks, SinusoidTasks


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset the command line can train on.

    Attributes:
        description: One line for ``metalearn list``.
        build: ``build(data_config, split) -> ClassDataset | TaskFamily``; ``data_config`` is a
            :class:`~metalearn.train.config.DataConfig` (read by field: ``root``, ``image_size``,
            ``channels``, the split names), passed in by the training layer above.
        images: True for image datasets, False for regression task families.
        channels: Image channels; ``None``: set by ``data.channels``.
        invert: Images are inverted after decoding (Omniglot: strokes become 1).
    """

    description: str
    build: Callable
    images: bool = True
    channels: int | None = None
    invert: bool = False


def _omniglot(cfg, split: str):
    return Omniglot(split, root=cfg.root, image_size=cfg.image_size)


def _mini_imagenet(cfg, split: str):
    return MiniImageNet(cfg.root, split=split, image_size=cfg.image_size)


def _folder(cfg, split: str):
    if cfg.root is None:
        raise ValueError("data.dataset=folder needs data.root (or --data-root): the folder holding "
                         f"{cfg.train_split}/, {cfg.val_split}/ and {cfg.test_split}/ class folders")
    return ImageFolder(Path(cfg.root) / split, image_size=cfg.image_size, channels=cfg.channels)


def _sinusoid(cfg, split: str):
    return SinusoidTasks()


def _linear(cfg, split: str):
    return LinearTasks()


DATASETS: dict[str, DatasetEntry] = {
    "omniglot": DatasetEntry("Omniglot characters, 28x28 grey; splits vinyals-train/val/test "
                             "(with rotations), background, evaluation", _omniglot, True, 1, True),
    "mini-imagenet": DatasetEntry("mini-ImageNet, 84x84 RGB, Ravi & Larochelle splits "
                                  "train/val/test", _mini_imagenet, True, 3),
    "folder": DatasetEntry("your images: ROOT/<split>/<class>/<image>, the split sub-folders named "
                           "by data.train_split/val_split/test_split; data.channels 1 or 3",
                           _folder, True, None),
    "sinusoid": DatasetEntry("regression y = A sin(x - phase), A in [0.1, 5], phase in [0, pi], "
                             "x in [-5, 5] (MAML); built in, no download", _sinusoid, False),
    "linear": DatasetEntry("regression y = a x + b, a and b in [-3, 3]; built in", _linear, False),
}
"""Name table for the CLI: dataset name -> :class:`DatasetEntry`."""
