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
        channels: Image channels (``None`` for regression families).
        invert: Images are inverted after decoding (Omniglot: strokes become 1).
    """

    description: str
    build: Callable
    channels: int | None = None
    invert: bool = False


def _omniglot(cfg: DataConfig, split: str):
    from metalearn.data import Omniglot

    return Omniglot(split, root=cfg.root, image_size=cfg.image_size)


def _mini_imagenet(cfg: DataConfig, split: str):
    from metalearn.data.folders import MiniImageNet

    return MiniImageNet(cfg.root, split=split, image_size=cfg.image_size)


def _sinusoid(cfg: DataConfig, split: str):
    from metalearn.data.regression import SinusoidTasks

    return SinusoidTasks()


def _linear(cfg: DataConfig, split: str):
    from metalearn.data.regression import LinearTasks

    return LinearTasks()


DATASETS: dict[str, DatasetEntry] = {
    "omniglot": DatasetEntry("Omniglot characters, 28x28 grey; splits vinyals-train/val/test "
                             "(with rotations), background, evaluation", _omniglot, 1, True),
    "mini-imagenet": DatasetEntry("mini-ImageNet, 84x84 RGB, Ravi & Larochelle splits "
                                  "train/val/test", _mini_imagenet, 3, False),
    "sinusoid": DatasetEntry("regression y = A sin(x - phase), A in [0.1, 5], phase in [0, pi], "
                             "x in [-5, 5] (MAML); built in, no download", _sinusoid),
    "linear": DatasetEntry("regression y = a x + b, a and b in [-3, 3]; built in", _linear),
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
