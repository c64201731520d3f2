"""MAML, Meta-SGD, ANIL and Reptile: contract and relations between them."""

import copy
import math
import typing
from collections import OrderedDict

import pytest
import torch
from test_gradient_core import (  # noqa: F401  (two_threads: a fixture)
    image_batch,
    meta_grads,
    reference_maml,
    regression_batch,
    two_threads,
)
from torch import nn

from metalearn.algorithms import (
    ALGORITHMS,
    ANIL,
    MAML,
    ANILConfig,
    LearnedOptimizerMAMLConfig,
    MAMLConfig,
    MetaSGD,
    MetaSGDConfig,
    Reptile,
    ReptileConfig,
)
from metalearn.algorithms.functional import inner_loop, make_forward
from metalearn.algorithms.task_map import TASK_MODES
from metalearn.models import MLP, Conv4
from metalearn.optim.update_rules import sgd
from metalearn.train.config import ConfigError, RunConfig, apply_overrides
from metalearn.types import Episode, EpisodeBatch, Predictor

GRADIENT_ALGOS = ["maml", "meta_sgd", "anil", "reptile"]
CONFIGS = {"maml": MAMLConfig, "meta_sgd": MetaSGDConfig, "anil": ANILConfig, "reptile": ReptileConfig,
           "learned_optimizer": LearnedOptimizerMAMLConfig}


def build(name, net, **kw):
    return ALGORITHMS[name](net, CONFIGS[name](**kw))


@pytest.mark.parametrize("name", GRADIENT_ALGOS)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_contract(name, task):
    torch.manual_seed(0)
    if task == "classification":
        net, batch, key = Conv4(1, hidden=4, out_features=3), image_batch(), "accuracy"
    else:
        net, batch, key = MLP(1, (8,), 1), regression_batch(), "mse"
    algo = build(name, net, inner_lr=0.05, inner_steps=2)
    before = copy.deepcopy(algo.state_dict())
    loss, metrics = algo.meta_loss(batch)
    assert loss.shape == () and set(metrics) == {"loss", key}
    assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in algo.parameters()
               if p.requires_grad)
    predictor = algo.adapt(batch.support_x[0], batch.support_y[0])
    assert isinstance(predictor, Predictor)
    out = predictor(batch.query_x[0])
    assert out.shape[0] == batch.query_x.shape[1]
    # Neither meta_loss nor adapt mutates the meta-parameters (Reptile only counts steps).
    after = algo.state_dict()
    for k, v in before.items():
        if k != "step":
            assert torch.equal(v, after[k]), k
    # Deterministic: same inputs, same loss and gradients.
    g1 = meta_grads(algo, batch)[1]
    g2 = meta_grads(algo, batch)[1]
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_meta_sgd_with_frozen_lrs_equals_maml():
    batch = image_batch()
    torch.manual_seed(0)
    net = Conv4(1, hidden=4, out_features=3)
    maml = MAML(net, MAMLConfig(inner_lr=0.3, inner_steps=2))
    msgd = MetaSGD(net, MetaSGDConfig(inner_lr=0.3, inner_steps=2, learn_lr=False))
    l1, g1, _ = meta_grads(maml, batch)
    l2, g2, _ = meta_grads(msgd, batch)
    assert torch.allclose(l1, l2)
    backbone_grads = [p.grad for p in msgd.backbone.parameters()]
    for a, b in zip(g1, backbone_grads):
        assert torch.allclose(a, b, atol=1e-6)
    assert all(p.grad is None for p in msgd.lrs.parameters())
    # Learned rates get a gradient, and it is the derivative of the meta-loss.
    learn = MetaSGD(net, MetaSGDConfig(inner_lr=0.3, inner_steps=1))
    meta_grads(learn, batch)
    lr = learn.lrs["head__bias"]
    with torch.no_grad():
        lr[0] += 1e-2
        up = learn.meta_loss(batch)[0]
        lr[0] -= 2e-2
        down = learn.meta_loss(batch)[0]
        lr[0] += 1e-2
    assert lr.grad[0].item() == pytest.approx(((up - down) / 2e-2).item(), rel=2e-2, abs=1e-5)


def test_anil_adapts_only_the_head():
    torch.manual_seed(0)
    net = Conv4(1, hidden=4, out_features=3)
    batch = image_batch()
    algo = ANIL(net, ANILConfig(inner_lr=0.3))
    pred = algo.adapt(batch.support_x[0], batch.support_y[0])
    for name, p in net.named_parameters():
        changed = not torch.equal(pred.params[name], p.detach())
        assert changed == name.startswith("head."), name
    # With a head-only network ANIL is MAML.
    head_only = MLP(4, (), out_features=3)
    g = torch.Generator().manual_seed(1)
    eps = [Episode(torch.randn(6, 4, generator=g), torch.arange(3).repeat(2),
                   torch.randn(9, 4, generator=g), torch.arange(3).repeat(3)) for _ in range(2)]
    b = EpisodeBatch.stack(eps)
    ga = meta_grads(ANIL(head_only, ANILConfig(inner_lr=0.5, inner_steps=2)), b)[1]
    gm = meta_grads(MAML(head_only, MAMLConfig(inner_lr=0.5, inner_steps=2)), b)[1]
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(ga, gm))
    with pytest.raises(ValueError, match="out_features=n_way"):
        ANIL(MLP(4, (8,), out_features=None))


def test_eval_inner_steps_are_separate():
    torch.manual_seed(0)
    net = MLP(1, (8,), 1)
    batch = regression_batch()
    algo = MAML(net, MAMLConfig(inner_lr=0.05, inner_steps=1, eval_inner_steps=4))
    pred = algo.adapt(batch.support_x[0], batch.support_y[0])
    params = {k: v.detach() for k, v in net.named_parameters()}
    ref, _ = inner_loop(make_forward(net), params, batch.support_x[0], batch.support_y[0],
                        sgd(0.05), 4)
    assert all(torch.allclose(pred.params[k], ref[k]) for k in ref)


def quadratic_tasks(n_tasks, d=3, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    eps = []
    for _ in range(n_tasks):
        x, w = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(d, 1, generator=g, dtype=torch.float64)
        eps.append(Episode(x, x @ w, x[:2], x[:2] @ w))
    return EpisodeBatch.stack(eps)


def reptile_closed_form(theta, batch, lr, k, eps, serial):
    """SGD on 0.5-free MSE ``|Xw - y|^2 / n`` is linear: ``phi = c + (I - lr H)^k (theta - c)``."""
    phis = []
    for ep in batch:
        x, y = ep.support_x, ep.support_y
        h = 2 * x.T @ x / x.shape[0]
        c = torch.linalg.lstsq(x, y).solution.T
        m = torch.linalg.matrix_power(torch.eye(x.shape[1], dtype=x.dtype) - lr * h, k)
        phi_of = lambda t, c=c, m=m: c + (t - c) @ m.T  # noqa: E731
        if serial:
            theta = theta + eps * (phi_of(theta) - theta)
        else:
            phis.append(phi_of(theta))
    return theta if serial else theta + eps * (torch.stack(phis).mean(0) - theta)


@pytest.mark.parametrize("serial", [False, True])
def test_reptile_update_equals_closed_form(serial):
    batch = quadratic_tasks(4)
    torch.manual_seed(0)
    net = nn.Linear(3, 1, bias=False).double()
    theta = net.weight.detach().clone()
    algo = Reptile(net, ReptileConfig(inner_lr=0.1, inner_steps=3, outer_lr=0.5, serial=serial))
    expected = reptile_closed_form(theta, batch, 0.1, 3, 0.5, serial)
    loss, _ = algo.meta_loss(batch)
    loss.backward()
    # SGD with learning rate 1 on the attached gradient performs the Reptile step.
    assert torch.allclose(theta - net.weight.grad, expected, atol=1e-10)
    algo.outer_step(batch)
    assert torch.allclose(net.weight.detach(), expected, atol=1e-10)
    assert int(algo.step) == 2


def test_reptile_outer_lr_is_annealed_linearly():
    algo = Reptile(MLP(1, (4,), 1), ReptileConfig(outer_lr=1.0, outer_lr_final=0.0, anneal_steps=4))
    seen = []
    for _ in range(6):
        seen.append(algo.outer_lr_now())
        algo.step += 1
    assert seen == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    batched = {}
    for mode in ("loop", "vmap", "threads"):
        torch.manual_seed(0)
        a = Reptile(Conv4(1, hidden=4, out_features=3), ReptileConfig(inner_lr=0.3, task_mode=mode))
        batched[mode] = meta_grads(a, image_batch())[1]
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(batched["loop"], batched["vmap"]))
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(batched["loop"], batched["threads"]))


def sinusoid_batch(g, n_tasks, k=10, n_query=10):
    amp = torch.rand(n_tasks, 1, 1, generator=g) * 4.9 + 0.1
    phase = torch.rand(n_tasks, 1, 1, generator=g) * math.pi
    x = torch.rand(n_tasks, k + n_query, 1, generator=g) * 10 - 5
    y = amp * torch.sin(x - phase)
    return EpisodeBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])


@pytest.mark.slow
def test_maml_sinusoid_meta_training_helps_adaptation():
    torch.manual_seed(0)
    algo = MAML(MLP(1, (40, 40), 1), MAMLConfig(inner_lr=0.01, inner_steps=1))
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        opt.zero_grad()
        algo.meta_loss(sinusoid_batch(g, 10))[0].backward()
        opt.step()
    test = sinusoid_batch(torch.Generator().manual_seed(123), 100)
    pre = post = 0.0
    for ep in test:
        with torch.no_grad():
            pre += nn.functional.mse_loss(algo(ep.query_x), ep.query_y).item() / len(test)
        post_pred = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
        post += nn.functional.mse_loss(post_pred, ep.query_y).item() / len(test)
    assert post < 0.5 * pre, (pre, post)


def test_maml_with_zero_inner_steps_is_plain_multitask_training():
    """inner_steps=0 (the MAML paper's pretrained baseline): the meta-gradient is the gradient
    of the query loss at the meta-parameters, and adapt still fine-tunes with eval_inner_steps."""
    from metalearn.algorithms import MAML, MAMLConfig
    from metalearn.data import EpisodeSampler, SinusoidTasks
    from metalearn.models import MLP

    torch.manual_seed(0)
    algo = MAML(MLP(1, [8], 1), MAMLConfig(inner_lr=0.01, inner_steps=0, eval_inner_steps=5))
    batch = EpisodeSampler(SinusoidTasks(), None, 5, 5, seed=0).sample_batch(3)
    loss, _ = algo.meta_loss(batch)
    loss.backward()
    got = [p.grad.clone() for p in algo.parameters()]
    algo.zero_grad()
    ref = torch.stack([torch.nn.functional.mse_loss(algo(batch.query_x[i]), batch.query_y[i])
                       for i in range(3)]).mean()
    ref.backward()
    for g, p in zip(got, algo.parameters()):
        torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-5)
    before = torch.nn.functional.mse_loss(algo(batch.support_x[0]), batch.support_y[0])
    after = torch.nn.functional.mse_loss(algo.adapt(batch.support_x[0], batch.support_y[0])(
        batch.support_x[0]), batch.support_y[0])
    assert after < before


# ---------------------------------------------------------------- seams: ragged batches, plain encoders

LEARNERS = {  # every gradient-based learner, FOMAML as MAML's first-order variant
    "maml": ("maml", {}), "fomaml": ("maml", {"first_order": True}), "meta_sgd": ("meta_sgd", {}),
    "anil": ("anil", {}), "reptile": ("reptile", {}), "learned_optimizer": ("learned_optimizer", {}),
}


@pytest.mark.parametrize("learner", ["maml", "fomaml", "meta_sgd", "anil", "reptile"])
@pytest.mark.parametrize("task_mode", ["loop", "threads", "vmap"])
@pytest.mark.usefixtures("two_threads")
def test_episodes_of_different_shapes_average_the_single_episode_results(learner, task_mode):
    """A list of a 3-way 2-shot and a 2-way 1-shot episode is mapped task by task (vmap falls
    back to the loop): its loss, metrics and meta-gradient are the means of the two episodes'."""
    a = image_batch(n_tasks=1, n_way=3, k_shot=2, n_query=2)[0]
    b = image_batch(n_tasks=1, n_way=2, k_shot=1, n_query=3, seed=1)[0]
    name, extra = LEARNERS[learner]
    torch.manual_seed(0)
    algo = build(name, Conv4(1, hidden=4, out_features=3, norm="task"), inner_lr=0.3, inner_steps=2,
                 task_mode=task_mode, **extra)
    loss, grads, metrics = meta_grads(algo, [a, b])
    singles = [meta_grads(algo, EpisodeBatch.stack([ep])) for ep in (a, b)]
    assert torch.allclose(loss, (singles[0][0] + singles[1][0]) / 2, atol=1e-6)
    assert metrics == pytest.approx({k: (singles[0][2][k] + singles[1][2][k]) / 2 for k in metrics})
    for g, ga, gb in zip(grads, singles[0][1], singles[1][1], strict=True):
        assert torch.allclose(g, (ga + gb) / 2, atol=1e-6, rtol=1e-5), (g - (ga + gb) / 2).abs().max()


def plain_encoder(task):
    """A user's encoder: a plain ``nn.Module`` whose ``forward(x)`` knows nothing of ``n_support``."""
    if task == "regression":
        body = nn.Sequential(nn.Linear(1, 8), nn.Tanh())
        return nn.Sequential(OrderedDict(body=body, head=nn.Linear(8, 1)))
    body = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    return nn.Sequential(OrderedDict(body=body, head=nn.Linear(4 * 6 * 6, 3)))


@pytest.mark.parametrize("learner", sorted(LEARNERS))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_plain_encoder_without_n_support_works_for_every_gradient_learner(learner, task):
    torch.manual_seed(0)
    net = plain_encoder(task)
    batch = image_batch() if task == "classification" else regression_batch()
    name, extra = LEARNERS[learner]
    algo = build(name, net, inner_lr=0.05, inner_steps=2, **extra)
    loss, grads, _ = meta_grads(algo, batch)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    if name == "maml":  # the same meta-gradient as the specification
        ref_loss, ref = reference_maml(net, batch, 0.05, 2, first_order=bool(extra))
        assert torch.allclose(loss, ref_loss, atol=1e-6)
        assert all(torch.allclose(g, r, atol=1e-5, rtol=1e-4) for g, r in zip(grads, ref, strict=True))
    out = algo.adapt(batch.support_x[0], batch.support_y[0])(batch.query_x[0])
    assert out.shape == (batch.query_x.shape[1], *((3,) if task == "classification" else (1,)))


def test_task_mode_is_a_literal_that_the_run_config_checks():
    for config in (MAMLConfig, ReptileConfig, LearnedOptimizerMAMLConfig):
        assert typing.get_args(typing.get_type_hints(config)["task_mode"]) == TASK_MODES
    for name in ("maml", "reptile"):
        with pytest.raises(ConfigError, match=r"algorithm.task_mode must be auto, loop, threads or vmap, got 'bogus'"):
            apply_overrides(RunConfig(), [f"algorithm.name={name}", "algorithm.task_mode=bogus"])
    with pytest.raises(ValueError, match="unknown task_mode 'bogus'; choose one of auto, loop"):
        MAML(MLP(1, (4,), 1), MAMLConfig(task_mode="bogus"))
