"""The samplers a run draws its tasks from, built from the dataset name table ``DATASETS``."""

from __future__ import annotations

import json
from pathlib import Path

from metalearn._rng import derive_seed
from metalearn.data.registry import DATASETS, folder_split
from metalearn.data.samplers import EpisodeSampler, FixedEpisodes
from metalearn.data.torch_dataset import as_source
from metalearn.data.transforms import Augment
from metalearn.train.config import DataConfig

_SOURCES: dict[tuple, object] = {}


def build_source(cfg: DataConfig, split: str):
    """The dataset or task family of ``split`` (``"train"``, ``"val"`` or ``"test"``).

    Sources are read-only (memory-mapped caches, or a registered dataset read lazily), so each
    is built once per process and shared, keyed by the split and every setting that shapes it.
    """
    name = {"train": cfg.train_split, "val": cfg.val_split, "test": cfg.test_split}.get(split, split)
    entry = DATASETS[cfg.dataset]
    key = (cfg.dataset, entry.build, name, cfg.root, cfg.image_size, cfg.channels, cfg.rotations,
           tuple(cfg.split_fractions), cfg.split_seed, cfg.fold, cfg.tokenizer, cfg.vocab_size,
           cfg.max_length, cfg.lowercase, cfg.text_column, cfg.label_column)
    if key not in _SOURCES:
        _SOURCES[key] = as_source(entry.build(cfg, name))
    return _SOURCES[key]


def augmentation(cfg: DataConfig) -> Augment | None:
    """The meta-training augmentation of ``data.augment`` (``None`` when it is empty)."""
    return Augment(cfg.augment, cfg.augment_padding, cfg.augment_degrees) if cfg.augment else None


def train_sampler(cfg: DataConfig, seed: int, rank: int = 0):
    """The meta-training :class:`~metalearn.data.samplers.EpisodeSampler` of a run.

    Its seed is derived from the run seed with the stream name ``"meta-train"``, so training
    tasks never coincide with the fixed validation or test episodes of a task family. It applies
    ``data.augment`` (the validation and test episodes never do).
    """
    return EpisodeSampler(build_source(cfg, "train"), cfg.n_way, cfg.k_shot, cfg.n_query,
                          seed=derive_seed(seed, "meta-train"), rank=rank, augment=augmentation(cfg))


def fixed_episodes(cfg: DataConfig, split: str, n_episodes: int | None = None, seed: int | None = None):
    """The fixed validation or test episodes: same seed, same episodes for every method."""
    n_way, k_shot, n_query = cfg.eval_shape()
    if n_episodes is None:
        n_episodes = cfg.val_episodes if split == "val" else cfg.test_episodes
    if seed is None:
        seed = cfg.val_seed if split == "val" else cfg.test_seed
    return FixedEpisodes(build_source(cfg, split), n_way, k_shot, n_query, n_episodes=n_episodes, seed=seed)


def write_splits(cfg: DataConfig, run_dir: str | Path) -> Path | None:
    """Write ``RUN_DIR/splits.json``, the classes of each split, where the run made the split
    itself (a flat ``folder`` dataset, split by ``data.split_fractions`` and ``data.split_seed``).

    Returns:
        The file written, or ``None`` when the dataset brings its own splits.
    """
    split = folder_split(cfg)
    if split is None:
        return None
    path = Path(run_dir) / "splits.json"
    path.write_text(json.dumps(split, indent=1))
    return path


def image_format(cfg: DataConfig) -> tuple[int, bool] | None:
    """``(channels, invert)`` with which the run's images were decoded; ``None`` for regression."""
    entry = DATASETS[cfg.dataset]
    if not entry.images:
        return None
    return (cfg.channels if entry.channels is None else entry.channels), entry.invert
