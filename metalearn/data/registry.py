"""The dataset name table of the command line: dataset name -> how to build each split.

It lives in the data layer so that the run config (``metalearn.train.config``, which checks
``data.dataset`` against it) and the samplers of a run (``metalearn.train.data``) both read it
without importing each other.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metalearn.data.folders import ImageFolder, MiniImageNet, split_classes
from metalearn.data.hierarchy import read_folder_tree
from metalearn.data.images import IMAGE_EXTENSIONS
from metalearn.data.intents import INTENT_DATASETS, read_text_file, split_text_dataset
from metalearn.data.md_sources import READERS
from metalearn.data.omniglot import Omniglot
from metalearn.data.regression import LinearTasks, SinusoidTasks
from metalearn.data.user_tasks import UserTasks


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
        text: Text datasets: each example is a row of ``data.max_length`` int64 token ids
            (:class:`~metalearn.data.text.TextDataset`, ``images=False``).
        ratings: Ratings datasets: each user is a regression task
            (:class:`~metalearn.data.user_tasks.UserTasks`, ``images=False``).
    """

    description: str
    build: Callable
    images: bool = True
    channels: int | None = None
    invert: bool = False
    text: bool = False
    ratings: bool = False


def _omniglot(cfg, split: str):
    lake = not split.startswith(("vinyals", "md-"))  # Vinyals splits hold rotations; Meta-Dataset has none
    return Omniglot(split, root=cfg.root, image_size=cfg.image_size, rotations=cfg.rotations and lake)


def _mini_imagenet(cfg, split: str):
    return MiniImageNet(cfg.root, split=split, image_size=cfg.image_size)


FOLDER_LAYOUTS = ("ROOT/<class>/<image> (one folder per class: the classes are split into "
                  "train/val/test by data.split_fractions, seeded by data.split_seed) or "
                  "ROOT/<split>/<class>/<image> (split folders named by data.train_split, "
                  "data.val_split and data.test_split)")
"""What ``data.dataset=folder`` reads, for its error messages."""


def _subfolders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def folder_split(cfg) -> dict | None:
    """The seeded class split of a flat ``folder`` dataset (``ROOT/<class>/<image>``), as written
    to ``RUN_DIR/splits.json``; ``None`` when ``cfg`` is not one (other datasets, split folders).

    Raises:
        ValueError / FileNotFoundError: no ``data.root``, or a folder of neither layout (the
            message says what the folder dataset reads).
    """
    if cfg.dataset != "folder":
        return None
    root = _folder_root(cfg)
    names = (cfg.train_split, cfg.val_split, cfg.test_split)
    subfolders = _subfolders(root)
    if any(n in subfolders for n in names):
        return None
    if not subfolders or not any(_holds_images(root / d) for d in subfolders):
        shown = ", ".join(subfolders[:6]) + (", ..." if len(subfolders) > 6 else "")
        fix = (f" If those are your split folders, name them: data.train_split=... data.val_split=... "
               f"data.test_split=... (now {names[0]!r}, {names[1]!r}, {names[2]!r})") if subfolders else ""
        raise FileNotFoundError(f"data.dataset=folder reads {FOLDER_LAYOUTS}; {root} has "
                                + (f"sub-folders {shown} without images in them." if subfolders
                                   else "no sub-folders.") + fix)
    classes = ImageFolder.class_folders(root)
    return {"root": str(root), "split_fractions": list(cfg.split_fractions),
            "split_seed": cfg.split_seed,
            **split_classes(classes, cfg.split_fractions, cfg.split_seed)}


def _folder_root(cfg) -> Path:
    if cfg.root is None:
        raise ValueError(f"data.dataset=folder needs data.root (or --data-root): a folder of {FOLDER_LAYOUTS}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} does not exist or is not a folder; data.dataset=folder "
                                f"reads {FOLDER_LAYOUTS}")
    return root


def _folder(cfg, split: str):
    root = _folder_root(cfg)
    if (root / split).is_dir():
        return ImageFolder(root / split, image_size=cfg.image_size, channels=cfg.channels)
    names = {cfg.train_split: "train", cfg.val_split: "val", cfg.test_split: "test"}
    flat = folder_split(cfg)
    if flat is None:  # split folders, but not this one
        raise FileNotFoundError(
            f"{root} has no split folder {split!r}; its sub-folders: {', '.join(_subfolders(root))}. "
            f"data.dataset=folder reads {FOLDER_LAYOUTS}: set data.train_split, data.val_split and "
            "data.test_split to your split folders' names")
    role = names.get(split, split)
    if role not in flat:
        raise ValueError(f"split {split!r} of the flat folder {root}: choose train, val or test")
    return ImageFolder(root, image_size=cfg.image_size, channels=cfg.channels).subset_classes(flat[role])


def _folder_tree(cfg, split: str):
    """``ROOT/<group>/<class>/<image>``: split folders ``ROOT/<split>/<group>/<class>/`` when
    present, otherwise whole groups split by ``data.split_fractions`` (seeded by
    ``data.split_seed``), as Meta-Dataset splits Omniglot by alphabet."""
    root = _folder_root(cfg)
    if (root / split).is_dir():
        return read_folder_tree(root / split, cfg.image_size, cfg.channels)[0]
    dataset, _ = read_folder_tree(root, cfg.image_size, cfg.channels)
    groups = sorted({name.split("/", 1)[0] for name in dataset.class_names})
    if len(groups) < 3:
        raise ValueError(f"data.dataset=folder-tree splits the group folders of {root} into train, val "
                         f"and test, but it has {len(groups)} ({', '.join(groups)}): give it at least 3 "
                         "groups, or split folders ROOT/<split>/<group>/<class>/ named by data.train_split, "
                         "data.val_split and data.test_split")
    role = {cfg.train_split: "train", cfg.val_split: "val", cfg.test_split: "test"}.get(split, split)
    chosen = set(split_classes(groups, cfg.split_fractions, cfg.split_seed)[role])
    return dataset.subset_classes([n for n in dataset.class_names if n.split("/", 1)[0] in chosen])


def _intents(name: str) -> Callable:
    def build(cfg, split: str):
        return INTENT_DATASETS[name](split, fold=cfg.fold, root=cfg.root, tokenizer=cfg.tokenizer,
                                     vocab_size=cfg.vocab_size, max_length=cfg.max_length,
                                     lowercase=cfg.lowercase)
    build.__name__ = f"_{name}"
    return build


def text_file_split(cfg) -> dict:
    """The seeded class split of ``data.dataset=text-file`` (``data.root`` is the file), as
    written to ``RUN_DIR/splits.json``: its classes by ``data.split_fractions`` and
    ``data.split_seed``.

    Raises:
        ValueError / FileNotFoundError: no ``data.root``, or a file :func:`read_text_file` refuses.
    """
    return _text_file_rows(cfg)[2]


def _text_file_rows(cfg) -> tuple[list[str], list[str], dict]:
    if cfg.root is None:
        raise ValueError("data.dataset=text-file needs data.root (or --data-root): a CSV, TSV or JSONL "
                         "file with columns data.text_column and data.label_column")
    texts, labels = read_text_file(cfg.root, cfg.text_column, cfg.label_column)
    return texts, labels, {"root": str(cfg.root), "split_fractions": list(cfg.split_fractions),
                           "split_seed": cfg.split_seed,
                           **split_classes(sorted(set(labels)), cfg.split_fractions, cfg.split_seed)}


def _text_file(cfg, split: str):
    texts, labels, classes = _text_file_rows(cfg)
    return split_text_dataset(texts, labels, {k: classes[k] for k in ("train", "val", "test")}, split,
                              cfg.tokenizer, vocab_size=cfg.vocab_size, max_length=cfg.max_length,
                              lowercase=cfg.lowercase, name="text-file")


RATINGS_CSV_LAYOUT = ("ROOT/ratings.csv with columns user,item,rating[,timestamp], and optionally "
                      "ROOT/items.csv (column item, a title column, other columns attributes; "
                      "'a|b' for several values) and ROOT/users.csv (column user, attributes)")
"""What ``data.dataset=ratings-csv`` reads, for its error messages."""


@functools.lru_cache(maxsize=8)
def ratings_table(name: str, root: str | None):
    """The :class:`~metalearn.data.ratings.RatingsTable` of a ratings dataset, read once per process.

    Args:
        name: ``movielens-100k``, ``movielens-1m``, a synthetic one (:data:`SYNTHETIC_RATINGS`) or
            ``ratings-csv``.
        root: ``data.root``: the dataset's folder or zip (MovieLens; ``None``: under
            ``$METALEARN_DATA``), the folder of CSV files (``ratings-csv``); for the synthetic
            data the folder to generate it in (``None``: the cache).
    """
    from metalearn.data import ratings

    if name in SYNTHETIC_RATINGS:
        folder = synthetic_movielens_folder(root, SYNTHETIC_RATINGS[name])
        return dataclasses.replace(ratings.read_movielens_100k(folder), name=name)
    if name == "ratings-csv":
        if root is None:
            raise ValueError(f"data.dataset=ratings-csv needs data.root (or --data-root): {RATINGS_CSV_LAYOUT}")
        folder = Path(root).expanduser()
        if not (folder / "ratings.csv").is_file():
            raise FileNotFoundError(f"{folder} has no ratings.csv; data.dataset=ratings-csv reads {RATINGS_CSV_LAYOUT}")
        optional = {k: folder / f"{k}.csv" for k in ("items", "users")}
        return ratings.read_ratings_csv(folder / "ratings.csv",
                                        **{k: p for k, p in optional.items() if p.is_file()})
    return ratings.read_movielens(ratings.locate_movielens(name, root))


SYNTHETIC_RATINGS = {"movielens-synthetic": {}, "movielens-synthetic-1m": {"n_users": 6040, "n_items": 3706}}
"""The synthetic ratings datasets: name -> the generator's parameters other than its defaults
(:class:`~metalearn.data.synthetic_ratings.SyntheticRatings`): the sizes of ML-100K and ML-1M."""


def synthetic_movielens_folder(root: str | None = None, sizes: dict | None = None) -> Path:
    """The folder of the seeded synthetic MovieLens-100K-format files (generated once, atomically):
    ``root`` if given (an existing folder is read as it is), else
    ``<cache>/movielens-synthetic-<hash of the generator's parameters>``.

    Args:
        root: ``data.root``, or ``None`` for the cache.
        sizes: Parameters of :class:`~metalearn.data.synthetic_ratings.SyntheticRatings` to change.
    """
    from metalearn.data.cache import cache_dir
    from metalearn.data.synthetic_ratings import SyntheticRatings, write_synthetic_movielens

    config = SyntheticRatings(**(sizes or {}))
    # named by the generator's parameters: other parameters are other data, never a stale folder
    version = hashlib.sha256(repr(config).encode()).hexdigest()[:12]
    folder = Path(root).expanduser() if root else cache_dir() / f"movielens-synthetic-{version}"
    if not (folder / "u.data").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".synthetic-"))
        try:
            write_synthetic_movielens(tmp, config)
            if not (folder / "u.data").is_file():  # another process may have finished first
                if folder.exists():
                    shutil.rmtree(folder)
                tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _ratings(name: str) -> Callable:
    def build(cfg, split: str):
        return UserTasks(ratings_table(name, cfg.root), split, protocol=cfg.protocol,
                         user_split=cfg.user_split, fractions=cfg.split_fractions, seed=cfg.split_seed,
                         item_cold=cfg.item_cold, cold_fraction=cfg.cold_fraction)
    build.__name__ = f"_{name.replace('-', '_')}"
    return build


def _sinusoid(cfg, split: str):
    return SinusoidTasks()


def _linear(cfg, split: str):
    return LinearTasks()


def _md(source: str) -> Callable:
    def build(cfg, split: str):
        if cfg.root is None:
            raise ValueError(f"Meta-Dataset source {source} needs data.root (or --data-root): the folder "
                             "that holds its release folder")
        kwargs = {"max_per_class": QUICKDRAW_PER_CLASS} if source == "quickdraw" else {}
        return READERS[source](cfg.root, split, image_size=cfg.image_size, **kwargs)
    return build


QUICKDRAW_PER_CLASS = 1000
"""Drawings per class that ``md-quickdraw`` decodes (the first ones of each ``<class>.npy``):
Meta-Dataset keeps all ~50 million, which decoded at 84x84 RGB would need about a terabyte;
call :func:`metalearn.data.md_sources.read_quickdraw` directly for another cap."""


DATASETS: dict[str, DatasetEntry] = {
    "omniglot": DatasetEntry("Omniglot characters, 28x28 grey; splits vinyals-train/val/test "
                             "(with rotations), background, evaluation, md-train/md-val/md-test (Meta-Dataset: "
                             "25/5/20 alphabets)", _omniglot, True, 1, True),
    "mini-imagenet": DatasetEntry("mini-ImageNet, 84x84 RGB, Ravi & Larochelle splits "
                                  "train/val/test", _mini_imagenet, True, 3),
    "folder": DatasetEntry("your images: ROOT/<class>/<image> (classes split by data.split_fractions "
                           "and data.split_seed) or ROOT/<split>/<class>/<image> (split folders named "
                           "by data.train_split/val_split/test_split); data.channels 1 or 3",
                           _folder, True, None),
    "folder-tree": DatasetEntry("your images in groups: ROOT/<group>/<class>/<image> (one group per "
                                "Meta-Dataset episode; whole groups split by data.split_fractions) or "
                                "ROOT/<split>/<group>/<class>/<image>; data.channels 1 or 3", _folder_tree, True, None),
    "sinusoid": DatasetEntry("regression y = A sin(x - phase), A in [0.1, 5], phase in [0, pi], "
                             "x in [-5, 5] (MAML); built in, no download", _sinusoid, False),
    "linear": DatasetEntry("regression y = a x + b, a and b in [-3, 3]; built in", _linear, False),
    "banking77": DatasetEntry("BANKING77 intents (77, online banking); splits train/val/test of "
                              "ProtAugment fold data.fold, full-train/full-test (all 77 intents)",
                              _intents("banking77"), False, text=True),
    "clinc150": DatasetEntry("CLINC150 intents (150 in-scope; oos kept apart); splits train/val/test "
                             "of ProtAugment fold data.fold", _intents("clinc150"), False, text=True),
    "hwu64": DatasetEntry("HWU64 intents (64, home assistant); splits train/val/test of ProtAugment "
                          "fold data.fold", _intents("hwu64"), False, text=True),
    "text-file": DatasetEntry("your sentences: data.root is a CSV/TSV/JSONL file with columns "
                              "data.text_column and data.label_column; classes split into train/val/"
                              "test by data.split_fractions and data.split_seed", _text_file, False,
                              text=True),
    "movielens-100k": DatasetEntry("MovieLens 100K ratings (943 users, 1,682 movies; genres, year, age, "
                                   "gender, occupation, zip); each user a task (data.protocol melu|mamo); "
                                   "metalearn prepare-data movielens-100k", _ratings("movielens-100k"),
                                   False, ratings=True),
    "movielens-1m": DatasetEntry("MovieLens 1M ratings (6,040 users, 3,706 movies); each user a task; "
                                 "metalearn prepare-data movielens-1m", _ratings("movielens-1m"), False,
                                 ratings=True),
    "movielens-synthetic": DatasetEntry("seeded synthetic ratings in MovieLens-100K format and size (943 "
                                        "users; development data generated into the cache, not a result); "
                                        "each user a task", _ratings("movielens-synthetic"), False,
                                        ratings=True),
    "movielens-synthetic-1m": DatasetEntry("the same generator at MovieLens-1M's size (6,040 users, 3,706 "
                                           "items), in MovieLens-100K format; each user a task",
                                           _ratings("movielens-synthetic-1m"), False, ratings=True),
    "ratings-csv": DatasetEntry("your ratings: data.root holds ratings.csv (user,item,rating[,timestamp]) "
                                "and optionally items.csv and users.csv of attributes; each user a task",
                                _ratings("ratings-csv"), False, ratings=True),
    "md-aircraft": DatasetEntry("Meta-Dataset FGVC-Aircraft (data.root holds fgvc-aircraft-2013b/ or its "
                                "archive), box crops, 70/15/15 classes", _md("aircraft"), channels=3),
    "md-cu-birds": DatasetEntry("Meta-Dataset CUB-200-2011 (CUB_200_2011/ or its archive), 140/30/30",
                                _md("cu_birds"), channels=3),
    "md-dtd": DatasetEntry("Meta-Dataset DTD textures (dtd/ or dtd-r1.0.1.tar.gz), 33/7/7", _md("dtd"),
                           channels=3),
    "md-quickdraw": DatasetEntry("Meta-Dataset QuickDraw (quickdraw/<class>.npy bitmaps, the first 1,000 per class), 241/52/52",
                                 _md("quickdraw"), channels=3),
    "md-fungi": DatasetEntry("Meta-Dataset Fungi (fungi/ with train.json, val.json, images/), 994/200/200",
                             _md("fungi"), channels=3),
    "md-vgg-flower": DatasetEntry("Meta-Dataset VGG Flower (vgg_flower/ with jpg/ and imagelabels.mat), "
                                  "71/15/16", _md("vgg_flower"), channels=3),
    "md-traffic-sign": DatasetEntry("Meta-Dataset Traffic Signs (GTSRB/Final_Training/Images/), "
                                    "test-only (43 classes)", _md("traffic_sign"), channels=3),
    "md-mscoco": DatasetEntry("Meta-Dataset MSCOCO box crops (mscoco/ with train2017/ and "
                              "instances_train2017.json), val/test-only 40/40", _md("mscoco"), channels=3),
    "md-ilsvrc": DatasetEntry("Meta-Dataset ILSVRC-2012 (ILSVRC2012_img_train/<synset>/ and "
                              "wordnet.is_a.txt), 712/158/130", _md("ilsvrc_2012"), channels=3),
}
"""Name table for the CLI: dataset name -> :class:`DatasetEntry` (add yours with
:func:`register_dataset`)."""


def register_dataset(name: str, build: Callable, *, description: str = "", images: bool = True,
                     channels: int | None = None, invert: bool = False, replace: bool = False,
                     text: bool = False) -> None:
    """Add a dataset name to :data:`DATASETS`, so that ``data.dataset=NAME`` trains on it.

    Call it from Python before ``metalearn.train.train(cfg)``, ``load_run`` or
    ``metalearn.cli.main.main([...])`` of a run that names it (a run directory records the name,
    not the data, so register it again in the process that loads the run).

    Args:
        name: The name for ``data.dataset``.
        build: ``build(data_config, split) -> dataset``: ``data_config`` is the run's
            :class:`~metalearn.train.config.DataConfig` and ``split`` the name in its
            ``train_split``, ``val_split`` or ``test_split``. It returns a :class:`ClassDataset`,
            a :class:`~metalearn.data.regression.TaskFamily`, or any map-style
            ``torch.utils.data.Dataset`` of ``(x, label)`` items, which is wrapped in a lazy
            :class:`~metalearn.data.torch_dataset.TorchDataset`. Each split is built once per
            process.
        description: One line for ``metalearn list``.
        images: The items are images (``(C, H, W)``); False for regression task families.
        channels: Image channels; ``None``: ``data.channels`` of the config.
        invert: Images were inverted after decoding (what ``metalearn adapt`` does to its files).
        text: The items are token-id rows of a :class:`~metalearn.data.text.TextDataset`
            (pass ``images=False`` with it).
        replace: Replace an entry of that name (otherwise an error, so that a typo cannot
            shadow a built-in dataset).

    Raises:
        ValueError: the name is taken (and ``replace`` is False) or not a plain name.

    Examples:
        >>> register_dataset("tiny", lambda cfg, split: None, description="a test entry")
        >>> DATASETS["tiny"].description
        'a test entry'
        >>> del DATASETS["tiny"]
    """
    if not isinstance(name, str) or not name or any(c.isspace() or c in "=,[]" for c in name):
        raise ValueError(f"a dataset name is a word such as 'my-images', got {name!r}")
    if name in DATASETS and not replace:
        raise ValueError(f"dataset {name!r} is already registered ({DATASETS[name].description}); "
                         "pass replace=True to replace it")
    if not callable(build):
        raise TypeError(f"build must be a function build(data_config, split), got {type(build).__name__}")
    DATASETS[name] = DatasetEntry(description or f"registered: {getattr(build, '__name__', name)}",
                                  build, images, channels, invert, text)
