"""The synthetic image tree: seeded and byte-identical, in the folder-tree layout, learnable but
not trivial (nearest centroid on raw pixels)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from metalearn.data.registry import DATASETS
from metalearn.data.synthetic_images import FAMILIES, write_synthetic_image_tree
from metalearn.train.config import DataConfig


def digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = write_synthetic_image_tree(tmp_path / "a", n_groups=3, classes_per_group=5, images_per_class=3, seed=4)
    b = write_synthetic_image_tree(tmp_path / "b", n_groups=3, classes_per_group=5, images_per_class=3, seed=4)
    c = write_synthetic_image_tree(tmp_path / "c", n_groups=3, classes_per_group=5, images_per_class=3, seed=5)
    assert digest(a) == digest(b)
    assert digest(a).keys() == digest(c).keys()
    assert all(digest(a)[k] != digest(c)[k] for k in digest(a))
    # a class's images do not depend on how many images or classes were written
    d = write_synthetic_image_tree(tmp_path / "d", n_groups=3, classes_per_group=6, images_per_class=5, seed=4)
    assert {k: v for k, v in digest(d).items() if k in digest(a)} == digest(a)


def test_layout_sizes_channels_and_families(tmp_path):
    root = write_synthetic_image_tree(tmp_path / "t", n_groups=5, classes_per_group=6, images_per_class=4, size=20,
                                      channels=3)
    groups = sorted(p.name for p in root.iterdir())
    assert groups == [f"g{g:02d}-{FAMILIES[g % 4]}" for g in range(5)]
    for g in groups:
        assert sorted(p.name for p in (root / g).iterdir()) == [f"c{c:02d}" for c in range(6)]
        assert sorted(p.name for p in (root / g / "c00").iterdir()) == [f"{i:03d}.png" for i in range(4)]
    img = Image.open(root / groups[0] / "c00" / "000.png")
    assert img.mode == "RGB" and img.size == (20, 20)
    grey = write_synthetic_image_tree(tmp_path / "g", n_groups=1, classes_per_group=1, images_per_class=1)
    assert Image.open(next(grey.rglob("*.png"))).mode == "L"
    pixels = np.asarray(Image.open(next(grey.rglob("*.png"))))
    assert pixels.std() > 10  # a pattern, not a flat image


@pytest.mark.parametrize("bad", [{"channels": 2}, {"n_groups": 0}, {"images_per_class": 1.5}, {"size": 2}])
def test_bad_arguments_name_the_argument(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        write_synthetic_image_tree(tmp_path, **bad)


def test_folder_tree_reads_it_and_splits_whole_groups(tmp_path):
    root = write_synthetic_image_tree(tmp_path / "t", n_groups=6, classes_per_group=5, images_per_class=3, size=12)
    cfg = DataConfig(dataset="folder-tree", root=str(root), train_split="md-train", val_split="md-val",
                     test_split="md-test", image_size=12, split_fractions=[0.5, 0.25, 0.25])
    splits = {s: DATASETS["folder-tree"].build(cfg, s) for s in ("md-train", "md-val", "md-test")}
    groups = {s: {n.split("/")[0] for n in d.class_names} for s, d in splits.items()}
    assert sum(len(g) for g in groups.values()) == 6
    assert not (groups["md-train"] & groups["md-val"]) and not (groups["md-train"] & groups["md-test"])
    train = splits["md-train"]
    assert train.num_classes == 5 * len(groups["md-train"])
    x = train.gather(np.arange(3))
    assert tuple(x.shape) == (3, 1, 12, 12)


def nearest_centroid_accuracy(root, episodes: int, seed: int = 0) -> float:
    """5-way 1-shot, 5 queries per class, the ways within one group (as Meta-Dataset draws them)."""
    data = {}
    for cls in sorted(root.glob("*/*")):
        data.setdefault(cls.parent.name, []).append(
            np.stack([np.asarray(Image.open(p), np.float64).ravel() / 255 for p in sorted(cls.glob("*.png"))]))
    rng, hits = np.random.default_rng(seed), []
    groups = sorted(data)
    for _ in range(episodes):
        classes = data[groups[rng.integers(len(groups))]]
        ways = rng.choice(len(classes), 5, replace=False)
        support, query = [], []
        for w in ways:
            order = rng.permutation(len(classes[w]))
            support.append(classes[w][order[0]])
            query.append(classes[w][order[1:6]])
        d = ((np.concatenate(query)[:, None] - np.stack(support)[None]) ** 2).sum(-1)
        hits.append(d.argmin(1) == np.repeat(np.arange(5), 5))
    return float(np.mean(hits))


def test_raw_pixel_nearest_centroid_is_above_chance_and_below_perfect(tmp_path):
    root = write_synthetic_image_tree(tmp_path / "t", n_groups=4, classes_per_group=8, images_per_class=8)
    acc = nearest_centroid_accuracy(root, episodes=200)
    # chance is 0.2; 200 episodes x 25 queries put the binomial standard error near 0.006
    assert 0.27 < acc < 0.9, acc
