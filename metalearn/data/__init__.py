"""Datasets, regression task families, ratings tables with users as tasks, episode samplers and
per-episode transforms; class hierarchies (groups, DAGs) that choose a Meta-Dataset episode's classes."""

from metalearn.data.array import ArrayDataset
from metalearn.data.base import ClassDataset
from metalearn.data.cache import cache_dir, data_root
from metalearn.data.download import ChecksumError, UnsafeArchiveError
from metalearn.data.folders import ImageFolder, MiniImageNet, split_classes
from metalearn.data.hierarchy import (
    ClassDAG,
    ClassHierarchy,
    clinc_domains,
    omniglot_alphabets,
    read_folder_tree,
)
from metalearn.data.images import CorruptImageError
from metalearn.data.intents import (
    Banking77,
    Clinc150,
    Hwu64,
    IntentDataset,
    download_intents,
    read_hf_dataset,
    read_text_file,
    split_text_dataset,
)
from metalearn.data.metadataset import (
    ClassPool,
    FlatPool,
    MetaDatasetEpisodes,
    MetaDatasetSampler,
    MultiSourceSampler,
)
from metalearn.data.omniglot import Omniglot
from metalearn.data.ratings import (
    Attribute,
    RatingsError,
    RatingsTable,
    download_movielens,
    read_movielens,
    read_movielens_1m,
    read_movielens_100k,
    read_ratings_csv,
)
from metalearn.data.regression import LinearTasks, SinusoidTasks, TaskFamily
from metalearn.data.samplers import EpisodeSampler, FixedEpisodes
from metalearn.data.synthetic_ratings import (
    SyntheticRatings,
    TrueRatingModel,
    write_synthetic_movielens,
)
from metalearn.data.text import TextDataset, TextTokenizer
from metalearn.data.torch_dataset import TorchDataset
from metalearn.data.transforms import Augment, Normalize, StandardizeBySupport
from metalearn.data.user_tasks import (
    PROTOCOLS,
    RatingProtocol,
    UserEpisodes,
    UserTasks,
    UserTaskSampler,
)

__all__ = [
    "PROTOCOLS", "Attribute", "RatingProtocol", "RatingsError", "RatingsTable", "SyntheticRatings", "TrueRatingModel",
    "UserEpisodes", "UserTaskSampler", "UserTasks", "download_movielens", "read_movielens",
    "read_movielens_1m", "read_movielens_100k", "read_ratings_csv", "write_synthetic_movielens",
    "ClassDAG", "ClassHierarchy", "clinc_domains", "omniglot_alphabets", "read_folder_tree",
    "ClassPool", "FlatPool", "MetaDatasetEpisodes", "MetaDatasetSampler", "MultiSourceSampler",
    "ArrayDataset", "Augment", "Banking77", "ChecksumError", "ClassDataset", "Clinc150",
    "CorruptImageError", "EpisodeSampler", "FixedEpisodes", "Hwu64", "ImageFolder", "IntentDataset",
    "LinearTasks", "MiniImageNet", "Normalize", "Omniglot", "SinusoidTasks", "StandardizeBySupport",
    "TaskFamily", "TextDataset", "TextTokenizer", "TorchDataset", "UnsafeArchiveError", "cache_dir",
    "data_root", "download_intents", "read_hf_dataset", "read_text_file", "split_classes",
    "split_text_dataset",
]
