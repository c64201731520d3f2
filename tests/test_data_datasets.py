import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.data import (
    ArrayDataset,
    ChecksumError,
    CorruptImageError,
    ImageFolder,
    MiniImageNet,
    Omniglot,
    UnsafeArchiveError,
    cache_dir,
    data_root,
)
from metalearn.data.cache import ArrayCache
from metalearn.data.download import md5_file, safe_members, verify_md5
from metalearn.data.folders import ravi_split


def test_array_dataset_maps_labels_and_refuses_bad_values():
    ds = ArrayDataset(np.arange(12, dtype=np.float32).reshape(6, 2), [10, 10, 3, 3, 7, 7])
    assert ds.class_names == ["3", "7", "10"] and ds.labels.tolist() == [2, 2, 0, 0, 1, 1]
    assert torch.equal(ds.gather(torch.tensor([2])), torch.tensor([[4.0, 5.0]]))
    x = np.ones((4, 3), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite values .* in 1 rows, first row 2"):
        ArrayDataset(x, [0, 0, 1, 1])
    x[2, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        ArrayDataset(x, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="3 labels"):
        ArrayDataset(np.ones((4, 3)), [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        ArrayDataset(np.ones((0, 3)), [])


def test_subset_and_rotations():
    img = torch.arange(9, dtype=torch.uint8).reshape(1, 1, 3, 3).repeat(4, 1, 1, 1)
    ds = ArrayDataset(img, [0, 0, 1, 1])
    rot = ds.with_rotations()
    assert rot.num_classes == 8 and rot.class_names[:2] == ["0/rot000", "0/rot090"]
    assert rot.class_sizes().tolist() == [2] * 8
    x = rot.gather(torch.tensor([0, 4]))  # image 0 at 0 and 90 degrees
    assert torch.equal(x[1, 0], torch.rot90(x[0, 0], 1))
    sub = rot.subset_classes(["1/rot180", "0/rot090"])
    assert sub.class_names == ["1/rot180", "0/rot090"] and sub.labels.tolist() == [1, 1, 0, 0]
    assert torch.equal(sub.gather(torch.tensor([2]))[0, 0], torch.rot90(x[0, 0], 2))  # label 0 = 1/rot180
    with pytest.raises(KeyError, match="not found"):
        rot.subset_classes(["nope"])
    with pytest.raises(ValueError, match="multiples of 90"):
        ds.with_rotations([45])


def test_image_folder_decodes_converts_and_caches(image_folder, tmp_path):
    root = image_folder({"cat": 3, "dog": 4}, size=12)
    Image.new("RGB", (30, 20), (10, 200, 30)).save(root / "dog" / "rgb.jpg")  # other mode and size
    (root / "cat" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="ignored 1 files"):
        ds = ImageFolder(root, image_size=8, channels=1, cache=tmp_path / "c")
    assert ds.class_names == ["cat", "dog"] and ds.class_sizes().tolist() == [3, 5]
    assert ds.item_shape == (1, 8, 8) and ds.ignored == 1
    expected = np.asarray(Image.open(root / "cat" / "000.png").convert("L").resize((8, 8), Image.LANCZOS))
    assert torch.allclose(ds.gather(torch.tensor([0]))[0, 0], torch.from_numpy(expected) / 255.0)
    files = sorted((tmp_path / "c").glob("*.npy"))
    assert len(files) == 1
    with pytest.warns(UserWarning, match="ignored"):
        again = ImageFolder(root, image_size=8, channels=1, cache=tmp_path / "c")
    assert isinstance(again._data, torch.Tensor) and torch.equal(again.gather(torch.arange(8)), ds.gather(torch.arange(8)))
    reference = ds.gather(torch.arange(8)).clone()  # ds is memory-mapped on the file we damage next
    del ds, again
    with open(files[0], "r+b") as f:  # truncate the cache: it must be rebuilt, not trusted
        f.truncate(100)
    with pytest.warns(UserWarning, match="truncated"):
        rebuilt = ImageFolder(root, image_size=8, channels=1, cache=tmp_path / "c")
    assert torch.equal(rebuilt.gather(torch.arange(8)), reference)


def test_image_folder_bad_inputs(image_folder, tmp_path):
    root = image_folder({"a": 2, "b": 2})
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="empty holds no images"):
        ImageFolder(root, cache=tmp_path)
    (root / "empty").rmdir()
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(CorruptImageError, match=r"broken\.png.*skip_corrupt=True"):
        ImageFolder(root, cache=tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = ImageFolder(root, cache=tmp_path, skip_corrupt=True, channels=3, image_size=6)
    assert len(ds.skipped) == 1 and ds.class_sizes().tolist() == [2, 2] and ds.item_shape == (3, 6, 6)
    (root / "b" / "broken.png").unlink()
    (root / "b" / "zero.png").write_bytes(b"")
    with pytest.raises(CorruptImageError, match="zero.png"):
        ImageFolder(root, cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere", cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        ImageFolder(root / "a", cache=tmp_path)


def test_mini_imagenet_from_rows_and_missing_images(tmp_path):
    rows = ravi_split("val")
    assert len(rows) == 9600 and len({c for _, c in rows}) == 16
    assert {len({c for _, c in ravi_split(s)}) for s in ("train", "test")} == {64, 20}
    folder = tmp_path / "mini" / "images"
    folder.mkdir(parents=True)
    mine = [(f"img{i}.jpg", f"n0{i % 2}") for i in range(6)]
    for name, _ in mine:
        Image.new("RGB", (100, 90), (50, 100, 150)).save(folder / name)
    ds = MiniImageNet(tmp_path / "mini", rows=mine, image_size=10, cache=tmp_path / "c")
    assert ds.item_shape == (3, 10, 10) and ds.class_sizes().tolist() == [3, 3]
    with pytest.raises(FileNotFoundError, match="9600 of 9600 mini-ImageNet val images are missing"):
        MiniImageNet(tmp_path / "mini", split="val", cache=tmp_path / "c")


def make_zip(path, members, symlink=None):
    with zipfile.ZipFile(path, "w") as z:
        for name in members:
            z.writestr(name, b"x")
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            z.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("member", ["/abs/evil.png", "images_background/../../evil.png", "C:/evil.png"])
def test_archive_members_escaping_the_folder_are_refused(tmp_path, member):
    path = make_zip(tmp_path / "a.zip", ["images_background/A/character01/1.png", member])
    with zipfile.ZipFile(path) as z, pytest.raises(UnsafeArchiveError, match="outside the target folder"):
        safe_members(z)


def test_symlink_member_refused_and_omniglot_rejects_hostile_archive(tmp_path):
    (tmp_path / "omniglot").mkdir()
    make_zip(tmp_path / "omniglot" / "images_background.zip", ["images_background/A/character01/1.png"],
             symlink="images_background/A/character01/link.png")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        Omniglot("background", root=tmp_path, download=False, cache=tmp_path / "c")


def test_omniglot_incomplete_archive_fails_structural_check(tmp_path):
    (tmp_path / "omniglot").mkdir()
    make_zip(tmp_path / "omniglot" / "images_background.zip", ["images_background/A/character01/1.png"])
    with pytest.raises(ValueError, match=r"found 1 alphabets, 1 characters, 1 images"):
        Omniglot("background", root=tmp_path, download=False, cache=tmp_path / "c")


def test_omniglot_missing_data_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        Omniglot("background", root=tmp_path, download=False, cache=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Omniglot("background", root=tmp_path / "missing", download=False)
    with pytest.raises(ValueError, match="unknown Omniglot split"):
        Omniglot("training", root=tmp_path)
    with pytest.raises(ValueError, match="already contains the 4 rotations"):
        Omniglot("vinyals-train", root=tmp_path, rotations=True)


def test_checksum_mismatch_removes_the_file_and_shows_digests(tmp_path):
    f = tmp_path / "download.zip.part"
    f.write_bytes(b"not the archive")
    actual = md5_file(f)
    with pytest.raises(ChecksumError, match=f"expected md5 {'0' * 32}, got {actual}"):
        verify_md5(f, "0" * 32)
    assert not f.exists()
    g = tmp_path / "ok"
    g.write_bytes(b"abc")
    verify_md5(g, "900150983cd24fb0d6963f7d28e17f72")  # md5("abc")
    assert g.exists()


def test_array_cache_rejects_stale_and_corrupt_entries(tmp_path):
    entry = ArrayCache(tmp_path, "t", "k" * 64)
    assert entry.load() is None
    entry.save(np.arange(10, dtype=np.uint8), {"note": 1})
    arr, meta = entry.load()
    assert arr.tolist() == list(range(10)) and meta["note"] == 1
    raw = bytearray(entry.array_path.read_bytes())
    raw[-1] ^= 0xFF  # same size, different content
    entry.array_path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="checksum"):
        assert entry.load() is None
    meta = json.loads(entry.meta_path.read_text())
    meta["version"] = -1
    entry.meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="stale"):
        assert entry.load() is None
    assert not list(tmp_path.glob("*.tmp"))


def test_data_root_and_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_root(tmp_path / "x", must_exist=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        data_root(tmp_path / "file")
    monkeypatch.delenv("METALEARN_CACHE", raising=False)
    assert cache_dir(root=tmp_path) == tmp_path / "cache"
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cc"))
    assert cache_dir() == tmp_path / "cc"
    monkeypatch.delenv("METALEARN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o555)  # a read-only dataset folder keeps its archives; the cache goes elsewhere
    try:
        assert cache_dir(root=shared) == tmp_path / "home" / ".cache" / "metalearn" / "cache"
    finally:
        shared.chmod(0o755)


def test_unwritable_cache_dir_names_the_fix(tmp_path, monkeypatch):
    # Simulated: the tests may run as root, which can write anywhere.
    monkeypatch.setattr("metalearn.data.cache.os.access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="not writable: set METALEARN_CACHE"):
        cache_dir(tmp_path / "sub")
