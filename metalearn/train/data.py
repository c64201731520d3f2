"""The dataset name table of the command line, and the samplers a run draws its tasks from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metalearn._rng import derive_seed
from metalearn.train.config import DataConfig


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset the command line can train on.

    Attributes:
        description: One line for ``metalearn list``.
        build: ``build(data_config, split) -> ClassDataset | TaskFamily``.
        images: True for image datasets, False for regression task families.
        channels: Image channels; ``None``: set by ``data.channels``.
        invert: Images are inverted after decoding (Omniglot: strokes become 1).
    """

    description: str
    build: Callable
    images: bool = True
    channels: int | None = None
    invert: bool = False


def _omniglot(cfg: DataConfig, split: str):
    from metalearn.data import Omniglot

    return Omniglot(split, root=cfg.root, image_size=cfg.image_size)


def _mini_imagenet(cfg: DataConfig, split: str):
    from metalearn.data.folders import MiniImageNet

    return MiniImageNet(cfg.root, split=split, image_size=cfg.image_size)


def _folder(cfg: DataConfig, split: str):
    from pathlib import Path

    from metalearn.data.folders import ImageFolder

    if cfg.root is None:
        raise ValueError("data.dataset=folder needs data.root (or --data-root): the folder holding "
                         f"{cfg.train_split}/, {cfg.val_split}/ and {cfg.test_split}/ class folders")
    return ImageFolder(Path(cfg.root) / split, image_size=cfg.image_size, channels=cfg.channels)


def _sinusoid(cfg: DataConfig, split: str):
    from metalearn.data.regression import SinusoidTasks

    return SinusoidTasks()


def _linear(cfg: DataConfig, split: str):
    from metalearn.data.regression import LinearTasks

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


_SOURCES: dict[tuple, object] = {}


def build_source(cfg: DataConfig, split: str):
    """The dataset or task family of ``split`` (``"train"``, ``"val"`` or ``"test"``).

    Sources are read-only (memory-mapped caches), so each ``(dataset, split, root, image_size)``
    is built once per process and shared.
    """
    name = {"train": cfg.train_split, "val": cfg.val_split, "test": cfg.test_split}.get(split, split)
    key = (cfg.dataset, name, cfg.root, cfg.image_size)
    if key not in _SOURCES:
        _SOURCES[key] = DATASETS[cfg.dataset].build(cfg, name)
    return _SOURCES[key]


def train_sampler(cfg: DataConfig, seed: int, rank: int = 0):
    """The meta-training :class:`~metalearn.data.samplers.EpisodeSampler` of a run.

    Its seed is derived from the run seed with the stream name ``"meta-train"``, so training
    tasks never coincide with the fixed validation or test episodes of a task family.
    """
    from metalearn.data.samplers import EpisodeSampler

    return EpisodeSampler(build_source(cfg, "train"), cfg.n_way, cfg.k_shot, cfg.n_query,
                          seed=derive_seed(seed, "meta-train"), rank=rank)


def fixed_episodes(cfg: DataConfig, split: str, n_episodes: int | None = None, seed: int | None = None):
    """The fixed validation or test episodes: same seed, same episodes for every method."""
    from metalearn.data.samplers import FixedEpisodes

    n_way, k_shot, n_query = cfg.eval_shape()
    if n_episodes is None:
        n_episodes = cfg.val_episodes if split == "val" else cfg.test_episodes
    if seed is None:
        seed = cfg.val_seed if split == "val" else cfg.test_seed
    return FixedEpisodes(build_source(cfg, split), n_way, k_shot, n_query, n_episodes=n_episodes, seed=seed)


def image_format(cfg: DataConfig) -> tuple[int, bool] | None:
    """``(channels, invert)`` with which the run's images were decoded; ``None`` for regression."""
    entry = DATASETS[cfg.dataset]
    if not entry.images:
        return None
    return (cfg.channels if entry.channels is None else entry.channels), entry.invert
