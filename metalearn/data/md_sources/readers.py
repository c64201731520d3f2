"""One reader per Meta-Dataset source, from its original release folder.

Each ``read_<source>(root, split)`` returns a :class:`~metalearn.data.base.ClassDataset` of the
split's classes, named as the source names them, in Meta-Dataset's class order (the order of its
class ids: train classes in the drawn order, val and test sorted), with RGB images of side
``image_size`` (Lanczos), decoded once into the cache. ``root`` is the data root that holds the
extracted release folder (or its official archives, extracted on first use).

The file reading and the class splits follow the converters of
``meta_dataset/dataset_conversion/dataset_to_records.py`` (cited per reader).
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from collections.abc import Collection
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from metalearn.data.base import ClassDataset
from metalearn.data.folders import _decode_files
from metalearn.data.images import CorruptImageError, image_size_tuple
from metalearn.data.md_sources.common import (
    SPLIT_COUNTS,
    Archive,
    MetaDatasetLayoutError,
    check_split,
    decode_items,
    files_fingerprint,
    image_files,
    locate,
    md_class_split,
)
from metalearn.data.md_sources.names import TRAFFIC_SIGN_NAMES, VGG_FLOWER_NAMES

ARCHIVES: dict[str, tuple[Archive, ...]] = {
    # URLs: doc/dataset_conversion.md. MD5s: the values torchvision / torchmeta pin for the same
    # files; None where we found no checksum we could confirm.
    "aircraft": (Archive("fgvc-aircraft-2013b.tar.gz", "https://www.robots.ox.ac.uk/~vgg/data/"
                         "fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz", None),),
    # Meta-Dataset's doc links the old vision.caltech.edu copy; CaltechDATA hosts it now (same MD5).
    "cu_birds": (Archive("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/"
                         "CUB_200_2011.tgz?download=1", "97eceeb196236b17998738112f37df78"),),
    "dtd": (Archive("dtd-r1.0.1.tar.gz", "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/"
                    "dtd-r1.0.1.tar.gz", "fff73e5086ae6bdbea199a49dfb8a4c1"),),
    "fungi": (Archive("fungi_train_val.tgz", "https://labs.gbif.org/fgvcx/2018/fungi_train_val.tgz", None),
              Archive("train_val_annotations.tgz",
                      "https://labs.gbif.org/fgvcx/2018/train_val_annotations.tgz", None)),
    "vgg_flower": (Archive("102flowers.tgz", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
                           "102flowers.tgz", "52808999861908f626f3c1f4e79d11fa"),
                   Archive("imagelabels.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
                           "imagelabels.mat", "e0620be6f572b9609742df49c70aed4d")),
    # One third-party script pins f33fd80ac59bff73c82d25ab499e03a3 for this zip; unconfirmed.
    "traffic_sign": (Archive("GTSRB_Final_Training_Images.zip", "https://sid.erda.dk/public/archives/"
                             "daaeac0d7ce1152aea9b61d9f1e19370/GTSRB_Final_Training_Images.zip", None),),
    # QuickDraw: 345 .npy files in gs://quickdraw_dataset/full/numpy_bitmap (fetch with gsutil);
    # ILSVRC-2012 and MSCOCO: bring your own copy (licence / size), as Meta-Dataset's doc says.
    "quickdraw": (), "mscoco": (), "ilsvrc_2012": (),
}

_FOLDERS = {  # source -> (folder under root, marker inside it, folder the archives extract into)
    "aircraft": ("fgvc-aircraft-2013b", "data/images_box.txt", ""),
    "cu_birds": ("CUB_200_2011", "classes.txt", ""),
    "dtd": ("dtd", "images", ""),
    "fungi": ("fungi", "train.json", "fungi"),
    "vgg_flower": ("vgg_flower", "imagelabels.mat", "vgg_flower"),
    "traffic_sign": ("GTSRB", "Final_Training/Images", ""),
}


def locate_source(source: str, root: str | os.PathLike) -> Path:
    """The extracted folder of ``source`` under ``root`` (its archives in ``root`` are checked and
    extracted when the folder is missing).

    Raises:
        MetaDatasetLayoutError: neither is there (the message names the paths and URLs).
        KeyError: unknown source.
    """
    folder, marker, extract_to = _FOLDERS[source]
    return locate(source, root, folder, marker, ARCHIVES[source], extract_to)


def _need(path: Path, source: str, what: str) -> Path:
    if not path.exists():
        raise MetaDatasetLayoutError(f"{source}: expected {what} at {path} (the original release layout)")
    return path


def _from_files(source: str, split: str, splits: dict[str, list[str]], files: dict[str, list[Path]],
                image_size: int, skip_corrupt: bool, cache) -> ClassDataset:
    classes = check_split(split, source, splits)
    paths, labels = [], []
    for c in classes:
        if not files.get(c):
            raise MetaDatasetLayoutError(f"{source}: class {c!r} has no images")
        paths += files[c]
        labels += [c] * len(files[c])
    array, int_labels, _ = _decode_files(f"md-{source}-{split}", paths, labels, classes,
                                         image_size_tuple(image_size), 3, skip_corrupt, cache)
    return ClassDataset(array, int_labels, classes)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _crop_reader(keys_to_box: dict[str, tuple[str, tuple[int, int, int, int]]]):
    def read(key: str) -> bytes:
        path, box = keys_to_box[key]
        try:
            with Image.open(path) as im:
                return _png(im.convert("RGB").crop(box))
        except (OSError, SyntaxError, ValueError) as e:
            raise CorruptImageError(str(e)) from e
    return read


def read_aircraft(root, split: str = "train", image_size: int = 84, *, counts=None,
                  cache=None, skip_corrupt: bool = False) -> ClassDataset:
    """FGVC-Aircraft 2013b (``fgvc-aircraft-2013b/data/``), 100 variants, 70/15/15, each image
    cropped to its box in ``images_box.txt`` (as ``AircraftConverter``: it drops the copyright
    banner and picks the labelled aircraft).

    Classes: ``sorted(variants.txt)`` split by :func:`md_class_split`; images: the ids of
    ``images_variant_trainval.txt`` + ``images_variant_test.txt``, sorted per variant.

    Args:
        counts: ``(train, val, test)`` class counts (default Meta-Dataset's); a smaller copy of the
            layout needs its own (tests).

    Examples:
        >>> read_aircraft("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        metalearn.data.md_sources.common.MetaDatasetLayoutError: aircraft: expected .../fgvc-aircraft-2013b/data/images_box.txt ...
    """
    base = locate_source("aircraft", root) / "data"
    variants = sorted(line.strip() for line in _need(base / "variants.txt", "aircraft", "the variant list")
                      .read_text().splitlines() if line.strip())
    splits = md_class_split(variants, counts or SPLIT_COUNTS["aircraft"])
    classes = check_split(split, "aircraft", splits)
    boxes = {}
    for line in (base / "images_box.txt").read_text().splitlines():
        if line.strip():
            name, *xyxy = line.split()
            boxes[name] = tuple(int(v) for v in xyxy)
    by_variant = defaultdict(list)
    for part in ("trainval", "test"):
        for line in _need(base / f"images_variant_{part}.txt", "aircraft", "the image labels").read_text().splitlines():
            if line.strip():
                name, variant = line.rstrip("\n").split(" ", 1)
                by_variant[variant].append(name)
    keys, labels, table = [], [], {}
    for y, c in enumerate(classes):
        for name in sorted(by_variant[c]):
            path = _need(base / "images" / f"{name}.jpg", "aircraft", "an image")
            keys.append(name)
            labels.append(y)
            table[name] = (str(path), boxes[name])
    fp = files_fingerprint([base / "images_box.txt", base / "images_variant_trainval.txt"])
    return decode_items(f"md-aircraft-{split}", keys, labels, classes, _crop_reader(table), fp,
                        image_size, skip_corrupt, cache)


def read_cu_birds(root, split: str = "train", image_size: int = 84, *, counts=None,
                  cache=None, skip_corrupt: bool = False) -> ClassDataset:
    """CUB-200-2011 (``CUB_200_2011/images/<class>/``), 200 species, 140/30/30, classes in the
    order of ``classes.txt`` (``CUBirdsConverter``), class names such as ``001.Black_footed_Albatross``."""
    base = locate_source("cu_birds", root)
    names = [line.split(" ", 1)[1].strip() for line in (base / "classes.txt").read_text().splitlines()
             if line.strip()]
    splits = md_class_split(names, counts or SPLIT_COUNTS["cu_birds"])
    files = {c: image_files(_need(base / "images" / c, "cu_birds", "a class folder"))
             for c in check_split(split, "cu_birds", splits)}
    return _from_files("cu_birds", split, splits, files, image_size, skip_corrupt, cache)


def read_dtd(root, split: str = "train", image_size: int = 84, *, counts=None,
             cache=None, skip_corrupt: bool = False) -> ClassDataset:
    """Describable Textures r1.0.1 (``dtd/images/<class>/``), 47 classes, 33/7/7, classes sorted
    (``DTDConverter``; the stray ``.directory`` file of ``waffled`` is skipped as there)."""
    base = locate_source("dtd", root) / "images"
    names = sorted(p.name for p in base.iterdir() if p.is_dir())
    splits = md_class_split(names, counts or SPLIT_COUNTS["dtd"])
    files = {c: image_files(base / c, frozenset({".directory"})) for c in check_split(split, "dtd", splits)}
    return _from_files("dtd", split, splits, files, image_size, skip_corrupt, cache)


def read_vgg_flower(root, split: str = "train", image_size: int = 84, *, counts=None,
                    cache=None, skip_corrupt: bool = False) -> ClassDataset:
    """VGG Flower 102 (``vgg_flower/jpg/image_%05d.jpg`` + ``imagelabels.mat``), 71/15/16,
    class names ``"%03d.<name>"`` from Meta-Dataset's ``VggFlower_labels.txt``
    (``VGGFlowerConverter``). Reading the ``.mat`` needs SciPy.

    Raises:
        ImportError: SciPy is not installed (``pip install scipy``).
    """
    try:
        from scipy.io import loadmat
    except ImportError as e:  # pragma: no cover - scipy is present where the tests run
        raise ImportError("reading VGG Flower's imagelabels.mat needs SciPy: pip install scipy") from e
    base = locate_source("vgg_flower", root)
    labels = np.asarray(loadmat(base / "imagelabels.mat")["labels"]).reshape(-1)
    n = sum(counts) if counts else 102
    names = [f"{i + 1:03d}.{VGG_FLOWER_NAMES[i]}" for i in range(n)]
    splits = md_class_split(names, counts or SPLIT_COUNTS["vgg_flower"])
    by_label = defaultdict(list)
    for i, lab in enumerate(labels.tolist()):
        by_label[int(lab)].append(_need(base / "jpg" / f"image_{i + 1:05d}.jpg", "vgg_flower", "an image"))
    files = {c: by_label[int(c[:3])] for c in check_split(split, "vgg_flower", splits)}
    return _from_files("vgg_flower", split, splits, files, image_size, skip_corrupt, cache)


def read_traffic_sign(root, split: str = "test", image_size: int = 84, *, counts=None,
                      cache=None, skip_corrupt: bool = False) -> ClassDataset:
    """GTSRB (``GTSRB/Final_Training/Images/<%05d>/*.ppm``), all 43 classes for test
    (``TrafficSignConverter``), names ``"%02d.<name>"``; the ``GT-*.csv`` files are skipped.

    Raises:
        ValueError: ``split`` is train or val (the source is test-only).
    """
    base = locate_source("traffic_sign", root) / "Final_Training" / "Images"
    counts = counts or SPLIT_COUNTS["traffic_sign"]
    n = sum(counts)
    names = [f"{i:02d}.{TRAFFIC_SIGN_NAMES[i]}" for i in range(n)]
    # The split is fixed (no draw): class ids 0..42 in order, the first counts[0] for train, etc.
    splits = {"train": names[:counts[0]], "val": names[counts[0]:counts[0] + counts[1]],
              "test": names[counts[0] + counts[1]:]}
    files = {c: image_files(_need(base / f"{int(c[:2]):05d}", "traffic_sign", "a class folder"),
                            frozenset({f"GT-{int(c[:2]):05d}.csv"}))
             for c in check_split(split, "traffic_sign", splits)}
    return _from_files("traffic_sign", split, splits, files, image_size, skip_corrupt, cache)


def read_fungi(root, split: str = "train", image_size: int = 84, *, counts=None,
               cache=None, skip_corrupt: bool = False) -> ClassDataset:
    """FGVCx Fungi 2018 (``fungi/train.json``, ``val.json``, ``images/``), 1394 species,
    994/200/200 over the union of the original train and val images (``FungiConverter``),
    names ``"%04d.<name>"`` (some species names repeat)."""
    base = locate_source("fungi", root)
    train = json.loads((base / "train.json").read_text())
    val = json.loads(_need(base / "val.json", "fungi", "val.json").read_text())
    categories = sorted(train["categories"], key=lambda c: c["id"])
    if [c["id"] for c in categories] != list(range(len(categories))):
        raise MetaDatasetLayoutError(f"fungi: {base / 'train.json'} categories are not ids 0..n-1")
    names = [f"{c['id']:04d}.{c['name']}" for c in categories]
    splits = md_class_split(names, counts or SPLIT_COUNTS["fungi"])
    image_class = {a["image_id"]: a["category_id"] for a in train["annotations"] + val["annotations"]}
    by_class = defaultdict(list)
    for image in train["images"] + val["images"]:
        by_class[image_class[image["id"]]].append(base / image["file_name"])
    files = {c: by_class[int(c[:4])] for c in check_split(split, "fungi", splits)}
    return _from_files("fungi", split, splits, files, image_size, skip_corrupt, cache)


def quickdraw_counts(n_classes: int) -> tuple[int, int, int]:
    """``QuickdrawConverter``'s counts: ``int(0.7 n)`` train, ``int(0.85 n) - int(0.7 n)`` val,
    the rest test (241/52/52 for the 345 classes).

    Examples:
        >>> quickdraw_counts(345)
        (241, 52, 52)
    """
    n_train, n_trainval = int(0.7 * n_classes), int(0.85 * n_classes)
    return n_train, n_trainval - n_train, n_classes - n_trainval


def read_quickdraw(root, split: str = "train", image_size: int = 84, *, max_per_class: int | None = None,
                   cache=None) -> ClassDataset:
    """QuickDraw bitmaps (``quickdraw/<class>.npy``: ``(n, 784)`` uint8 rows of 28x28 drawings),
    345 classes split by :func:`quickdraw_counts` over the sorted names (``QuickdrawConverter``).

    Args:
        max_per_class: Keep the first rows of each class only. Meta-Dataset keeps every drawing
            (no cap in its converter); the full set is ~50M drawings, far too many to cache at
            84x84 RGB, so choose a cap for real use.
    """
    base = Path(root).expanduser() / "quickdraw"
    if not base.is_dir() or not any(base.glob("*.npy")):
        raise MetaDatasetLayoutError(
            f"quickdraw: expected the 345 <class>.npy bitmap files in {base} "
            "(gsutil -m cp gs://quickdraw_dataset/full/numpy_bitmap/*.npy that folder)")
    files = sorted(p.name for p in base.iterdir() if p.suffix == ".npy")
    names = sorted(f[: f.find(".")] for f in files)
    splits = md_class_split(names, quickdraw_counts(len(names)))
    classes = check_split(split, "quickdraw", splits)

    @lru_cache(maxsize=4)
    def rows(c: str) -> np.ndarray:
        return np.load(base / f"{c}.npy", mmap_mode="r")

    def read(key: str) -> bytes:
        c, i = key.rsplit("#", 1)
        row = np.asarray(rows(c)[int(i)])
        row = row.astype(np.uint8) * 255 if row.dtype == np.bool_ else row.astype(np.uint8)
        side = int(np.sqrt(row.shape[0]))
        return _png(Image.fromarray(row.reshape(side, side)).convert("RGB"))

    keys, labels = [], []
    for y, c in enumerate(classes):
        n = len(rows(c)) if max_per_class is None else min(len(rows(c)), max_per_class)
        keys += [f"{c}#{i}" for i in range(n)]
        labels += [y] * n
    fp = files_fingerprint([base / f"{c}.npy" for c in classes])
    return decode_items(f"md-quickdraw-{split}", keys, labels, classes, read, fp, image_size, False, cache)


def coco_crop_box(bbox, image_w: int, image_h: int, scale: float = 1.2) -> tuple[int, int, int, int]:
    """``MSCOCOConverter``'s crop of a COCO box ``(x, y, w, h)``: scaled by ``scale`` about its
    centre, half-integer pixel corners rounded, clipped to the image; ``(xmin, ymin, xmax, ymax)``.

    Raises:
        ValueError: the crop is empty (the reference skips such annotations).

    Examples:
        >>> coco_crop_box([10, 10, 10, 10], 100, 100)
        (8, 8, 21, 21)
    """
    x, y, w, h = bbox
    x, y, w, h = x - 0.5 * w * (scale - 1.0), y - 0.5 * h * (scale - 1.0), w * scale, h * scale
    xmin, ymin = max(int(round(x - 0.5)), 0), max(int(round(y - 0.5)), 0)
    xmax = min(int(round(x + w - 0.5)) + 1, image_w)
    ymax = min(int(round(y + h - 0.5)) + 1, image_h)
    if xmax - xmin <= 0 or ymax - ymin <= 0:
        raise ValueError(f"empty crop of box {bbox}")
    return xmin, ymin, xmax, ymax


def read_mscoco(root, split: str = "val", image_size: int = 84, *, counts=None,
                cache=None) -> ClassDataset:
    """MSCOCO 2017 train (``mscoco/instances_train2017.json`` or ``mscoco/annotations/...`` and
    ``mscoco/train2017/%012d.jpg``): one example per annotated box, cropped by
    :func:`coco_crop_box`; 80 categories in the json's order split 0/40/40 (``MSCOCOConverter``).
    Unreadable images and empty crops are skipped, as there. Bring your own copy (cocodataset.org).

    Raises:
        ValueError: ``split`` is train (MSCOCO has no training classes in Meta-Dataset).
    """
    base = Path(root).expanduser() / "mscoco"
    ann = next((p for p in (base / "instances_train2017.json",
                            base / "annotations" / "instances_train2017.json") if p.is_file()), None)
    if ann is None or not (base / "train2017").is_dir():
        raise MetaDatasetLayoutError(
            f"mscoco: expected {base}/instances_train2017.json (or annotations/instances_train2017.json) "
            f"and the images in {base}/train2017/ (from train2017.zip and annotations_trainval2017.zip)")
    data = json.loads(ann.read_text())
    names = [c["name"] for c in data["categories"]]
    splits = md_class_split(names, counts or SPLIT_COUNTS["mscoco"])
    classes = check_split(split, "mscoco", splits)
    label_of = {c["id"]: classes.index(c["name"]) for c in data["categories"] if c["name"] in classes}
    keys, labels = [], []

    def read(key: str) -> bytes:
        image_id, box = key.split("|")
        path = base / "train2017" / f"{int(image_id):012d}.jpg"
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                return _png(im.crop(coco_crop_box([float(v) for v in box.split(",")], *im.size)))
        except (OSError, SyntaxError, ValueError) as e:
            raise CorruptImageError(f"{path}: {e}") from e

    for a in data["annotations"]:
        if a["category_id"] in label_of:
            keys.append(f"{a['image_id']}|{','.join(repr(float(v)) for v in a['bbox'])}")
            labels.append(label_of[a["category_id"]])
    return decode_items(f"md-mscoco-{split}", keys, labels, classes, read, files_fingerprint([ann]),
                        image_size, True, cache)


ILSVRC_VAL_ROOT, ILSVRC_TEST_ROOT = "n02075296", "n03183080"
"""``imagenet_specification.create_imagenet_specification``: the validation classes are the
leaves under 'carnivore', the test classes those under 'device', training gets the rest."""


def _ilsvrc_base(root) -> tuple[Path, Path]:
    root = Path(root).expanduser()
    for base in (root / "ILSVRC2012_img_train", root / "train", root):
        is_a = next((p for p in (base / "wordnet.is_a.txt", root / "wordnet.is_a.txt") if p.is_file()), None)
        if is_a is not None and any(p.is_dir() and p.name.startswith("n") for p in base.iterdir()):
            return base, is_a
    raise MetaDatasetLayoutError(
        f"ilsvrc_2012: expected {root}/ILSVRC2012_img_train/ (or train/) with one n????????/ folder of "
        "JPEGs per synset and wordnet.is_a.txt (https://www.image-net.org/archive/wordnet.is_a.txt); "
        "bring your own copy of ILSVRC2012_img_train.tar")


def _ilsvrc_graph(root) -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    """The synset folders (classes) and the parents / children of every synset in ``wordnet.is_a.txt``."""
    base, is_a = _ilsvrc_base(root)
    up, down = defaultdict(set), defaultdict(set)
    for line in is_a.read_text().splitlines():
        if line.strip():
            p, c = line.split()
            up[c].add(p)
            down[p].add(c)
    return {p.name for p in base.iterdir() if p.is_dir() and p.name.startswith("n")}, up, down


def _collapse(children: dict[str, set[str]], parents: dict[str, set[str]], leaves: set[str]) -> None:
    """``imagenet_specification.collapse``: remove every internal node with one child, linking
    its parents to that child, until none is left (in place)."""
    changed = True
    while changed:
        changed = False
        for n in sorted(children):
            if n in leaves or len(children[n]) != 1:
                continue
            (child,) = children.pop(n)
            parents[child].discard(n)
            for p in parents.pop(n, set()):
                children[p].discard(n)
                children[p].add(child)
                parents[child].add(p)
            changed = True


def ilsvrc_edges(root, split: str | None = None) -> list[tuple[str, str]]:
    """The ``(parent, child)`` WordNet is-a edges of the ILSVRC-2012 sampling graph: every synset
    folder under ``root`` and all their ancestors, single-child nodes collapsed, as
    ``create_sampling_graph`` builds it; with ``split``, the sub-graph of that split's classes
    (under 'carnivore' for val, 'device' for test). Feed it to ``ClassDAG`` with the split's leaves.
    """
    leaves_all, up, _ = _ilsvrc_graph(root)
    leaves = leaves_all if split is None else set(ilsvrc_splits(root)[split])
    top = {None: None, "train": None, "val": ILSVRC_VAL_ROOT, "test": ILSVRC_TEST_ROOT}[split]
    nodes, stack = set(leaves), list(leaves)
    while stack:
        for p in up[stack.pop()]:
            if p not in nodes:
                nodes.add(p)
                stack.append(p)
    children, parents = defaultdict(set), defaultdict(set)
    for c in nodes:
        for p in up[c] & nodes:
            children[p].add(c)
            parents[c].add(p)
    if top is not None:  # keep only the root and its descendants
        keep, stack = {top}, [top]
        while stack:
            for c in children.get(stack.pop(), ()):
                if c not in keep:
                    keep.add(c)
                    stack.append(c)
        children = defaultdict(set, {p: cs & keep for p, cs in children.items() if p in keep})
        parents = defaultdict(set, {c: ps & keep for c, ps in parents.items() if c in keep})
    _collapse(children, parents, leaves)
    return sorted((p, c) for p, cs in children.items() for c in cs)


def ilsvrc_splits(root) -> dict[str, list[str]]:
    """Synsets of each split, sorted (``ImageNetConverter._get_synset_ids``): descendants of
    'carnivore' -> val, of 'device' -> test, the rest -> train (712/158/130 on the full release)."""
    leaves, _, down = _ilsvrc_graph(root)

    def under(top: str) -> set[str]:
        seen, stack = {top}, [top]
        while stack:
            for c in down[stack.pop()]:
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return seen & leaves

    val, test = under(ILSVRC_VAL_ROOT), under(ILSVRC_TEST_ROOT)
    return {"train": sorted(leaves - val - test), "val": sorted(val - test), "test": sorted(test)}


def read_ilsvrc(root, split: str = "train", image_size: int = 84, *,
                skip_files: Collection[str] = (), cache=None, skip_corrupt: bool = True) -> ClassDataset:
    """ILSVRC-2012 train images (``ILSVRC2012_img_train/<synset>/*.JPEG`` + ``wordnet.is_a.txt``),
    classes named by WordNet id, split by :func:`ilsvrc_splits`; unreadable files are skipped as
    ``ImageNetConverter`` does (``skip_on_error=True``).

    Args:
        skip_files: File names to leave out. Meta-Dataset leaves out the images duplicated in
            Caltech-101/256 and CUB (its ``ImageNet_*_duplicates.txt`` lists); those lists are not
            bundled here, pass their names to do the same.
    """
    base, _ = _ilsvrc_base(root)
    splits = ilsvrc_splits(root)
    skip = frozenset(skip_files)
    files = {c: image_files(base / c, skip) for c in check_split(split, "ilsvrc_2012", splits)}
    return _from_files("ilsvrc_2012", split, splits, files, image_size, skip_corrupt, cache)
