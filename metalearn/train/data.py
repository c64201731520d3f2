"""The samplers a run draws its tasks from, built from the dataset name table ``DATASETS``."""

from __future__ import annotations

from metalearn._rng import derive_seed
from metalearn.data.registry import DATASETS
from metalearn.data.samplers import EpisodeSampler, FixedEpisodes
from metalearn.train.config import DataConfig

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
    return EpisodeSampler(build_source(cfg, "train"), cfg.n_way, cfg.k_shot, cfg.n_query,
                          seed=derive_seed(seed, "meta-train"), rank=rank)


def fixed_episodes(cfg: DataConfig, split: str, n_episodes: int | None = None, seed: int | None = None):
    """The fixed validation or test episodes: same seed, same episodes for every method."""
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
