"""Augmentation of meta-training image episodes from the config (issue 17, point 15)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metalearn.data import Augment, ClassDataset, EpisodeSampler, FixedEpisodes
from metalearn.errors import ConfigError
from metalearn.train import load_run, train
from metalearn.train.config import (
    AlgorithmConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
)
from metalearn.train.data import fixed_episodes, train_sampler


def images(n_classes: int = 8, per_class: int = 4, side: int = 10) -> ClassDataset:
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(n_classes * per_class, 1, side, side, generator=g) * 255).to(torch.uint8)
    return ClassDataset(data, np.repeat(np.arange(n_classes), per_class), [f"c{i}" for i in range(n_classes)])


def test_each_operation_does_what_it_says():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    x = torch.rand(64, 1, 6, 6)
    flipped = Augment(["flip"]).images(x, g())
    same = (flipped == x).flatten(1).all(1)
    assert torch.equal(flipped[~same], x[~same].flip(-1)) and 10 < int((~same).sum()) < 54
    shifted = Augment(["crop"], padding=2).images(x, g())
    assert shifted.shape == x.shape and not torch.equal(shifted, x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = [[(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(shifted[i], padded[i, :, dy:dy + 6, dx:dx + 6])] for i in range(64)]
    assert all(len(o) == 1 for o in offsets) and len({o[0] for o in offsets}) > 10  # own shifts
    assert torch.allclose(Augment(["rotate"], degrees=0).images(x, g()), x, atol=1e-5)
    assert torch.equal(Augment(["crop"], padding=0).images(x, g()), x)
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augment(["blur"])
    with pytest.raises(ValueError, match="float images"):
        Augment(["flip"]).images(torch.zeros(2, 3, dtype=torch.long), g())


def test_augmented_sampling_is_seeded_and_resumes_exactly():
    aug = Augment(["crop", "flip", "rotate"], padding=2, degrees=15)
    a = EpisodeSampler(images(), 3, 1, 2, seed=4, augment=aug)
    b = EpisodeSampler(images(), 3, 1, 2, seed=4, augment=aug)
    plain = EpisodeSampler(images(), 3, 1, 2, seed=4)
    first = a.sample_batch(5)
    assert torch.equal(first.query_x, b.sample_batch(5).query_x)
    ref = plain.sample_batch(5)
    assert torch.equal(first.class_ids, ref.class_ids)  # indices drawn first, as without augmentation
    assert not torch.equal(first.support_x, ref.support_x)
    state = a.state_dict()  # the generator state covers the augmentation draws
    nxt = a.sample_batch(5)
    a.load_state_dict(state)
    again = a.sample_batch(5)
    assert torch.equal(nxt.support_x, again.support_x) and torch.equal(nxt.query_x, again.query_x)


def test_fixed_episodes_are_never_augmented_and_the_config_checks_itself():
    with pytest.raises(ConfigError, match="regression"):
        apply_overrides(RunConfig(), ["data.augment=[\"flip\"]"])  # sinusoid
    with pytest.raises(ConfigError, match="crop, flip or rotate"):
        apply_overrides(RunConfig(), ["data.dataset=omniglot", "data.augment=[\"fiip\"]"])
    parsed = apply_overrides(RunConfig(), ["data.dataset=omniglot", 'data.augment=["crop", "flip"]'])
    assert parsed.data.augment == ["crop", "flip"]
    ds = images()
    plain = FixedEpisodes(ds, 3, 1, 2, n_episodes=4, seed=1)
    assert "augment" not in FixedEpisodes.__init__.__code__.co_varnames  # no way to ask for it
    assert plain.fingerprint == FixedEpisodes(ds, 3, 1, 2, n_episodes=4, seed=1).fingerprint


def _image_run(augment: list[str], steps: int = 6) -> RunConfig:
    """ProtoNet on a registered in-memory image dataset, with or without augmentation."""
    return RunConfig(
        name="aug",
        data=DataConfig(dataset="aug-images", train_split="train", val_split="val", test_split="val",
                        n_way=3, k_shot=1, n_query=2, val_episodes=3, test_episodes=3,
                        augment=augment, augment_padding=2),
        model=ModelConfig("mlp", {"in_features": 100, "hidden": [8], "out_features": 3}),
        algorithm=AlgorithmConfig("protonet", {}),
        train=TrainConfig(steps=steps, meta_batch=2, val_every=3, checkpoint_every=3, log_every=1,
                          tensorboard=False, device="cpu"),
    )


@pytest.fixture
def aug_images():
    from metalearn.data.registry import DATASETS, register_dataset

    data = images()
    register_dataset("aug-images", lambda cfg, split: data.subset_classes(
        list(range(5)) if split == "train" else [5, 6, 7]))
    yield
    del DATASETS["aug-images"]


def test_the_train_sampler_augments_and_validation_episodes_stay_the_same(aug_images):
    on, off = _image_run(["crop", "flip"]).data, _image_run([]).data
    a, b = train_sampler(on, seed=0).sample_batch(2), train_sampler(off, seed=0).sample_batch(2)
    assert torch.equal(a.class_ids, b.class_ids) and not torch.equal(a.support_x, b.support_x)
    va, vb = fixed_episodes(on, "val"), fixed_episodes(off, "val")
    assert va.fingerprint == vb.fingerprint
    assert torch.equal(va.batch(0, 3).query_x, vb.batch(0, 3).query_x)


def test_an_augmented_run_resumes_bit_for_bit(aug_images, tmp_path):
    cfg = _image_run(["crop", "flip", "rotate"])
    train(cfg, tmp_path / "a", quiet=True)
    train(cfg, tmp_path / "b", quiet=True, stop_after=3)
    train(cfg, tmp_path / "b", resume=True, quiet=True)
    a, _, _ = load_run(tmp_path / "a", "last")
    b, _, _ = load_run(tmp_path / "b", "last")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c, _, _ = load_run(train(_image_run([]), tmp_path / "c", quiet=True).run_dir, "last")
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
