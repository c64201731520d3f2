"""The samplers a run draws its tasks from, built from the dataset name table ``DATASETS``."""

from __future__ import annotations

import json
from pathlib import Path

from metalearn._rng import derive_seed
from metalearn.data.registry import DATASETS, folder_split, text_file_split
from metalearn.data.samplers import EpisodeSampler, FixedEpisodes
from metalearn.data.torch_dataset import as_source
from metalearn.data.transforms import Augment
from metalearn.data.user_tasks import UserEpisodes, UserTasks, UserTaskSampler
from metalearn.errors import ConfigError
from metalearn.train.config import DataConfig, RunConfig, source_configs

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
           cfg.max_length, cfg.lowercase, cfg.text_column, cfg.label_column, cfg.protocol, cfg.user_split,
           cfg.item_cold, cfg.cold_fraction)
    if key not in _SOURCES:
        _SOURCES[key] = as_source(entry.build(cfg, name))
    return _SOURCES[key]


def augmentation(cfg: DataConfig) -> Augment | None:
    """The meta-training augmentation of ``data.augment`` (``None`` when it is empty)."""
    return Augment(cfg.augment, cfg.augment_padding, cfg.augment_degrees) if cfg.augment else None


def uses_sources(cfg: DataConfig) -> bool:
    """Whether a run draws Meta-Dataset episodes or several sources (the samplers of
    :mod:`metalearn.data.metadataset` rather than :class:`EpisodeSampler`)."""
    return cfg.episodes == "meta-dataset" or bool(cfg.sources)


_NATURAL_HIERARCHY = {"omniglot": "names", "folder-tree": "names", "clinc150": "domains", "md-ilsvrc": "wordnet"}
"""The hierarchy ``data.hierarchy=auto`` takes for a dataset (Meta-Dataset's own choices)."""


def class_pool(cfg: DataConfig, source, split: str):
    """The :class:`~metalearn.data.metadataset.ClassPool` of ``data.hierarchy`` over ``source``'s
    classes; ``None`` for flat sampling (every class of the split).

    Raises:
        ConfigError: a hierarchy the dataset does not have.
    """
    from metalearn.data.hierarchy import ClassDAG, ClassHierarchy, clinc_domains

    kind = _NATURAL_HIERARCHY.get(cfg.dataset, "none") if cfg.hierarchy == "auto" else cfg.hierarchy
    if kind == "none" or cfg.episodes != "meta-dataset":
        return None
    names = source.class_names
    if kind == "names":
        if not all("/" in n for n in names):
            raise ConfigError(f"data.hierarchy=names groups classes by the first part of names like "
                              f"'group/class', but {cfg.dataset} has names such as {names[:2]}: set "
                              "data.hierarchy=none")
        return ClassHierarchy.from_class_names(names)
    if kind == "domains":
        if cfg.dataset != "clinc150":
            raise ConfigError(f"data.hierarchy=domains is CLINC150's domains.json; {cfg.dataset} has none: "
                              "set data.hierarchy=none or names")
        from metalearn.data.intents import locate_intents

        return clinc_domains(names, locate_intents("clinc150", cfg.root) / "domains.json")
    if kind == "wordnet":
        if cfg.dataset != "md-ilsvrc":
            raise ConfigError(f"data.hierarchy=wordnet is ILSVRC-2012's WordNet graph; {cfg.dataset} has "
                              "none: set data.hierarchy=none")
        from metalearn.data.md_sources import ilsvrc_edges

        role = {cfg.train_split: "train", cfg.val_split: "val", cfg.test_split: "test"}.get(split, split)
        return ClassDAG(ilsvrc_edges(cfg.root, role), names)
    raise ConfigError(f"unknown data.hierarchy {kind!r}")


def _md_kwargs(c: DataConfig, evaluation: bool) -> dict:
    """The fixed N-way K-shot special case for ``data.episodes=n-way`` sources."""
    if c.episodes == "meta-dataset":
        return {}
    shape = c.eval_shape() if evaluation else (c.n_way, c.k_shot, c.n_query)
    return {"fixed": tuple(shape)}


def _training_sources(cfg: DataConfig) -> dict[str, DataConfig]:
    return {name: c for name, (c, trained) in source_configs(cfg).items() if trained}


def train_sampler(cfg: DataConfig, seed: int, rank: int = 0):
    """The meta-training :class:`~metalearn.data.samplers.EpisodeSampler` of a run.

    Its seed is derived from the run seed with the stream name ``"meta-train"``, so training
    tasks never coincide with the fixed validation or test episodes of a task family. It applies
    ``data.augment`` (the validation and test episodes never do).
    """
    if uses_sources(cfg):
        from metalearn.data.metadataset import MetaDatasetSampler, MultiSourceSampler

        samplers = {}
        for name, c in _training_sources(cfg).items():
            source = build_source(c, "train")
            samplers[name] = MetaDatasetSampler(source, seed=derive_seed(seed, "meta-train", name), rank=rank,
                                                pool=class_pool(c, source, "train"), augment=augmentation(c), name=name,
                                                **_md_kwargs(c, False))
        if len(samplers) == 1:
            return next(iter(samplers.values()))
        return MultiSourceSampler(samplers, cfg.source_weights, seed=derive_seed(seed, "meta-train-sources"),
                                  rank=rank)
    source = build_source(cfg, "train")
    if isinstance(source, UserTasks):  # a recommender: batches of users, sized by the protocol
        return UserTaskSampler(source, seed=derive_seed(seed, "meta-train"), rank=rank,
                               group_sizes=cfg.group_sizes)
    return EpisodeSampler(source, cfg.n_way, cfg.k_shot, cfg.n_query,
                          seed=derive_seed(seed, "meta-train"), rank=rank, augment=augmentation(cfg))


def fixed_episodes(cfg: DataConfig, split: str, n_episodes: int | None = None, seed: int | None = None):
    """The fixed validation or test episodes: same seed, same episodes for every method.

    A recommender's episodes are its users (:class:`~metalearn.data.user_tasks.UserEpisodes`):
    every test user (``n_episodes`` caps them when given), the first ``data.val_episodes``
    validation users.
    """
    n_way, k_shot, n_query = cfg.eval_shape()
    if seed is None:
        seed = cfg.val_seed if split == "val" else cfg.test_seed
    if uses_sources(cfg):
        from metalearn.data.metadataset import MetaDatasetEpisodes

        if n_episodes is None:
            n_episodes = cfg.val_episodes if split == "val" else cfg.test_episodes
        parts = {}
        for name, (c, _) in source_configs(cfg).items():
            source = build_source(c, split)
            parts[name] = MetaDatasetEpisodes(source, n_episodes, seed, pool=class_pool(c, source, split), name=name,
                                              **_md_kwargs(c, True))
        return parts[cfg.dataset] if len(parts) == 1 else SourcedEpisodes(parts)
    source = build_source(cfg, split)
    if isinstance(source, UserTasks):
        if n_episodes is None and split == "val":
            n_episodes = cfg.val_episodes
        return UserEpisodes(source, seed=seed, n_episodes=n_episodes)
    if n_episodes is None:
        n_episodes = cfg.val_episodes if split == "val" else cfg.test_episodes
    return FixedEpisodes(source, n_way, k_shot, n_query, n_episodes=n_episodes, seed=seed)


class SourcedEpisodes:
    """The fixed episodes of several sources, one after another: validation scores them together
    (one figure to select on); ``metalearn eval`` reports each source (:meth:`by_source`).

    Args:
        parts: Source name -> its fixed episodes (``MetaDatasetEpisodes``), in order.
    """

    def __init__(self, parts: dict):
        self.parts = dict(parts)
        self._index = [(name, i) for name, eps in self.parts.items() for i in range(len(eps))]
        self.seed = next(iter(self.parts.values())).seed if self.parts else None

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int):
        name, j = self._index[i]
        return self.parts[name][j]

    def __iter__(self):
        for eps in self.parts.values():
            yield from eps

    def by_source(self) -> dict:
        """Source name -> its episodes."""
        return dict(self.parts)

    def describe(self) -> dict:
        """What to record with a result: every source's own description."""
        return {"protocol": "multi-source", "n_episodes": len(self),
                "sources": {name: eps.describe() for name, eps in self.parts.items()}}


def train_classes(cfg: DataConfig) -> int:
    """Classes a pretraining classifier (Baseline, TSA) needs a logit for: those of the
    meta-training split, summed over the training sources of a multi-source run (whose episodes
    carry global class ids, :attr:`~metalearn.data.metadataset.MultiSourceSampler.class_offsets`)."""
    configs = _training_sources(cfg) if uses_sources(cfg) else {cfg.dataset: cfg}
    return sum(build_source(c, "train").num_classes for c in configs.values())


def data_fields(cfg: DataConfig) -> list:
    """The input layout ``[[name, cardinality, width], ...]`` of a recommender's data, which a
    :class:`~metalearn.models.RatingNet` left with ``model.fields`` unset is built for.

    Raises:
        ConfigError: the dataset has no attribute layout (it is not a ratings dataset).
    """
    fields = getattr(build_source(cfg, "train"), "fields", None)
    if fields is None:
        raise ConfigError(f"model.fields is unset and data.dataset={cfg.dataset} has no attribute "
                          "layout to take it from: the rating-net backbone is for ratings datasets "
                          "(metalearn list), or set model.fields=[[name, cardinality, width], ...]")
    return fields


def write_splits(cfg: DataConfig, run_dir: str | Path) -> Path | None:
    """Write ``RUN_DIR/splits.json``, the classes of each split, where the run made the split
    itself (a flat ``folder`` dataset or a ``text-file``, split by ``data.split_fractions`` and
    ``data.split_seed``).

    Returns:
        The file written, or ``None`` when the dataset brings its own splits.
    """
    split = text_file_split(cfg) if cfg.dataset == "text-file" else folder_split(cfg)
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


TOKENIZER_DIR = "tokenizer"
"""Where a text run keeps its tokenizer: ``RUN_DIR/tokenizer/`` (``tokenizer.json`` and
``tokenizer_meta.json``), the one ``metalearn adapt`` encodes new sentences with."""


def source_tokenizer(cfg: DataConfig, split: str = "train"):
    """The :class:`~metalearn.data.text.TextTokenizer` of a text dataset (every split has the one
    built from the meta-training classes, or the pretrained one), ``None`` for other data."""
    return getattr(build_source(cfg, split), "tokenizer", None)


def write_tokenizer(cfg: DataConfig, run_dir: str | Path) -> Path | None:
    """Save a text run's tokenizer to ``RUN_DIR/tokenizer/``; ``None`` for other data."""
    tokenizer = source_tokenizer(cfg)
    if tokenizer is None:
        return None
    folder = Path(run_dir) / TOKENIZER_DIR
    tokenizer.save(folder)
    return folder


def run_tokenizer(run_dir: str | Path):
    """The tokenizer saved with a text run, ``None`` when the run has none (not a text run).

    Raises:
        CheckpointError: the folder exists but cannot be read (names the files).
    """
    folder = Path(run_dir) / TOKENIZER_DIR
    if not folder.is_dir():
        return None
    from metalearn.data.text import TextTokenizer
    from metalearn.train.checkpoint import CheckpointError

    try:
        return TextTokenizer.load(folder)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"cannot read the run's tokenizer in {folder} ({e}): it holds "
                              "tokenizer.json and tokenizer_meta.json as written by metalearn train; "
                              "restore them from a copy of the run") from None


def embedding_rows(cfg: RunConfig) -> int | None:
    """Rows of a from-scratch text backbone's token embedding (``model.vocab_size``), else None."""
    rows = cfg.model.options.get("vocab_size")
    return rows if isinstance(rows, int) else None


def check_run_tokenizer(cfg: RunConfig, run_dir: str | Path, split: str = "train") -> None:
    """Check that a text run's saved tokenizer is the one its data gives now, and fits its model.

    The episodes of ``metalearn eval`` and a resumed run's batches are tokenised from the data
    again; if the vocabulary came out differently (the data files changed, another ``tokenizers``
    release trains differently), the checkpoint's embeddings would be read with the wrong ids.

    Args:
        cfg: The run's config.
        run_dir: The run directory.
        split: The split whose source is built anyway (``eval`` checks the one it evaluates).

    Raises:
        CheckpointError: a text run without its ``tokenizer/`` folder, a tokenizer that differs
            from the data's, or one with more tokens than the model's embedding has rows.
    """
    from metalearn.train.checkpoint import CheckpointError

    data, vocab_rows = cfg.data, embedding_rows(cfg)
    current = source_tokenizer(data, split)
    if current is None:
        return
    saved = run_tokenizer(run_dir)
    if saved is None:
        raise CheckpointError(f"{run_dir} is a text run ({data.dataset}) but has no {TOKENIZER_DIR}/ "
                              "folder: it was written by metalearn train; restore it from a copy of the run")
    if saved.fingerprint != current.fingerprint:
        raise CheckpointError(
            f"the tokenizer saved with {run_dir} differs from the one built now from {data.dataset} "
            f"(data.tokenizer={data.tokenizer}, vocabulary {saved.vocab_size} vs {current.vocab_size} "
            "tokens): the data files or the tokenizers release changed since training. Evaluate with "
            "the data the run was trained on, or train the run again")
    if vocab_rows is not None and saved.vocab_size > vocab_rows:
        raise CheckpointError(f"the run's tokenizer has {saved.vocab_size} tokens but its model embeds "
                              f"only {vocab_rows} (model.vocab_size): the tokenizer does not belong to "
                              "this checkpoint")
