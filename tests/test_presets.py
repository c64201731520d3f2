"""Presets: every one resolves and builds, and the paper recipes carry the published settings."""

from __future__ import annotations

import re

import pytest
import torch

from metalearn.algorithms import ALGORITHMS
from metalearn.data.ratings import locate_movielens
from metalearn.data.registry import DATASETS
from metalearn.presets import PRESETS, describe, get_preset
from metalearn.train.config import ConfigError, validate
from metalearn.train.data import train_sampler
from metalearn.train.loop import build_algorithm


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_validates_and_builds(name):
    cfg = get_preset(name)
    assert cfg.name == name or name.startswith("demo")
    assert describe(name) and cfg.notes
    if cfg.algorithm.name not in ALGORITHMS:
        pytest.skip(f"algorithm {cfg.algorithm.name!r} is not registered in ALGORITHMS yet")
    validate(cfg)
    if DATASETS[cfg.data.dataset].ratings and "synthetic" not in cfg.data.dataset:
        try:  # the rating network's input layout comes from the data: MovieLens is not shipped
            locate_movielens(cfg.data.dataset, cfg.data.root)
        except FileNotFoundError:
            cfg.data.dataset = "movielens-synthetic"
    algo = build_algorithm(cfg)
    assert sum(p.numel() for p in algo.parameters()) > 0


@pytest.mark.parametrize("name", [n for n in sorted(PRESETS) if "sinusoid" in n or n == "demo"])
def test_sinusoid_presets_take_a_meta_step(name):
    cfg = get_preset(name)
    torch.manual_seed(0)
    algo = build_algorithm(cfg)
    batch = train_sampler(cfg.data, 0).sample_batch(2)
    loss, metrics = algo.meta_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and "mse" in metrics
    assert all(p.grad is not None for p in algo.parameters() if p.requires_grad)


def test_recipes_match_the_papers():
    m = get_preset("maml-omniglot-5w1s")
    assert (m.data.n_way, m.data.k_shot, m.data.n_query) == (5, 1, 1)
    assert m.algorithm.options["inner_lr"] == 0.4 and m.algorithm.options["inner_steps"] == 1
    assert (m.train.meta_batch, m.train.steps, m.train.lr, m.train.optimizer) == (32, 60_000, 1e-3, "adam")
    m20 = get_preset("maml-omniglot-20w1s")
    assert m20.data.n_way == 20 and m20.train.meta_batch == 16
    assert m20.algorithm.options["inner_lr"] == 0.1 and m20.algorithm.options["inner_steps"] == 5
    assert get_preset("fomaml-omniglot-5w1s").algorithm.options["first_order"] is True
    for k in (5, 10, 20):
        s = get_preset(f"maml-sinusoid-{k}shot")
        assert s.data.k_shot == k and s.model.options["hidden"] == [40, 40]
        assert s.algorithm.options["inner_lr"] == 0.01 and s.train.meta_batch == 25
        assert get_preset(f"meta-sgd-sinusoid-{k}shot").algorithm.name == "meta_sgd"
    for way, shot in ((5, 1), (5, 5), (20, 1), (20, 5)):
        p = get_preset(f"protonet-omniglot-{way}w{shot}s")
        assert (p.data.n_way, p.data.k_shot, p.data.n_query) == (60, shot, 5)
        assert p.data.eval_shape() == (way, shot, 15) and p.data.test_episodes == 1000
        assert (p.train.schedule, p.train.step_size, p.train.gamma) == ("step", 2000, 0.5)
    r = get_preset("reptile-omniglot-5w5s")
    assert r.data.k_shot == 10 and r.data.eval_shape()[1] == 5
    assert r.algorithm.options["outer_lr"] == 0.7 and r.algorithm.options["outer_lr_final"] == 0.0


@pytest.mark.parametrize("name", [n for n in sorted(PRESETS) if re.search(r"-\d+w\d+s($|-)", n)])
def test_validation_and_test_episodes_have_the_shape_in_the_name(name):
    """A preset named ...-NwKs validates and tests on N-way K-shot, whatever it trains on."""
    way, shot = map(int, re.search(r"-(\d+)w(\d+)s($|-)", name).groups()[:2])
    assert get_preset(name).data.eval_shape()[:2] == (way, shot)


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'protonet-omniglot-5w1s'"):
        get_preset("protonet-omniglot-5w1")


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in sorted(PRESETS) if "omniglot" in n])
def test_omniglot_presets_train_and_evaluate_on_real_data(name, omniglot_root):
    from metalearn.eval import evaluate
    from metalearn.train.data import fixed_episodes

    cfg = get_preset(name)
    cfg.data.root = str(omniglot_root)
    fast = {"inner_steps": 1, "eval_inner_steps": 1, "finetune_steps": 2}  # the shapes, not the budget
    cfg.algorithm.options.update({k: v for k, v in fast.items() if k in cfg.algorithm.options})
    torch.manual_seed(0)
    algo = build_algorithm(cfg)
    batch = train_sampler(cfg.data, 0).sample_batch(1)
    first = batch[0]  # an EpisodeBatch, or an EpisodeList of Meta-Dataset episodes
    assert first.support_x.shape[-3:] == (1, 28, 28)
    loss, metrics = algo.meta_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= metrics["accuracy"] <= 1.0
    result = evaluate(algo, fixed_episodes(cfg.data, "val", n_episodes=2), progress=False)
    assert result.metric == "accuracy" and result.n == 2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_test_episodes_are_not_the_validation_episodes(name):
    """Held-out style: validation episodes select the checkpoint, the test episodes (fixed before
    training) are never used for it, so their seeds must differ in every preset."""
    cfg = get_preset(name)
    assert cfg.data.test_seed != cfg.data.val_seed, (cfg.data.val_seed, cfg.data.test_seed)
    assert cfg.data.test_split != cfg.data.val_split  # different classes (or users) too
