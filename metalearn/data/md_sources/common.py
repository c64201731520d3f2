"""What every Meta-Dataset source shares: the seeded class split, the layout error, locating a
source folder (or extracting its archive safely), downloading official archives, decoding.

Reference: ``google-research/meta-dataset``, ``meta_dataset/dataset_conversion/dataset_to_records.py``
(``gen_rand_split_inds``, ``DatasetConverter.get_splits``, and one ``*Converter`` class per source)
and ``doc/dataset_conversion.md`` (archives and URLs). Our code is written from that description;
none of it is copied.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metalearn.data.base import ClassDataset
from metalearn.data.cache import ArrayCache, cache_dir
from metalearn.data.download import download, safe_members, verify_md5
from metalearn.data.images import decode_all, image_size_tuple

MD_SEED = 22
"""``DatasetConverter(random_seed=22)``: every converter re-seeds NumPy with it before its split."""

SPLIT_NAMES = ("train", "val", "test")

SPLIT_COUNTS: dict[str, tuple[int, int, int]] = {
    "ilsvrc_2012": (712, 158, 130), "aircraft": (70, 15, 15), "cu_birds": (140, 30, 30),
    "dtd": (33, 7, 7), "quickdraw": (241, 52, 52), "fungi": (994, 200, 200),
    "vgg_flower": (71, 15, 16), "traffic_sign": (0, 0, 43), "mscoco": (0, 40, 40),
}
"""(train, val, test) classes of each source in Meta-Dataset (its README and converters)."""


class MetaDatasetLayoutError(FileNotFoundError):
    """A Meta-Dataset source folder is missing or not in its original release layout; the message
    says what was expected where and how to get it."""


def md_split_indices(n_train: int, n_val: int, n_test: int, seed: int = MD_SEED
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Meta-Dataset's random class split, drawn exactly as ``gen_rand_split_inds`` does after
    ``np.random.seed(seed)``.

    The reference draws ``trainval = choice(n, n_train + n_val, replace=False)``, keeps the rest
    (sorted) for test, then ``train = choice(trainval, n_train, replace=False)`` and the rest of
    ``trainval`` (sorted) for validation. ``RandomState(seed)`` gives the same stream as the
    reseeded global generator, so the published split files are reproduced exactly (tested
    against DTD, Aircraft, CUB, VGG Flower, MSCOCO and Fungi's published lists).

    Returns:
        ``(train, val, test)`` int64 class positions: train in drawn order, val and test sorted.

    Examples:
        >>> tr, va, te = md_split_indices(3, 1, 1)
        >>> sorted(np.concatenate([tr, va, te]).tolist())
        [0, 1, 2, 3, 4]
    """
    rng = np.random.RandomState(seed)
    n = n_train + n_val + n_test
    trainval = rng.choice(n, n_train + n_val, replace=False)
    test = np.setdiff1d(np.arange(n), trainval)
    train = rng.choice(trainval, n_train, replace=False)
    val = np.setdiff1d(trainval, train)
    return train.astype(np.int64), val.astype(np.int64), test.astype(np.int64)


def md_class_split(class_names: Sequence[str], counts: tuple[int, int, int], seed: int = MD_SEED
                   ) -> dict[str, list[str]]:
    """Split ``class_names`` (in the order Meta-Dataset lists them) by :func:`md_split_indices`.

    Raises:
        MetaDatasetLayoutError: the number of classes is not ``sum(counts)`` (the reference asserts
            the same: a partial copy of a source would silently give another split).

    Examples:
        >>> md_class_split(list("abcde"), (3, 1, 1))
        {'train': ['b', 'c', 'a'], 'val': ['d'], 'test': ['e']}
    """
    if len(class_names) != sum(counts):
        raise MetaDatasetLayoutError(
            f"found {len(class_names)} classes, Meta-Dataset's split needs {sum(counts)} "
            f"({counts[0]} train / {counts[1]} val / {counts[2]} test): the copy is incomplete; "
            "get the whole release")
    tr, va, te = md_split_indices(*counts, seed=seed)
    return {name: [class_names[i] for i in ids] for name, ids in zip(SPLIT_NAMES, (tr, va, te))}


def check_split(split: str, source: str, splits: dict[str, list[str]]) -> list[str]:
    """The classes of ``split`` (``valid`` accepted for ``val``), refusing an empty split.

    Raises:
        ValueError: unknown split name, or a split without classes (Traffic Signs is test-only,
            MSCOCO has no training classes).
    """
    split = "val" if split == "valid" else split
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r} for {source}; choose train, val or test")
    if not splits[split]:
        used = [s for s in SPLIT_NAMES if splits[s]]
        raise ValueError(f"{source} has no {split} classes in Meta-Dataset: it is "
                         f"{'/'.join(used)}-only; use it for {' or '.join(used)} episodes")
    return splits[split]


@dataclass(frozen=True)
class Archive:
    """One official file of a source: where it is published and its MD5 (``None``: no published
    checksum that we could confirm; then a download needs ``allow_unverified=True``)."""

    filename: str
    url: str
    md5: str | None


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a ``.zip``/``.tar``/``.tar.gz``/``.tgz`` into ``dest``, refusing unsafe members
    (a file that is neither, such as VGG Flower's ``imagelabels.mat``, is copied there).

    Tar members go through tarfile's ``data`` filter (no absolute paths, ``..``, links leaving
    ``dest``, device files); zip members through :func:`metalearn.data.download.safe_members`.

    Raises:
        UnsafeArchiveError / tarfile.FilterError: a member would escape ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if not (zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive)):  # a plain file (a .mat)
        if archive.parent.resolve() != dest.resolve():
            shutil.copy2(archive, dest / archive.name)
        return
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in safe_members(z):
                z.extract(info, dest)
        return
    with tarfile.open(archive) as t:
        t.extractall(dest, filter="data")


def locate(source: str, root: str | os.PathLike, folder: str, marker: str,
           archives: Sequence[Archive], extract_to: str = "") -> Path:
    """The extracted folder ``root/folder`` of a source, extracting its archives found in ``root``
    (checked against their MD5 when published) when the folder is not there yet.

    Args:
        folder: The folder the release extracts to (e.g. ``fgvc-aircraft-2013b``).
        marker: A path inside ``folder`` that the layout must have (e.g. ``data/images_box.txt``).
        archives: The official files; those present in ``root`` are extracted into
            ``root/extract_to``.

    Raises:
        MetaDatasetLayoutError: neither the folder (with its marker) nor the archives are there.
    """
    root = Path(root).expanduser()
    base = root / folder
    if (base / marker).exists():
        return base
    present = [a for a in archives if (root / a.filename).is_file()]
    if present and len(present) == len(archives):
        for a in present:
            if a.md5 is not None:
                verify_md5(root / a.filename, a.md5)
            extract_archive(root / a.filename, root / extract_to)
        if (base / marker).exists():
            return base
    files = ", ".join(f"{a.filename} ({a.url})" for a in archives) or "no public archive"
    raise MetaDatasetLayoutError(
        f"{source}: expected {base / marker} (the release extracted into {base}) or its archives "
        f"in {root}: {files}" + ("" if not archives else "; download_source(...) fetches them"))


def download_archives(root: str | os.PathLike, archives: Sequence[Archive], *,
                      allow_unverified: bool = False, quiet: bool = False) -> list[Path]:
    """Fetch the official files into ``root`` (files already there are kept), MD5-checked.

    Raises:
        ValueError: an archive has no published checksum and ``allow_unverified`` is False.
        ChecksumError: a download does not match its checksum (the file is removed).
    """
    root = Path(root).expanduser()
    out = []
    for a in archives:
        dest = root / a.filename
        if a.md5 is None and not allow_unverified:
            raise ValueError(f"{a.filename} has no published checksum we could confirm: pass "
                             f"allow_unverified=True to download {a.url} unchecked, or fetch it yourself")
        if not dest.is_file():
            download(a.url, dest, a.md5, quiet=quiet)
        elif a.md5 is not None:
            verify_md5(dest, a.md5)
        out.append(dest)
    return out


def image_files(folder: Path, skip: frozenset[str] = frozenset()) -> list[Path]:
    """The files of ``folder`` in sorted order, as ``write_tfrecord_from_directory`` lists them
    (sub-folders and the names in ``skip`` left out)."""
    return [p for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip]


def decode_items(name: str, keys: Sequence[str], labels: Sequence[int], class_names: Sequence[str],
                 read: Callable[[str], bytes], fingerprint: str, image_size: int,
                 skip_corrupt: bool, cache: str | os.PathLike | None) -> ClassDataset:
    """Decode (once; cached) the images named by ``keys`` into a :class:`ClassDataset` of RGB
    ``(3, image_size, image_size)`` uint8 images (Lanczos), for sources whose examples are not
    whole files (crops of boxes, rows of a ``.npy``).

    Args:
        keys: One identifier per example, passed to ``read`` (returns encoded image bytes).
        labels: Class index of each example, into ``class_names``.
        fingerprint: Identifies the source files (paths, sizes, times) for the cache key.
    """
    size = image_size_tuple(image_size)
    h = hashlib.sha256(f"{fingerprint}\0{size}:3:lanczos:skip={skip_corrupt}".encode())
    for k, y in zip(keys, labels):
        h.update(f"{y}\0{k}\n".encode())
    entry = ArrayCache(cache_dir(cache), f"{name}-{size[0]}x{size[1]}x3", h.hexdigest())
    if (hit := entry.load()) is not None:
        array, meta = hit
        return ClassDataset(array, np.asarray(meta["labels"], np.int64), list(class_names))
    array, kept, report = decode_all(list(keys), read, size, 3, skip_corrupt=skip_corrupt, progress=name)
    int_labels = np.asarray(labels, np.int64)[kept]
    empty = sorted(set(range(len(class_names))) - set(int_labels.tolist()))
    if empty:
        raise ValueError(f"{name}: class {class_names[empty[0]]!r} has no readable image: fix the files")
    if report.skipped:
        warnings.warn(f"{name}: skipped {len(report.skipped)} unreadable images", stacklevel=2)
    array = entry.save(array, {"labels": int_labels.tolist(), "skipped": report.skipped})
    return ClassDataset(array, int_labels, list(class_names))


def files_fingerprint(paths: Sequence[Path]) -> str:
    """A hash of the files' paths, sizes and modification times (what the cache key follows)."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
