"""Datasets, regression task families, episode samplers and per-episode transforms."""

from metalearn.data.array import ArrayDataset
from metalearn.data.base import ClassDataset
from metalearn.data.cache import cache_dir, data_root
from metalearn.data.download import ChecksumError, UnsafeArchiveError
from metalearn.data.folders import ImageFolder, MiniImageNet, split_classes
from metalearn.data.images import CorruptImageError
from metalearn.data.omniglot import Omniglot
from metalearn.data.regression import LinearTasks, SinusoidTasks, TaskFamily
from metalearn.data.samplers import EpisodeSampler, FixedEpisodes
from metalearn.data.torch_dataset import TorchDataset
from metalearn.data.transforms import Augment, Normalize, StandardizeBySupport

__all__ = [
    "ArrayDataset", "Augment", "ChecksumError", "ClassDataset", "CorruptImageError", "EpisodeSampler",
    "FixedEpisodes", "ImageFolder", "LinearTasks", "MiniImageNet", "Normalize", "Omniglot",
    "SinusoidTasks", "StandardizeBySupport", "TaskFamily", "TorchDataset", "UnsafeArchiveError",
    "cache_dir", "data_root", "split_classes",
]
