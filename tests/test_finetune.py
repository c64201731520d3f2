"""Baseline with finetune="all": the whole network fine-tuned per episode on a copy of its weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn.algorithms.baseline import Baseline, BaselineConfig, finetune_all
from metalearn.models import MLP


def task(n_way=3, k_shot=4, n_query=3, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(n_way, dim, generator=g)
    sy, qy = torch.arange(n_way).repeat_interleave(k_shot), torch.arange(n_way).repeat_interleave(n_query)
    return (means[sy] + torch.randn(len(sy), dim, generator=g), sy,
            means[qy] + torch.randn(len(qy), dim, generator=g), qy)


def baseline(seed=0, **kw):
    torch.manual_seed(seed)
    return Baseline(MLP(6, (16,), out_features=None), BaselineConfig(n_classes=10, feature_dim=16, **kw))


@pytest.mark.parametrize("head", ["linear", "cosine"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_all_with_a_frozen_body_is_head_only(head, optimizer):
    x, y, q, _ = task()
    kw = dict(head=head, finetune_optimizer=optimizer, finetune_steps=30, finetune_lr=0.05)
    ref = baseline(**kw).adapt(x, y)(q)
    out = baseline(finetune="all", body_lr=0.0, body_optimizer=optimizer, **kw).adapt(x, y)(q)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    moved = baseline(finetune="all", body_lr=0.05, **kw).adapt(x, y)(q)
    assert (moved - ref).abs().max() > 1e-3  # and a moving body does change the predictions


def support_loss(predictor, x, y):
    return F.cross_entropy(predictor(x), y).item()


def test_finetuning_the_body_lowers_the_support_loss_below_head_only():
    # 2-d features for 5 classes: a head on the frozen body cannot fit; moving the body can
    torch.manual_seed(0)
    x, y, _, _ = task(n_way=5, k_shot=3)
    cfg = dict(n_classes=10, feature_dim=2, finetune_steps=60, finetune_lr=0.05, finetune_weight_decay=0.0)
    body = nn.Sequential(nn.Linear(6, 2))
    start = support_loss(Baseline(body, BaselineConfig(finetune="all", **{**cfg, "finetune_steps": 0})).adapt(x, y), x, y)
    head = support_loss(Baseline(body, BaselineConfig(**cfg)).adapt(x, y), x, y)
    full = support_loss(Baseline(body, BaselineConfig(finetune="all", body_lr=0.1, **cfg)).adapt(x, y), x, y)
    assert start == pytest.approx(torch.log(torch.tensor(5.0)).item(), rel=1e-5)  # zero head: uniform
    assert full < head < start
    assert full < 0.7 * head


def test_pretrained_weights_and_running_statistics_are_untouched():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU())  # running stats, train mode
    algo = Baseline(body, BaselineConfig(n_classes=10, feature_dim=8, finetune="all", finetune_steps=10,
                                         body_lr=0.1, body_optimizer="adam"))
    before = copy.deepcopy(algo.state_dict())
    x, y, q, _ = task()
    predictor = algo.adapt(x, y)
    with torch.no_grad():
        predictor(q)
    after = algo.state_dict()
    assert sorted(after) == sorted(before)
    assert all(torch.equal(before[k], after[k]) for k in before), [k for k in before if not torch.equal(before[k], after[k])]
    assert all(p.grad is None for p in algo.parameters())
    state = predictor.states[0]  # the episode's own copy moved, running statistics included
    assert not torch.equal(state["0.weight"], before["backbone.0.weight"])
    assert not torch.equal(state["1.running_mean"], before["backbone.1.running_mean"])


def test_any_number_of_ways_and_batched_equals_one_task_at_a_time():
    algo = baseline(finetune="all", finetune_steps=8)
    for n_way in (2, 5, 7):
        x, y, q, _ = task(n_way=n_way, k_shot=2, seed=n_way)
        assert algo.adapt(x, y)(q).shape == (len(q), n_way)
    tasks = [task(seed=s) for s in (1, 2)]
    xs, ys, qs = (torch.stack([t[i] for t in tasks]) for i in range(3))
    batched = algo.adapt_batch(xs, ys)(qs)
    for i, (x, y, q, _) in enumerate(tasks):
        torch.testing.assert_close(batched[i], algo.adapt(x, y)(q))


def test_runs_under_an_evaluators_inference_mode():
    algo = baseline(finetune="all", finetune_steps=5)
    x, y, q, _ = task()
    with torch.inference_mode():
        out = algo.adapt(x, y)(q)
    torch.testing.assert_close(out, algo.adapt(x, y)(q))


def test_finetune_all_is_deterministic_and_returns_the_heads_shapes():
    body = nn.Linear(6, 4)
    x, y, _, _ = task()
    cfg = BaselineConfig(n_classes=10, feature_dim=4, head="cosine", finetune="all", finetune_steps=4)
    state, w, b = finetune_all(body, x, y, 3, cfg)
    state2, w2, _ = finetune_all(body, x, y, 3, cfg)
    assert b is None and w.shape == (3, 4) and set(state) == {"weight", "bias"}
    assert torch.equal(w, w2) and all(torch.equal(state[k], state2[k]) for k in state)


@pytest.mark.parametrize("field, value, match", [
    ("finetune", "body", "choose 'head'"),
    ("finetune_optimizer", "lbfgs", "choose 'adam' or 'sgd'"),
    ("body_optimizer", "rmsprop", "choose 'adam' or 'sgd'"),
    ("body_lr", -1.0, "body_lr must be a finite number >= 0"),
])
def test_bad_finetune_options_name_the_fix(field, value, match):
    with pytest.raises(ValueError, match=match):
        Baseline(nn.Linear(6, 4), BaselineConfig(n_classes=3, feature_dim=4, **{field: value}))
