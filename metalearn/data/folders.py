"""Image datasets from files: any ``root/<class>/<image>`` folder, and mini-ImageNet.

Images are decoded once with Pillow (Lanczos resize, converted to grey or RGB) into a uint8
cache keyed by the file listing (paths, sizes, modification times) and the decoding settings.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from metalearn.data.base import ClassDataset
from metalearn.data.cache import ArrayCache, cache_dir
from metalearn.data.images import IMAGE_EXTENSIONS, decode_all, image_size_tuple


def _listing_key(files: Sequence[Path], labels: Sequence[str], settings: str) -> str:
    h = hashlib.sha256(settings.encode())
    for path, label in zip(files, labels):
        st = path.stat()
        h.update(f"{label}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _decode_files(name: str, files: list[Path], labels: list[str], class_names: list[str],
                  size: tuple[int, int], channels: int, skip_corrupt: bool,
                  cache: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode (or load from cache) the files; returns images, int labels and the skipped files."""
    settings = f"{size}:{channels}:lanczos:skip={skip_corrupt}"
    entry = ArrayCache(cache_dir(cache), f"{name}-{size[0]}x{size[1]}x{channels}",
                       _listing_key(files, labels, settings))
    if (hit := entry.load()) is not None:
        array, meta = hit
        return array, np.asarray(meta["labels"], dtype=np.int64), meta["skipped"]
    position = {c: i for i, c in enumerate(class_names)}
    paths = [str(f) for f in files]
    array, kept, report = decode_all(paths, lambda p: Path(p).read_bytes(), size, channels,
                                     skip_corrupt=skip_corrupt, progress=name)
    int_labels = np.array([position[labels[i]] for i in kept], dtype=np.int64)
    missing = sorted(set(class_names) - {labels[i] for i in kept})
    if missing:
        raise ValueError(f"every image of class {missing[0]!r} was unreadable: fix or remove that class")
    array = entry.save(array, {"labels": int_labels.tolist(), "class_names": class_names,
                               "skipped": report.skipped})
    return array, int_labels, report.skipped


class ImageFolder(ClassDataset):
    """Images in ``root/<class>/<image>``, one sub-folder per class, in any format Pillow reads.

    Args:
        root: The folder of class folders.
        image_size: Side (or ``(h, w)``) after the Lanczos resize.
        channels: 1 (grey) or 3 (RGB); every image is converted.
        skip_corrupt: Skip unreadable images (their count is in ``skipped`` and a warning)
            instead of raising an error that names the file.
        cache: Folder for the decoded cache (default ``$METALEARN_CACHE`` or ``<data root>/cache``).

    Files that are not images (by extension, e.g. ``.txt``, ``.DS_Store``) are ignored and counted
    in ``ignored``. ``skipped`` lists unreadable images that were skipped.

    Raises:
        FileNotFoundError: ``root`` does not exist or has no class folders.
        ValueError: a class folder holds no images (named in the message).
        CorruptImageError: an image cannot be decoded and ``skip_corrupt`` is False.
    """

    @staticmethod
    def class_folders(root: Path) -> list[str]:
        """The class names of ``root``: its sub-folders, sorted, hidden ones left out.

        Raises:
            FileNotFoundError: ``root`` has no sub-folders.
        """
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"{root} has no class folders: expected {root}/<class>/<image files>")
        return classes

    def __init__(self, root: str | os.PathLike, image_size: int | Sequence[int] = 84,
                 channels: int = 3, skip_corrupt: bool = False,
                 cache: str | os.PathLike | None = None):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
        classes = self.class_folders(root)
        files, labels, self.ignored = [], [], 0
        for c in classes:
            entries = sorted(p for p in (root / c).iterdir() if p.is_file())
            images = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
            self.ignored += len(entries) - len(images)
            if not images:
                raise ValueError(f"class folder {root / c} holds no images: add images or remove the folder")
            files += images
            labels += [c] * len(images)
        if self.ignored:
            warnings.warn(f"{root}: ignored {self.ignored} files that are not images", stacklevel=2)
        size = image_size_tuple(image_size)
        key_name = "folder-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
        array, int_labels, self.skipped = _decode_files(key_name, files, labels, classes, size,
                                                        channels, skip_corrupt, cache)
        super().__init__(array, int_labels, classes)
        self.root = root


def ravi_split(split: str) -> list[tuple[str, str]]:
    """``(filename, synset)`` rows of the Ravi & Larochelle mini-ImageNet split (train/val/test)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown mini-ImageNet split {split!r}; choose train, val or test")
    text = resources.files("metalearn.data").joinpath(f"splits/mini_imagenet_ravi/{split}.csv").read_text()
    rows = [line.split(",") for line in text.splitlines()[1:] if line.strip()]
    return [(f.strip(), c.strip()) for f, c in rows]


class MiniImageNet(ClassDataset):
    """mini-ImageNet (Vinyals et al. 2016) with the split of Ravi & Larochelle 2017 (64/16/20 classes,
    600 images each), from a folder of the 60,000 images that users bring themselves.

    Args:
        root: Folder holding the images named as in the split csvs (``n0153282900000005.jpg``),
            directly or in an ``images/`` sub-folder.
        split: ``train``, ``val`` or ``test``.
        image_size: 84 as in the literature.
        rows: Use these ``(filename, class)`` rows instead of the packaged split (other splits).

    Raises:
        FileNotFoundError: images of the split are missing (count and an example in the message).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", image_size: int = 84,
                 skip_corrupt: bool = False, cache: str | os.PathLike | None = None,
                 rows: Sequence[tuple[str, str]] | None = None):
        root = Path(root).expanduser()
        folder = root / "images" if (root / "images").is_dir() else root
        rows = list(rows) if rows is not None else ravi_split(split)
        files = [folder / f for f, _ in rows]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(files)} mini-ImageNet {split} images are missing under "
                f"{folder}, e.g. {missing[0].name}: put the 60,000 images there (or in {root}/images)"
            )
        labels = [c for _, c in rows]
        classes = sorted(set(labels))
        array, int_labels, self.skipped = _decode_files(
            f"mini-imagenet-{split}", files, labels, classes, image_size_tuple(image_size), 3,
            skip_corrupt, cache)
        super().__init__(array, int_labels, classes)
        self.split = split


def split_classes(class_names: Sequence[str], fractions: Sequence[float], seed: int = 0
                  ) -> dict[str, list[str]]:
    """A seeded split of classes into ``train`` / ``val`` / ``test`` by the given fractions.

    Each class is placed by a hash of ``(seed, name)``, so the split does not depend on the
    machine, the listing order or any random number generator state; ``val`` and ``test`` get
    ``round(fraction * n)`` classes (at least one each) and ``train`` the rest.

    Args:
        class_names: The classes (e.g. the sub-folders of a flat ``ROOT/<class>/`` folder).
        fractions: ``[train, val, test]``, positive, summing to 1.
        seed: Another seed gives another split.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises:
        ValueError: malformed fractions, or too few classes for three non-empty splits.

    Examples:
        >>> s = split_classes([f"c{i}" for i in range(20)], [0.7, 0.15, 0.15], seed=0)
        >>> [len(s[k]) for k in ("train", "val", "test")]
        [14, 3, 3]
    """
    if len(fractions) != 3 or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three positive numbers [train, val, test] summing "
                         f"to 1, got {list(fractions)}")
    n = len(class_names)
    n_val, n_test = (max(1, round(f * n)) for f in fractions[1:])
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} classes are too few to split into train, val and test classes: "
                         "add classes (20 or more give usable few-shot tasks)")
    order = sorted(class_names, key=lambda c: hashlib.sha256(f"{seed}\0{c}".encode()).digest())
    n_train = n - n_val - n_test
    return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
            "test": sorted(order[n_train + n_val:])}
