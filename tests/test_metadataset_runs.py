"""Meta-Dataset runs through the run machinery: config fields and their errors, train -> eval with
variable episodes on a two-level folder tree, several sources evaluated one by one, global class ids
for a pretraining head, and resume == uninterrupted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from metalearn.cli import main
from metalearn.train.checkpoint import load_checkpoint
from metalearn.train.config import ConfigError, DataConfig, RunConfig, source_configs, validate
from metalearn.train.data import SourcedEpisodes, fixed_episodes, train_classes, train_sampler
from metalearn.types import EpisodeList


def _tree(root, groups: int = 4, classes: int = 6, images: int = 8, seed: int = 0):
    """``root/g<i>/c<j>/<k>.png``: 8x8 grey images, a class a noisy copy of its own pattern."""
    rng = np.random.default_rng(seed)
    for g in range(groups):
        for c in range(classes):
            folder = root / f"g{g}" / f"c{c}"
            folder.mkdir(parents=True)
            proto = rng.integers(0, 256, (8, 8))
            for k in range(images):
                img = np.clip(proto + rng.normal(0, 30, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("md")
    return _tree(base / "a"), _tree(base / "b", groups=3, classes=7, seed=1)


TINY = ["--set", "train.steps=4", "--set", "train.val_every=2", "--set", "train.checkpoint_every=2",
        "--set", "data.val_episodes=3", "--set", "train.tensorboard=false", "--quiet"]


def _args(root, out, *extra):
    return ["train", "--preset", "protonet-omniglot-md", "--out", str(out), "--set", "data.dataset=folder-tree",
            "--set", f"data.root={root}", "--set", "data.image_size=8", "--set", "model.image_size=8",
            "--set", "data.train_split=train", "--set", "data.val_split=val", "--set", "data.test_split=test",
            "--set", "model.hidden=16", "--set", "model.n_blocks=2", *TINY, *extra]


def test_train_and_eval_on_meta_dataset_episodes(trees, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(trees[0], out)) == 0
    assert main(["eval", str(out), "--episodes", "5", "--quiet"]) == 0
    record = json.loads((out / "eval_test.json").read_text())
    assert record["episodes"]["protocol"] == "meta-dataset" and record["result"]["n"] == 5
    assert record["episodes"]["pool"]["kind"] != "flat"  # auto: one group folder per episode
    assert "Meta-Dataset" not in capsys.readouterr().err
    # --n-way makes no sense for variable-way episodes
    assert main(["eval", str(out), "--n-way", "5", "--quiet"]) == 2


def test_episodes_of_a_meta_dataset_run_vary_and_stay_in_one_group(trees):
    cfg = DataConfig(dataset="folder-tree", root=str(trees[0]), image_size=8, episodes="meta-dataset",
                     train_split="train", val_split="val", test_split="test", split_fractions=[0.5, 0.25, 0.25])
    batch = train_sampler(cfg, seed=0).sample_batch(6)
    assert isinstance(batch, EpisodeList) and len(batch) == 6
    source = train_sampler(cfg, seed=0).dataset
    for ep in batch:
        groups = {source.class_names[int(c)].split("/")[0] for c in ep.class_ids}
        assert len(groups) == 1 and 5 <= ep.n_way <= 6
        assert torch.equal(torch.unique(ep.query_y), torch.arange(ep.n_way))


def test_several_sources_train_together_and_are_evaluated_one_by_one(trees, tmp_path, capsys):
    out = tmp_path / "multi"
    source = json.dumps([{"dataset": "folder-tree", "root": str(trees[1]), "name": "second"}])
    assert main(_args(trees[0], out, "--set", f"data.sources={source}", "--set", "data.source_weights=[1, 3]")) == 0
    assert main(["eval", str(out), "--episodes", "4"]) == 0
    text = capsys.readouterr().out
    assert "[folder-tree]" in text and "[second]" in text and "[all sources]" in text
    record = json.loads((out / "eval_test.json").read_text())
    assert set(record["per_source"]) == {"folder-tree", "second"}
    assert record["result"]["n"] == 8 and record["episodes"]["protocol"] == "multi-source"
    assert all(r["n"] == 4 for r in record["per_source"].values())


def test_multi_source_episodes_carry_global_class_ids(trees):
    cfg = DataConfig(dataset="folder-tree", root=str(trees[0]), image_size=8, episodes="meta-dataset",
                     train_split="train", val_split="val", test_split="test",
                     sources=[{"dataset": "folder-tree", "root": str(trees[1]), "name": "second"}])
    sampler = train_sampler(cfg, seed=0)
    first = sampler.samplers["folder-tree"].dataset.num_classes
    assert sampler.class_offsets == {"folder-tree": 0, "second": first}
    assert train_classes(cfg) == sampler.num_classes
    batch = sampler.sample_batch(12)
    for ep, name in zip(batch, sampler.last_sources):
        ids = ep.class_ids
        assert bool((ids >= first).all()) if name == "second" else bool((ids < first).all())
    val = fixed_episodes(cfg, "val", n_episodes=2)
    assert isinstance(val, SourcedEpisodes) and len(val) == 4 and list(val.by_source()) == ["folder-tree", "second"]


def test_resumed_meta_dataset_run_equals_uninterrupted(trees, tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    constant = ("--set", "train.schedule=constant")  # a cosine schedule depends on train.steps
    assert main(_args(trees[0], whole, *constant)) == 0
    assert main(_args(trees[0], halves, *constant, "--set", "train.steps=2")) == 0
    assert main(["train", "--out", str(halves), "--resume", "--set", "train.steps=4", "--quiet"]) == 0
    a = load_checkpoint(whole / "checkpoints", "last")["state"]["model"]
    b = load_checkpoint(halves / "checkpoints", "last")["state"]["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("fields, match", [
    ({"sources": [{"datset": "omniglot"}]}, "unknown field"),
    ({"sources": [{"dataset": "omniglot"}]}, "named 'omniglot' like another source"),
    ({"sources": [{"dataset": "sinusoid", "name": "s"}]}, "not a classification dataset"),
    ({"sources": [{"dataset": "folder", "name": "f"}], "source_weights": [1.0]}, "one weight"),
    ({"sources": [{"dataset": "folder", "name": "f"}], "source_weights": [0, 0]}, "not all zero"),
    ({"sources": [{"dataset": "folder", "name": "f", "episodes": "n-way"}]}, "has no data.n_way"),
])
def test_bad_source_settings_name_the_fix(fields, match):
    cfg = RunConfig(data=DataConfig(dataset="omniglot", episodes="meta-dataset", **fields))
    cfg.algorithm.name, cfg.algorithm.options = "protonet", {}
    cfg.model.backbone, cfg.model.options = "conv4", {"out_features": None}
    with pytest.raises(ConfigError, match=match):
        validate(cfg)


def test_evaluation_only_sources_are_not_trained_on(trees):
    cfg = DataConfig(dataset="folder-tree", root=str(trees[0]), image_size=8, episodes="meta-dataset",
                     train_split="train", val_split="val", test_split="test",
                     sources=[{"dataset": "folder-tree", "root": str(trees[1]), "name": "held-out", "train": False}])
    assert [t for _, t in source_configs(cfg).values()] == [True, False]
    assert type(train_sampler(cfg, seed=0)).__name__ == "MetaDatasetSampler"  # one training source
    assert list(fixed_episodes(cfg, "test", n_episodes=2).by_source()) == ["folder-tree", "held-out"]
