"""Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015): 1,623 handwritten characters from
50 alphabets, 20 drawings each.

Splits:
    ``background`` / ``evaluation``: Lake's split, 964 / 659 characters (30 / 20 alphabets).
    ``all``: both together.
    ``vinyals-train`` / ``vinyals-val`` / ``vinyals-test`` / ``vinyals-trainval``: the split of
    Vinyals et al. 2016 as used by the Prototypical Networks and MAML papers, 1028 / 172 / 423
    characters, each in 4 rotations as separate classes (4112 / 688 / 1692 classes). The split
    files ship with metalearn (MIT license, from jakesnell/prototypical-networks).
    ``md-train`` / ``md-val`` / ``md-test``: the Meta-Dataset split (Triantafillou et al. 2020),
    883 / 81 / 659 characters of 25 / 5 / 20 alphabets, without rotations: validation is the 5
    smallest background alphabets (:data:`MD_VAL_ALPHABETS`), train the other 25, test the 20
    evaluation alphabets. Sample it one alphabet per episode with
    :func:`metalearn.data.hierarchy.omniglot_alphabets`.

Images are decoded once (Lanczos resize, inverted so strokes are 1 as in the MAML recipe) into
a cached uint8 array keyed by the archive's SHA-256 and the image size, memory-mapped on reuse.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from metalearn.data.base import ClassDataset, as_tensor
from metalearn.data.cache import ArrayCache, cache_dir, data_root, sha256_file
from metalearn.data.download import download, md5_file, safe_members
from metalearn.data.images import decode_all, image_size_tuple

URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{part}.zip"
OFFICIAL_MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
# (alphabets, characters, images) of each official archive: the structural check.
EXPECTED_COUNTS = {"images_background": (30, 964, 19280), "images_evaluation": (20, 659, 13180)}
VINYALS_SPLITS = ("train", "val", "test", "trainval")
# Meta-Dataset's validation alphabets, the 5 background alphabets with the fewest characters
# (14, 14, 16, 17, 20): google-research/meta-dataset, meta_dataset/dataset_conversion/
# dataset_to_records.py, OmniglotConverter.create_dataset_specification_and_records
# (`validation_alphabets`); training takes the other 25 background alphabets, test all 20
# evaluation alphabets.
MD_VAL_ALPHABETS = ("Blackfoot_(Canadian_Aboriginal_Syllabics)",
                    "Ojibwe_(Canadian_Aboriginal_Syllabics)",
                    "Inuktitut_(Canadian_Aboriginal_Syllabics)", "Tagalog", "Alphabet_of_the_Magi")
MD_SPLITS = ("md-train", "md-val", "md-test")
SPLITS = ("background", "evaluation", "all", *(f"vinyals-{s}" for s in VINYALS_SPLITS), *MD_SPLITS)


def vinyals_classes(part: str) -> list[str]:
    """Class names (``Alphabet/characterNN/rotDDD``) of a Vinyals split part (train/val/test/trainval)."""
    if part not in VINYALS_SPLITS:
        raise ValueError(f"unknown Vinyals split part {part!r}; choose one of {VINYALS_SPLITS}")
    text = resources.files("metalearn.data").joinpath(f"splits/omniglot_vinyals/{part}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


class _Source:
    """One Omniglot part (``images_background`` or ``images_evaluation``) as a zip or a folder."""

    def __init__(self, part: str, path: Path):
        self.part, self.path = part, path
        self.is_zip = path.is_file()
        if self.is_zip:
            self._zip = zipfile.ZipFile(path)
            self.names = sorted(m.filename for m in safe_members(self._zip) if m.filename.endswith(".png"))
        else:
            self.names = sorted(p.relative_to(path.parent).as_posix() for p in path.rglob("*.png"))
        if not self.names:
            raise FileNotFoundError(f"{path} holds no PNG images: is it an Omniglot {part} archive or folder?")

    def read(self, name: str) -> bytes:
        return self._zip.read(name) if self.is_zip else (self.path.parent / name).read_bytes()

    def key(self) -> str:
        if self.is_zip:
            return sha256_file(self.path)
        h = hashlib.sha256()
        for name in self.names:
            st = (self.path.parent / name).stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def class_of(self, name: str) -> str:
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != self.part:
            raise ValueError(
                f"{self.path}: unexpected member {name!r}; expected {self.part}/<alphabet>/<character>/<image>.png"
            )
        return f"{parts[1]}/{parts[2]}"

    def check_structure(self) -> None:
        """Compare alphabet/character/image counts with the official archive's."""
        classes = [self.class_of(n) for n in self.names]
        chars = sorted(set(classes))
        found = (len({c.split("/")[0] for c in chars}), len(chars), len(self.names))
        if found != EXPECTED_COUNTS[self.part]:
            raise ValueError(
                f"{self.path}: found {found[0]} alphabets, {found[1]} characters, {found[2]} images; "
                f"the official {self.part} has {EXPECTED_COUNTS[self.part]}. The copy is incomplete "
                "or not Omniglot: remove it to download the official archive."
            )


def locate_part(root: Path, part: str) -> Path | None:
    for folder in (root / "omniglot", root):
        for candidate in (folder / f"{part}.zip", folder / part):
            if candidate.exists():
                return candidate
    return None


def _load_part(root: Path, part: str, size: tuple[int, int], download_missing: bool,
               cache: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = locate_part(root, part)
    if path is None:
        if not download_missing:
            raise FileNotFoundError(
                f"Omniglot {part} not found under {root} (looked for omniglot/{part}.zip and "
                f"omniglot/{part}/): pass download=True, run `metalearn prepare-data omniglot`, or "
                "set --data-root / METALEARN_DATA to the folder that holds it"
            )
        path = download(URL.format(part=part), root / "omniglot" / f"{part}.zip", OFFICIAL_MD5[part])
    source = _Source(part, path)
    entry = ArrayCache(cache_dir(cache, root), f"omniglot-{part}-{size[0]}x{size[1]}",
                       hashlib.sha256(f"{source.key()}:{size}:lanczos:inverted".encode()).hexdigest())
    if (hit := entry.load()) is not None:
        array, meta = hit
        return array, np.asarray(meta["labels"], dtype=np.int64), meta["class_names"]
    if source.is_zip and md5_file(path) != OFFICIAL_MD5[part]:
        source.check_structure()
        warnings.warn(
            f"{path.name}: checksum differs from the official archive (md5 {OFFICIAL_MD5[part]}); "
            f"accepted after a structural check ({EXPECTED_COUNTS[part][1]} characters, "
            f"{EXPECTED_COUNTS[part][2]} images)", stacklevel=4)
    else:
        source.check_structure()
    classes = [source.class_of(n) for n in source.names]
    class_names = sorted(set(classes))
    position = {c: i for i, c in enumerate(class_names)}
    labels = np.array([position[c] for c in classes], dtype=np.int64)
    array, _, _ = decode_all(source.names, source.read, size, 1, invert=True,
                             progress=f"Omniglot {part}")
    array = entry.save(array, {"labels": labels.tolist(), "class_names": class_names,
                               "source": str(path), "image_size": list(size)})
    return array, labels, class_names


class Omniglot(ClassDataset):
    """Omniglot characters as a :class:`ClassDataset` of float images ``(1, H, W)`` in ``[0, 1]``.

    Args:
        split: One of ``background``, ``evaluation``, ``all``, ``vinyals-train``,
            ``vinyals-val``, ``vinyals-test``, ``vinyals-trainval``, ``md-train``, ``md-val``,
            ``md-test``.
        root: Data root holding ``omniglot/images_background.zip`` and
            ``omniglot/images_evaluation.zip`` (or their extracted folders); default
            ``$METALEARN_DATA`` or ``~/.cache/metalearn``.
        image_size: Side (or ``(h, w)``) after the Lanczos resize; 28 as in MAML/ProtoNet.
        rotations: Add the 90/180/270 degree rotations of every character as new classes
            (Lake splits only: the Vinyals splits already list their rotations).
        download: Fetch the official archives (md5-verified) when they are missing.
        cache: Folder for the decoded cache (default ``$METALEARN_CACHE`` or ``<root>/cache``).

    Examples:
        >>> ds = Omniglot("vinyals-test", root="../shared/data")  # doctest: +SKIP
        >>> ds.num_classes, ds.item_shape  # doctest: +SKIP
        (1692, (1, 28, 28))
    """

    def __init__(self, split: str = "background", root: str | os.PathLike | None = None,
                 image_size: int | Sequence[int] = 28, rotations: bool = False,
                 download: bool = True, cache: str | os.PathLike | None = None):
        if split not in SPLITS:
            raise ValueError(f"unknown Omniglot split {split!r}; choose one of {SPLITS}")
        if split.startswith("vinyals") and rotations:
            raise ValueError(f"{split} already contains the 4 rotations of each character; "
                             "leave rotations=False")
        if split in MD_SPLITS and rotations:
            raise ValueError(f"{split} is Meta-Dataset's split, which has no rotated classes; "
                             "leave rotations=False")
        explicit_root = root is not None or "METALEARN_DATA" in os.environ
        base = data_root(root, must_exist=explicit_root and not download)
        if explicit_root and not base.exists():
            raise FileNotFoundError(f"data root {base} does not exist: create it or point "
                                    "--data-root / METALEARN_DATA at the folder holding omniglot/")
        size = image_size_tuple(image_size)
        parts = {"background": ["images_background"], "evaluation": ["images_evaluation"],
                 "md-train": ["images_background"], "md-val": ["images_background"],
                 "md-test": ["images_evaluation"]}.get(
            split, ["images_background", "images_evaluation"])
        loaded = [_load_part(base, p, size, download, cache) for p in parts]
        data = as_tensor(loaded[0][0]) if len(loaded) == 1 else torch.cat([as_tensor(a) for a, _, _ in loaded])
        labels, names, offset = [], [], 0
        for _, lab, cls in loaded:
            labels.append(lab + offset)
            names += cls
            offset += len(cls)
        full = ClassDataset(data, np.concatenate(labels), names)
        if split.startswith("vinyals"):
            full = full.with_rotations().subset_classes(vinyals_classes(split.split("-", 1)[1]))
        elif split in ("md-train", "md-val"):
            full = full.subset_classes([c for c in full.class_names
                                        if (c.split("/")[0] in MD_VAL_ALPHABETS) == (split == "md-val")])
        elif rotations:
            full = full.with_rotations()
        super().__init__(full._data, full.labels, full.class_names, full._item_index)
        self.split = split
