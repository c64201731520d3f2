"""Your own torch Dataset in the samplers, `train(cfg)` and `load_run`, by a registered name
(issue 17, point 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.data import EpisodeSampler, FixedEpisodes, TorchDataset
from metalearn.data.registry import DATASETS, register_dataset
from metalearn.train import load_run, train
from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig


class Glyphs(torch.utils.data.Dataset):
    """``n_classes`` classes of ``per_class`` 1x8x8 images; class c lights row c. Counts reads."""

    def __init__(self, n_classes: int = 6, per_class: int = 5, with_targets: bool = True,
                 pil: bool = False):
        self.n_classes, self.per_class, self.pil = n_classes, per_class, pil
        if with_targets:
            self.targets = [i // per_class for i in range(n_classes * per_class)]
        self.reads = 0

    def __len__(self):
        return self.n_classes * self.per_class

    def __getitem__(self, i):
        self.reads += 1
        c = i // self.per_class
        x = np.zeros((8, 8), np.uint8)
        x[c % 8] = 255
        x[7, i % self.per_class] = 128  # each image its own
        if self.pil:
            return Image.fromarray(x), c
        return torch.from_numpy(x).float().div(255)[None], torch.tensor(c)


def test_labels_come_from_targets_without_decoding_and_items_on_demand():
    ds = Glyphs()
    wrapped = TorchDataset(ds)
    assert ds.reads == 1  # item 0, for the item shape; labels from `targets`
    assert wrapped.num_classes == 6 and wrapped.class_sizes().tolist() == [5] * 6
    assert wrapped.item_shape == (1, 8, 8)
    x = wrapped.gather(torch.tensor([[7, 12]]))
    assert x.shape == (1, 2, 1, 8, 8) and torch.equal(x[0, 0], ds[7][0])
    reads = ds.reads
    wrapped.gather(torch.tensor([7, 12, 7]))  # cached: no new decoding
    assert ds.reads == reads
    uncached = TorchDataset(Glyphs(), cache_bytes=0)
    uncached.gather(torch.tensor([3, 3]))
    assert uncached.dataset.reads == 3


def test_labels_are_read_by_one_pass_when_there_is_no_targets_attribute():
    ds = Glyphs(with_targets=False)
    wrapped = TorchDataset(ds)
    assert ds.reads == len(ds)  # one pass, each item read once and cached on the way
    assert wrapped.labels.tolist() == [i // 5 for i in range(30)]
    wrapped.gather(torch.arange(30))
    assert ds.reads == len(ds)


def test_pil_items_become_float_images_and_class_views_stay_lazy():
    wrapped = TorchDataset(Glyphs(pil=True), class_names=[f"g{c}" for c in range(6)])
    assert wrapped.class_names[:2] == ["g0", "g1"]
    x = wrapped.gather(torch.tensor([5]))
    assert x.dtype == torch.float32 and x.shape == (1, 1, 8, 8) and x[0, 0, 1].eq(1).all()
    view = wrapped.subset_classes(["g4", "g1"])
    assert isinstance(view, TorchDataset) and view.class_names == ["g4", "g1"]
    assert view.labels.tolist() == [1] * 5 + [0] * 5  # in dataset order: g1's items first
    assert torch.equal(view.gather(torch.tensor([5])), wrapped.gather(torch.tensor([20])))  # g4
    assert wrapped.with_rotations().num_classes == 24


def test_it_plugs_into_the_samplers():
    wrapped = TorchDataset(Glyphs())
    a = EpisodeSampler(wrapped, n_way=3, k_shot=1, n_query=2, seed=0).sample_batch(4)
    b = EpisodeSampler(TorchDataset(Glyphs()), n_way=3, k_shot=1, n_query=2, seed=0).sample_batch(4)
    assert torch.equal(a.support_x, b.support_x) and a.query_x.shape == (4, 6, 1, 8, 8)
    # row c of each image is lit: the class of each support image is visible in the pixels
    lit = a.support_x[..., 0, :, 0].argmax(-1)
    assert torch.equal(lit, a.class_ids)
    fixed = FixedEpisodes(wrapped, 3, 1, 2, n_episodes=5, seed=1)
    assert len(fixed) == 5 and fixed.fingerprint == FixedEpisodes(TorchDataset(Glyphs()), 3, 1, 2, 5, 1).fingerprint
    with pytest.raises(TypeError, match="TorchDataset"):
        EpisodeSampler(Glyphs(), n_way=3, k_shot=1, n_query=2)


def test_items_of_another_shape_are_named():
    class Ragged(Glyphs):
        def __getitem__(self, i):
            return (torch.zeros(1, 9, 9) if i == 4 else torch.zeros(1, 8, 8)), i // 5

    with pytest.raises(ValueError, match="item 4 has shape"):
        TorchDataset(Ragged()).gather(torch.arange(6))


def _build(cfg, split):
    """One dataset; the classes split 4 / 2 by the split's name (a user's own split)."""
    ds = TorchDataset(Glyphs(n_classes=6, per_class=5))
    return ds.subset_classes([0, 1, 2, 3] if split == "train" else [4, 5])


@pytest.fixture
def registered():
    register_dataset("glyphs", _build, description="test glyphs")
    yield "glyphs"
    del DATASETS["glyphs"]


def test_a_registered_dataset_trains_and_loads(registered, tmp_path):
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("glyphs", _build)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("omniglot", _build)
    cfg = RunConfig(
        name="glyphs",
        data=DataConfig(dataset=registered, train_split="train", val_split="val", test_split="val",
                        n_way=2, k_shot=1, n_query=2, val_episodes=3, test_episodes=3),
        model=ModelConfig("mlp", {"in_features": 64, "hidden": [8], "out_features": 2}),
        algorithm=AlgorithmConfig("protonet", {}),
        train=TrainConfig(steps=2, meta_batch=1, val_every=2, checkpoint_every=2, log_every=1,
                          tensorboard=False, device="cpu"),
    )
    cfg.model.feature_maps = None
    result = train(cfg, tmp_path / "run", quiet=True)
    assert result.steps == 2
    algo, loaded, step = load_run(tmp_path / "run")
    assert loaded.data.dataset == "glyphs" and step == 2
