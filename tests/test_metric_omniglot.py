"""Metric learners on real Omniglot (skipped with the reason when the data is absent)."""

from __future__ import annotations

import pytest
import torch

from metalearn.algorithms import Baseline, BaselineConfig, ProtoNet
from metalearn.data import EpisodeSampler, FixedEpisodes, Omniglot
from metalearn.eval import evaluate
from metalearn.models import Conv4


@pytest.mark.data
@pytest.mark.slow
def test_a_short_protonet_run_on_omniglot_improves_validation_accuracy(omniglot_root):
    torch.manual_seed(0)
    train = Omniglot("vinyals-train", root=omniglot_root)
    val = FixedEpisodes(Omniglot("vinyals-val", root=omniglot_root), 5, 1, 5, n_episodes=40, seed=1)
    algo = ProtoNet(Conv4(in_channels=1, hidden=16))
    before = evaluate(algo, val, progress=False).mean
    opt = torch.optim.Adam(algo.parameters(), lr=3e-3)
    sampler = EpisodeSampler(train, 20, 1, 2, seed=0)  # more ways in training than at test
    for _ in range(40):
        loss, _ = algo.meta_loss(sampler.sample_batch(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate(algo, val, progress=False).mean
    assert after > before + 0.15 and after > 0.6, (before, after)


@pytest.mark.data
@pytest.mark.slow
def test_baseline_batched_evaluation_equals_one_task_at_a_time(omniglot_root):
    """evaluate() uses Baseline.adapt_batch when batch_size > 1; the result must not change."""
    torch.manual_seed(0)
    episodes = FixedEpisodes(Omniglot("vinyals-val", root=omniglot_root), 5, 1, 3, n_episodes=6, seed=2)
    algo = Baseline(Conv4(in_channels=1, hidden=8, norm="group"),
                    BaselineConfig(n_classes=10, finetune_steps=30))
    one = evaluate(algo, episodes, batch_size=1, progress=False)
    batched = evaluate(algo, episodes, batch_size=3, progress=False)
    assert one.per_episode == pytest.approx(batched.per_episode, abs=1e-9)
