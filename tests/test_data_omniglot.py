"""Tests on the real Omniglot archives under ../shared/data (marked `data`; skipped visibly without them)."""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.data import EpisodeSampler, FixedEpisodes, Omniglot
from metalearn.data.download import safe_members
from metalearn.data.omniglot import vinyals_classes

pytestmark = pytest.mark.data


def test_lake_split_counts(omniglot_root):
    bg = Omniglot("background", root=omniglot_root)
    ev = Omniglot("evaluation", root=omniglot_root)
    assert (bg.num_classes, len(bg)) == (964, 19280) and (ev.num_classes, len(ev)) == (659, 13180)
    assert set(bg.class_sizes()) == {20} and set(ev.class_sizes()) == {20}
    assert len({c.split("/")[0] for c in bg.class_names}) == 30
    assert len({c.split("/")[0] for c in ev.class_names}) == 20
    assert not set(bg.class_names) & set(ev.class_names)
    assert bg.item_shape == (1, 28, 28)


def test_vinyals_split_classes_all_found_and_disjoint(omniglot_root):
    sizes = {}
    chars = {}
    for part in ("train", "val", "test"):
        ds = Omniglot(f"vinyals-{part}", root=omniglot_root)
        assert ds.class_names == vinyals_classes(part)
        assert set(ds.class_sizes()) == {20}
        sizes[part] = ds.num_classes
        chars[part] = {c.rsplit("/", 1)[0] for c in ds.class_names}
    assert sizes == {"train": 4112, "val": 688, "test": 1692}
    assert {k: len(v) for k, v in chars.items()} == {"train": 1028, "val": 172, "test": 423}
    assert not chars["train"] & chars["val"] and not chars["train"] & chars["test"] and not chars["val"] & chars["test"]
    assert Omniglot("vinyals-trainval", root=omniglot_root).num_classes == 4800


def reference_image(zip_path, member, size=28):
    with zipfile.ZipFile(zip_path) as z:
        im = Image.open(io.BytesIO(z.read(member))).convert("L").resize((size, size), Image.LANCZOS)
    return 1.0 - torch.from_numpy(np.asarray(im, dtype=np.float32)) / 255.0


def test_decoded_image_matches_its_png_and_rotations(omniglot_root):
    zip_path = omniglot_root / "omniglot" / "images_background.zip"
    member = "images_background/Greek/character05/0398_07.png"
    expected = reference_image(zip_path, member)
    bg = Omniglot("background", root=omniglot_root)
    cls = bg.class_names.index("Greek/character05")
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(m.filename for m in safe_members(z) if m.filename.startswith("images_background/Greek/character05/"))
    idx = np.nonzero(bg.labels == cls)[0][names.index(member)]
    got = bg.gather(torch.tensor([idx]))[0, 0]
    assert torch.allclose(got, expected, atol=1 / 255 + 1e-6)
    assert got.mean() < 0.5 and got.max() == 1.0  # strokes are 1 on a 0 background
    train = Omniglot("vinyals-train", root=omniglot_root)
    rot = train.class_names.index("Greek/character05/rot090")
    first = train.gather(torch.from_numpy(np.nonzero(train.labels == rot)[0][:1]))[0, 0]
    base = bg.gather(torch.from_numpy(np.nonzero(bg.labels == cls)[0][:1]))[0, 0]
    assert torch.equal(first, torch.rot90(base, 1))


@pytest.mark.slow
def test_extracted_folder_equals_archive(omniglot_root, tmp_path):
    src = omniglot_root / "omniglot" / "images_background.zip"
    with zipfile.ZipFile(src) as z:
        z.extractall(tmp_path / "omniglot", members=safe_members(z))
    from_folder = Omniglot("background", root=tmp_path, download=False, cache=tmp_path / "cache")
    from_zip = Omniglot("background", root=omniglot_root)
    assert from_folder.class_names == from_zip.class_names
    assert np.array_equal(from_folder.labels, from_zip.labels)
    assert torch.equal(from_folder.gather(torch.arange(len(from_zip))), from_zip.gather(torch.arange(len(from_zip))))


def test_episodes_from_real_omniglot(omniglot_root):
    test = Omniglot("vinyals-test", root=omniglot_root)
    batch = EpisodeSampler(test, 20, 5, 15, seed=0).sample_batch(4)
    assert batch.support_x.shape == (4, 100, 1, 28, 28) and batch.query_x.shape == (4, 300, 1, 28, 28)
    fixed = FixedEpisodes(test, 5, 1, 15, n_episodes=600, seed=0)
    again = FixedEpisodes(Omniglot("vinyals-test", root=omniglot_root), 5, 1, 15, n_episodes=600, seed=0)
    assert fixed.fingerprint == again.fingerprint
