"""Meta-Dataset source readers on tiny synthetic trees in each release layout (no real data, no
network): classes, counts, the seeded split against the published split files, layout errors,
download checksum and safe extraction."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.data import download as dl
from metalearn.data.download import ChecksumError, md5_file
from metalearn.data.md_sources import (
    ARCHIVES,
    MetaDatasetLayoutError,
    coco_crop_box,
    download_source,
    extract_archive,
    ilsvrc_edges,
    ilsvrc_splits,
    md_class_split,
    md_split_indices,
    quickdraw_counts,
    read_aircraft,
    read_cu_birds,
    read_dtd,
    read_fungi,
    read_ilsvrc,
    read_mscoco,
    read_quickdraw,
    read_traffic_sign,
    read_vgg_flower,
)
from metalearn.data.md_sources.common import Archive, download_archives, locate
from metalearn.data.registry import DATASETS

# Published split files of google-research/meta-dataset (dataset_conversion/splits/*.json).
DTD_SPLIT = {
    "train": ["chequered", "braided", "interlaced", "matted", "honeycombed", "marbled", "veined", "frilly",
              "zigzagged", "cobwebbed", "pitted", "waffled", "fibrous", "flecked", "grooved", "potholed",
              "blotchy", "stained", "crystalline", "dotted", "striped", "swirly", "meshed", "bubbly",
              "studded", "pleated", "lacelike", "polka-dotted", "perforated", "freckled", "smeared",
              "cracked", "wrinkled"],
    "val": ["gauzy", "grid", "lined", "paisley", "porous", "scaly", "spiralled"],
    "test": ["banded", "bumpy", "crosshatched", "knitted", "sprinkled", "stratified", "woven"],
}
AIRCRAFT_SPLIT = {
    "train": ["A340-300", "A318", "Falcon 2000", "F-16A/B", "F/A-18", "C-130", "MD-80", "BAE 146-200",
              "777-200", "747-400", "Cessna 172", "An-12", "A330-300", "A321", "Fokker 100", "Fokker 50",
              "DHC-1", "Fokker 70", "A340-200", "DC-6", "747-200", "Il-76", "747-300", "Model B200",
              "Saab 340", "Cessna 560", "Dornier 328", "E-195", "ERJ 135", "747-100", "737-600", "C-47",
              "DR-400", "ATR-72", "A330-200", "727-200", "737-700", "PA-28", "ERJ 145", "737-300",
              "767-300", "737-500", "737-200", "DHC-6", "Falcon 900", "DC-3", "Eurofighter Typhoon",
              "Challenger 600", "Hawk T1", "A380", "777-300", "E-190", "DHC-8-100", "Cessna 525",
              "Metroliner", "EMB-120", "Tu-134", "Embraer Legacy 600", "Gulfstream IV", "Tu-154", "MD-87",
              "A300B4", "A340-600", "A340-500", "MD-11", "707-320", "Cessna 208", "Global Express", "A319",
              "DH-82"],
    "val": ["737-900", "757-300", "767-200", "A310", "A320", "BAE 146-300", "CRJ-900", "DC-10", "DC-8",
            "DC-9-30", "DHC-8-300", "Gulfstream V", "SR-20", "Tornado", "Yak-42"],
    "test": ["737-400", "737-800", "757-200", "767-400", "ATR-42", "BAE-125", "Beechcraft 1900",
             "Boeing 717", "CRJ-200", "CRJ-700", "E-170", "L-1011", "MD-90", "Saab 2000", "Spitfire"],
}
COCO_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]
COCO_VAL_FIRST = ["person", "motorcycle", "train", "traffic light", "fire hydrant", "parking meter"]
COCO_TEST_LAST = ["sink", "refrigerator", "vase", "scissors"]


def _img(path: Path, level: int, size=(8, 8), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(level)
    arr = np.clip(level + rng.integers(-5, 6, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))


# ---- the split -------------------------------------------------------------------------------

@pytest.mark.parametrize("published", [DTD_SPLIT, AIRCRAFT_SPLIT])
def test_split_reproduces_published_lists(published):
    names = sorted(published["train"] + published["val"] + published["test"])
    counts = tuple(len(published[k]) for k in ("train", "val", "test"))
    assert md_class_split(names, counts) == published


def test_split_reproduces_published_ids():
    # vgg_flower_splits.json (1-based ids), cu_birds_splits.json, fungi_splits.json (first ids)
    tr, va, te = md_split_indices(71, 15, 16)
    assert (va + 1).tolist() == [10, 16, 17, 23, 26, 47, 53, 56, 57, 62, 82, 83, 86, 97, 102]
    assert (te + 1).tolist() == [5, 9, 15, 19, 35, 40, 41, 42, 45, 46, 65, 85, 89, 94, 96, 98]
    assert (tr + 1).tolist()[:5] == [90, 38, 80, 30, 29]
    tr, va, _ = md_split_indices(140, 30, 30)
    assert (tr + 1).tolist()[:4] == [190, 144, 14, 12] and (va + 1).tolist()[:3] == [44, 51, 52]
    assert md_split_indices(994, 200, 200)[0][:5].tolist() == [226, 283, 256, 334, 919]
    coco = md_class_split(COCO_NAMES, (0, 40, 40))
    assert coco["train"] == [] and coco["val"][:6] == COCO_VAL_FIRST and coco["test"][-4:] == COCO_TEST_LAST


def test_split_by_hand():
    # RandomState(22).choice(5, 4, replace=False) then choice(trainval, 3): computed by hand below
    rng = np.random.RandomState(22)
    trainval = rng.permutation(5)[:4]
    train = rng.permutation(trainval)[:3]
    tr, va, te = md_split_indices(3, 1, 1)
    assert tr.tolist() == train.tolist()
    assert va.tolist() == sorted(set(trainval) - set(train))
    assert te.tolist() == sorted(set(range(5)) - set(trainval))
    assert quickdraw_counts(345) == (241, 52, 52) and quickdraw_counts(20) == (14, 3, 3)
    with pytest.raises(MetaDatasetLayoutError, match="found 4 classes.*needs 5"):
        md_class_split(list("abcd"), (3, 1, 1))


# ---- one reader per source --------------------------------------------------------------------

def _aircraft(root: Path, variants: list[str], per: int = 2) -> None:
    data = root / "fgvc-aircraft-2013b" / "data"
    boxes, trainval, test = [], [], []
    for v, name in enumerate(variants):
        for j in range(per):
            iid = f"{v:03d}{j:04d}"
            _img(data / "images" / f"{iid}.jpg", 30 * v + 10, size=(12, 10), fmt="JPEG")
            boxes.append(f"{iid} 1 2 7 8")
            (trainval if j % 2 == 0 else test).append(f"{iid} {name}")
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    (data / "images_box.txt").write_text("\n".join(boxes) + "\n")
    (data / "images_variant_trainval.txt").write_text("\n".join(trainval) + "\n")
    (data / "images_variant_test.txt").write_text("\n".join(test) + "\n")


def test_aircraft(tmp_path):
    variants = ["A300B4", "Boeing 717", "DC-3", "F/A-18", "Tu-154"]
    _aircraft(tmp_path, variants)
    expect = md_class_split(sorted(variants), (3, 1, 1))
    sizes = {}
    for split in ("train", "val", "test"):
        ds = read_aircraft(tmp_path, split, image_size=8, counts=(3, 1, 1))
        assert ds.class_names == expect[split] and ds.item_shape == (3, 8, 8)
        assert ds.class_sizes().tolist() == [2] * len(expect[split])
        sizes[split] = ds.num_classes
    assert sizes == {"train": 3, "val": 1, "test": 1}
    with pytest.raises(MetaDatasetLayoutError, match="needs 100"):
        read_aircraft(tmp_path, "train")  # the default split needs all 100 variants


def test_aircraft_crops_the_box(tmp_path):
    _aircraft(tmp_path, ["a", "b", "c", "d", "e"], per=1)
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    arr = np.zeros((10, 12, 3), np.uint8)
    arr[2:8, 1:7] = 200  # exactly the box (1, 2, 7, 8): the crop is uniformly bright
    name = sorted(["a", "b", "c", "d", "e"])[int(md_split_indices(3, 1, 1)[0][0])]
    iid = f"{['a', 'b', 'c', 'd', 'e'].index(name):03d}0000"
    Image.fromarray(arr).save(data / "images" / f"{iid}.jpg", format="PNG")  # lossless content
    ds = read_aircraft(tmp_path, "train", image_size=6, counts=(3, 1, 1))
    first = ds.gather(torch.tensor([0]))[0]
    assert float(first.min()) > 0.7


def test_cu_birds(tmp_path):
    base = tmp_path / "CUB_200_2011"
    names = [f"{i + 1:03d}.Bird_{i}" for i in range(5)]
    base.mkdir()
    (base / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    for i, n in enumerate(names):
        for j in range(i + 2):
            _img(base / "images" / n / f"{n}_{j}.jpg", 40 * i, fmt="JPEG")
    expect = md_class_split(names, (3, 1, 1))
    ds = read_cu_birds(tmp_path, "train", image_size=8, counts=(3, 1, 1))
    assert ds.class_names == expect["train"]
    assert ds.class_sizes().tolist() == [names.index(c) + 2 for c in expect["train"]]


def test_dtd_skips_directory_file(tmp_path):
    names = ["banded", "bumpy", "waffled", "woven", "zigzagged"]
    for i, n in enumerate(names):
        for j in range(3):
            _img(tmp_path / "dtd" / "images" / n / f"{n}_{j:04d}.jpg", 40 * i, fmt="JPEG")
    (tmp_path / "dtd" / "images" / "waffled" / ".directory").write_text("[Dolphin]\n")
    for split in ("train", "val", "test"):
        ds = read_dtd(tmp_path, split, image_size=8, counts=(3, 1, 1))
        assert ds.class_names == md_class_split(names, (3, 1, 1))[split]
        assert ds.class_sizes().tolist() == [3] * ds.num_classes


def test_vgg_flower(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    base = tmp_path / "vgg_flower"
    labels = np.array([[1, 2, 3, 4, 1, 2, 3, 4, 4]])
    for i, lab in enumerate(labels[0]):
        _img(base / "jpg" / f"image_{i + 1:05d}.jpg", 50 * int(lab), fmt="JPEG")
    scipy_io.savemat(base / "imagelabels.mat", {"labels": labels})
    split = md_class_split(["001.pink primrose", "002.hard-leaved pocket orchid", "003.canterbury bells",
                            "004.sweet pea"], (2, 1, 1))
    ds = read_vgg_flower(tmp_path, "train", image_size=8, counts=(2, 1, 1))
    assert ds.class_names == split["train"]
    assert ds.class_sizes().tolist() == [3 if c.startswith("004") else 2 for c in split["train"]]


def test_traffic_sign_test_only(tmp_path):
    images = tmp_path / "GTSRB" / "Final_Training" / "Images"
    for c in range(3):
        for j in range(2):
            _img(images / f"{c:05d}" / f"00000_{j:05d}.ppm", 60 * c + 20, fmt="PPM")
        (images / f"{c:05d}" / f"GT-{c:05d}.csv").write_text("Filename;ClassId\n")
    ds = read_traffic_sign(tmp_path, "test", image_size=8, counts=(0, 0, 3))
    assert ds.class_names == ["00.Speed limit (20km/h)", "01.Speed limit (30km/h)", "02.Speed limit (50km/h)"]
    assert ds.class_sizes().tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="no train classes.*test-only"):
        read_traffic_sign(tmp_path, "train", counts=(0, 0, 3))


def test_quickdraw(tmp_path):
    base = tmp_path / "quickdraw"
    base.mkdir()
    names = [f"thing{i:02d}" for i in range(20)]
    for i, n in enumerate(names):
        rows = np.zeros((3 + i % 2, 784), np.uint8)
        rows[:, : 28 * (i + 1)] = 255
        np.save(base / f"{n}.npy", rows)
    split = md_class_split(names, quickdraw_counts(20))
    ds = read_quickdraw(tmp_path, "val", image_size=8)
    assert ds.class_names == split["val"] and ds.item_shape == (3, 8, 8)
    assert ds.class_sizes().tolist() == [3 + names.index(c) % 2 for c in split["val"]]
    capped = read_quickdraw(tmp_path, "train", image_size=8, max_per_class=2)
    assert capped.num_classes == 14 and set(capped.class_sizes().tolist()) == {2}


def test_fungi(tmp_path):
    base = tmp_path / "fungi"
    cats = [{"id": i, "name": f"Species {i % 3}"} for i in range(5)]  # repeated names, as in Fungi
    images, anns = [], []
    for k in range(12):
        c = k % 5
        fname = f"images/{c}/img{k}.JPG"
        _img(base / fname, 40 * c, fmt="JPEG")
        images.append({"id": k, "file_name": fname})
        anns.append({"image_id": k, "category_id": c})
    (base / "train.json").write_text(json.dumps({"categories": cats, "images": images[:8],
                                                 "annotations": anns[:8]}))
    (base / "val.json").write_text(json.dumps({"categories": cats, "images": images[8:],
                                               "annotations": anns[8:]}))
    names = [f"{c['id']:04d}.{c['name']}" for c in cats]
    ds = read_fungi(tmp_path, "train", image_size=8, counts=(3, 1, 1))
    assert ds.class_names == md_class_split(names, (3, 1, 1))["train"]
    assert ds.class_sizes().tolist() == [sum(1 for k in range(12) if k % 5 == int(c[:4]))
                                         for c in ds.class_names]


def test_coco_crop_box_by_hand():
    # x = 10 - 0.5*10*0.2 = 9, w = 12: xmin = round(8.5) = 8 (banker's), xmax = round(20.5) + 1 = 21
    assert coco_crop_box([10, 10, 10, 10], 100, 100) == (8, 8, 21, 21)
    assert coco_crop_box([0, 0, 50, 50], 40, 40) == (0, 0, 40, 40)  # clipped to the image
    with pytest.raises(ValueError):
        coco_crop_box([50, 50, 0, 0], 40, 40)


def test_mscoco_val_test_only(tmp_path):
    base = tmp_path / "mscoco"
    cats = [{"id": 10 + i, "name": n} for i, n in enumerate(["a", "b", "c", "d"])]
    anns = []
    for img_id in range(1, 5):
        _img(base / "train2017" / f"{img_id:012d}.jpg", 50 * img_id, size=(20, 16), fmt="JPEG")
        for c in cats:
            anns.append({"image_id": img_id, "category_id": c["id"], "bbox": [2.0, 3.0, 6.0, 5.0]})
    split = md_class_split(["a", "b", "c", "d"], (0, 2, 2))
    val_id = 10 + "abcd".index(split["val"][0])
    anns.append({"image_id": 1, "category_id": val_id, "bbox": [30.0, 30.0, 0.0, 0.0]})  # empty crop: skipped
    (base / "annotations").mkdir()
    (base / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"categories": cats, "annotations": anns, "images": []}))
    with pytest.warns(UserWarning, match="skipped"):
        ds = read_mscoco(tmp_path, "val", image_size=8, counts=(0, 2, 2))
    assert ds.class_names == split["val"] and ds.class_sizes().tolist() == [4, 4]
    with pytest.raises(ValueError, match="no train classes.*val/test-only"):
        read_mscoco(tmp_path, "train", counts=(0, 2, 2))


def _ilsvrc(root: Path) -> None:
    base = root / "ILSVRC2012_img_train"
    # entity -> animal -> carnivore -> {dog1, dog2, cat}; entity -> artifact -> device -> {drill, saw}
    # animal -> fish -> {trout}; artifact -> chain -> box (one child: collapsed) -> {crate}
    edges = [("n0", "n1"), ("n1", "n02075296"), ("n02075296", "n10"), ("n02075296", "n11"),
             ("n02075296", "n12"), ("n0", "n2"), ("n2", "n03183080"), ("n03183080", "n20"),
             ("n03183080", "n21"), ("n1", "n3"), ("n3", "n30"), ("n2", "n4"), ("n4", "n5"),
             ("n5", "n40"), ("n5", "n41"), ("n9", "n99")]
    base.mkdir(parents=True)
    (base / "wordnet.is_a.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    for k, s in enumerate(["n10", "n11", "n12", "n20", "n21", "n30", "n40", "n41"]):
        for j in range(2):
            _img(base / s / f"{s}_{j}.JPEG", 25 * k + 10, fmt="JPEG")
        (base / s / "skipme.JPEG").write_bytes(b"not an image")


def test_ilsvrc_split_and_edges(tmp_path):
    _ilsvrc(tmp_path)
    splits = ilsvrc_splits(tmp_path)
    assert splits == {"train": ["n30", "n40", "n41"], "val": ["n10", "n11", "n12"], "test": ["n20", "n21"]}
    edges = set(ilsvrc_edges(tmp_path))
    assert ("n02075296", "n10") in edges and ("n9", "n99") not in edges  # only ancestors of classes
    # n3 (fish) has one child and n4 (chain) too: both collapsed into their parents
    assert ("n1", "n30") in edges and ("n2", "n5") in edges and not any("n3" in e or "n4" in e for e in edges)
    assert set(ilsvrc_edges(tmp_path, "val")) == {("n02075296", "n10"), ("n02075296", "n11"),
                                                  ("n02075296", "n12")}
    with pytest.warns(UserWarning, match="unreadable"):
        ds = read_ilsvrc(tmp_path, "val", image_size=8)
    assert ds.class_names == ["n10", "n11", "n12"] and ds.class_sizes().tolist() == [2, 2, 2]
    ds = read_ilsvrc(tmp_path, "test", image_size=8, skip_files={"skipme.JPEG"})
    assert ds.class_sizes().tolist() == [2, 2]


# ---- layout errors, registry -------------------------------------------------------------------

@pytest.mark.parametrize("reader, expected", [
    (read_aircraft, "fgvc-aircraft-2013b/data/images_box.txt"), (read_cu_birds, "CUB_200_2011/classes.txt"),
    (read_dtd, "dtd/images"), (read_fungi, "fungi/train.json"), (read_vgg_flower, "vgg_flower/imagelabels.mat"),
    (read_traffic_sign, "GTSRB/Final_Training/Images"), (read_quickdraw, "quickdraw"),
    (read_mscoco, "instances_train2017.json"), (read_ilsvrc, "wordnet.is_a.txt"),
])
def test_wrong_layout_names_what_is_expected(tmp_path, reader, expected):
    (tmp_path / "something_else").mkdir()
    with pytest.raises(MetaDatasetLayoutError, match=expected.replace("/", ".")):
        reader(tmp_path, "test")
    assert issubclass(MetaDatasetLayoutError, FileNotFoundError)


def test_registry_entries(tmp_path):
    names = {"md-aircraft", "md-cu-birds", "md-dtd", "md-quickdraw", "md-fungi", "md-vgg-flower",
             "md-traffic-sign", "md-mscoco", "md-ilsvrc"}
    assert names <= set(DATASETS) and all(DATASETS[n].images and DATASETS[n].channels == 3 for n in names)
    _ilsvrc(tmp_path)
    cfg = SimpleNamespace(root=str(tmp_path), image_size=8)
    with pytest.warns(UserWarning, match="unreadable"):
        ds = DATASETS["md-ilsvrc"].build(cfg, "train")
    assert ds.class_names == ["n30", "n40", "n41"]
    _traffic(tmp_path)
    with pytest.raises(ValueError, match="test-only"):
        DATASETS["md-traffic-sign"].build(cfg, "train")
    with pytest.raises(ValueError, match="needs data.root"):
        DATASETS["md-dtd"].build(SimpleNamespace(root=None, image_size=8), "train")


def _traffic(root: Path) -> Path:
    _img(root / "GTSRB" / "Final_Training" / "Images" / "00000" / "a.ppm", 30, fmt="PPM")
    return root


# ---- archives: extraction, checksums, download ------------------------------------------------

def _dtd_tar(path: Path, names=("banded", "bumpy", "woven", "zigzagged", "waffled")) -> None:
    with tarfile.open(path, "w:gz") as t:
        for i, n in enumerate(names):
            buf = io.BytesIO()
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(buf, format="PNG")
            info = tarfile.TarInfo(f"dtd/images/{n}/{n}_0001.jpg")
            info.size = len(buf.getvalue())
            t.addfile(info, io.BytesIO(buf.getvalue()))


def test_root_with_archive_is_extracted(tmp_path, monkeypatch):
    _dtd_tar(tmp_path / "dtd-r1.0.1.tar.gz")
    monkeypatch.setitem(ARCHIVES, "dtd", (Archive("dtd-r1.0.1.tar.gz", "file://x",
                                                  md5_file(tmp_path / "dtd-r1.0.1.tar.gz")),))
    ds = read_dtd(tmp_path, "train", image_size=8, counts=(3, 1, 1))
    assert ds.num_classes == 3 and (tmp_path / "dtd" / "images" / "banded").is_dir()


def test_archive_with_bad_checksum_is_refused(tmp_path):
    _dtd_tar(tmp_path / "dtd-r1.0.1.tar.gz")  # not the official archive: its MD5 differs
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        read_dtd(tmp_path, "train", counts=(3, 1, 1))


def test_unsafe_archives_are_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(tarfile.FilterError):
        extract_archive(evil, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as z:
        z.writestr("../../x.txt", "hi")
    with pytest.raises(dl.UnsafeArchiveError):
        extract_archive(evil_zip, tmp_path / "out")


def test_download_source_checks_and_extracts(tmp_path, monkeypatch):
    src = tmp_path / "remote" / "dtd-r1.0.1.tar.gz"
    src.parent.mkdir()
    _dtd_tar(src)
    root = tmp_path / "data"
    monkeypatch.setitem(ARCHIVES, "dtd", (Archive("dtd-r1.0.1.tar.gz", src.as_uri(), md5_file(src)),))
    assert download_source("dtd", root, quiet=True) == root / "dtd"
    assert sorted(p.name for p in (root / "dtd" / "images").iterdir())[:2] == ["banded", "bumpy"]
    monkeypatch.setitem(ARCHIVES, "dtd", (Archive("dtd-r1.0.1.tar.gz", src.as_uri(), "0" * 32),))
    with pytest.raises(ChecksumError):  # the kept file is re-checked
        download_source("dtd", root, quiet=True)
    with pytest.raises(ValueError, match="allow_unverified"):
        download_archives(tmp_path / "d2", [Archive("x.tgz", src.as_uri(), None)])
    assert download_archives(tmp_path / "d2", [Archive("x.tgz", src.as_uri(), None)],
                             allow_unverified=True, quiet=True)[0].is_file()
    with pytest.raises(ValueError, match="bring your own copy"):
        download_source("ilsvrc_2012", root)


def test_locate_names_archives_when_missing(tmp_path):
    with pytest.raises(MetaDatasetLayoutError, match=r"fungi_train_val\.tgz.*labs\.gbif\.org"):
        locate("fungi", tmp_path, "fungi", "train.json", ARCHIVES["fungi"], "fungi")
