"""Functional core of the gradient-based learners: update rules, inner loop, exactness checks.

The specification of MAML is :func:`reference_maml`, a plain per-task loop; MAML and FOMAML
equal it in every task mode (loop, threads, vmap, with batch norm in the model). Relational
tests: vmap path == loop path == threads (Meta-SGD, ANIL too), second-order meta-gradient ==
central finite differences; first order == detached inner grads.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metalearn.algorithms import ANIL, MAML, ANILConfig, MAMLConfig, MetaSGD, MetaSGDConfig
from metalearn.algorithms.checks import as_batch
from metalearn.algorithms.functional import inner_loop, make_forward
from metalearn.models import MLP, Conv4
from metalearn.optim.update_rules import (
    apply_updates,
    chain,
    clip_by_global_norm,
    meta_sgd,
    scale,
    sgd,
)
from metalearn.types import Episode, EpisodeBatch


def image_batch(n_tasks=3, n_way=3, k_shot=2, n_query=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    eps = []
    for _ in range(n_tasks):
        sy = torch.arange(n_way).repeat_interleave(k_shot)
        qy = torch.arange(n_way).repeat_interleave(n_query)
        eps.append(Episode(torch.randn(len(sy), 1, 28, 28, generator=g), sy,
                           torch.randn(len(qy), 1, 28, 28, generator=g), qy))
    return EpisodeBatch.stack(eps)


def regression_batch(n_tasks=3, n_support=5, n_query=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    eps = []
    for _ in range(n_tasks):
        a, ph = torch.rand(2, generator=g, dtype=torch.float64)
        xs = torch.rand(n_support + n_query, 1, generator=g, dtype=torch.float64) * 10 - 5
        ys = (1 + 4 * a) * torch.sin(xs + math.pi * ph)
        eps.append(Episode(xs[:n_support].to(dtype), ys[:n_support].to(dtype),
                           xs[n_support:].to(dtype), ys[n_support:].to(dtype)))
    return EpisodeBatch.stack(eps)


def meta_grads(algo, batch):
    algo.zero_grad()
    loss, metrics = algo.meta_loss(batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in algo.parameters() if p.requires_grad], metrics


# ---------------------------------------------------------------- update rules


def test_update_rules_compose():
    params = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor(3.0)}
    grads = {"a": torch.tensor([0.5, 1.0]), "b": torch.tensor(-2.0)}
    plain, _ = sgd(0.2).update(grads, sgd(0.2).init(params), params)
    rule = chain(scale(2.0), sgd(0.1))
    chained, _ = rule.update(grads, rule.init(params), params)
    lrs = {"a": torch.full((2,), 0.2), "b": torch.tensor(0.2)}
    per_param, _ = meta_sgd(lrs).update(grads, (), params)
    for k in params:
        assert torch.allclose(plain[k], -0.2 * grads[k])
        assert torch.allclose(chained[k], plain[k])
        assert torch.allclose(per_param[k], plain[k])
    new = apply_updates(params, plain)
    assert torch.allclose(new["b"], torch.tensor(3.4))
    clip = clip_by_global_norm(1.0)
    clipped, _ = clip.update(grads, clip.init(params), params)
    norm = torch.sqrt(sum((g * g).sum() for g in clipped.values()))
    assert torch.allclose(norm, torch.tensor(1.0))


@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf")])
def test_bad_inner_lr_is_refused(lr):
    with pytest.raises(ValueError, match="finite number >= 0"):
        sgd(lr)
    with pytest.raises(ValueError, match="finite number >= 0"):
        MAML(MLP(1, (4,), 1), MAMLConfig(inner_lr=lr))


def test_inner_loop_matches_manual_sgd():
    torch.manual_seed(0)
    net = MLP(1, (8,), 1)
    batch = regression_batch()
    sx, sy = batch.support_x[0], batch.support_y[0]
    params = {k: v.detach() for k, v in net.named_parameters()}
    adapted, losses = inner_loop(make_forward(net), params, sx, sy, sgd(0.05), 3)
    manual = {k: v.clone().requires_grad_() for k, v in params.items()}
    for step in range(3):
        loss = nn.functional.mse_loss(torch.func.functional_call(net, manual, (sx,)), sy)
        assert torch.allclose(losses[step], loss)
        g = torch.autograd.grad(loss, list(manual.values()))
        manual = {k: (v - 0.05 * gi).detach().requires_grad_() for (k, v), gi in zip(manual.items(), g)}
    for k in params:
        assert torch.allclose(adapted[k], manual[k], atol=1e-6)
    assert all(torch.equal(params[k], v.detach()) for k, v in net.named_parameters())


# ---------------------------------------------------------------- vmap == loop


ALGOS = {
    "maml": lambda net, **kw: MAML(net, MAMLConfig(**kw)),
    "meta_sgd": lambda net, **kw: MetaSGD(net, MetaSGDConfig(**kw)),
    "anil": lambda net, **kw: ANIL(net, ANILConfig(**kw)),
}


@pytest.mark.parametrize("name", sorted(ALGOS))
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("norm", ["transductive", "task"])
def test_vmap_equals_loop_with_batch_norm(name, first_order, norm):
    batch = image_batch()
    results = {}
    for mode in ("loop", "vmap"):
        torch.manual_seed(0)
        net = Conv4(1, hidden=6, out_features=3, norm=norm)
        algo = ALGOS[name](net, inner_lr=0.3, inner_steps=2, first_order=first_order, task_mode=mode)
        results[mode] = meta_grads(algo, batch)
    (l1, g1, m1), (l2, g2, m2) = results["loop"], results["vmap"]
    assert torch.allclose(l1, l2, atol=1e-5)
    assert m1["accuracy"] == pytest.approx(m2["accuracy"])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("name", sorted(ALGOS))
@pytest.mark.parametrize("first_order", [False, True])
def test_threads_equal_loop(name, first_order, two_threads):
    """Tasks spread over threads (each with a private copy of the module) give the serial
    loop's loss, metrics and meta-gradients; the serial loop runs single-threaded too, so the
    kernels are the same and the results agree to rounding of the mean over tasks."""
    batch = image_batch(n_tasks=5)
    results = {}
    for mode in ("threads", "loop"):
        torch.manual_seed(0)
        net = Conv4(1, hidden=6, out_features=3, norm="task")
        algo = ALGOS[name](net, inner_lr=0.3, inner_steps=2, first_order=first_order, task_mode=mode)
        if mode == "loop":
            torch.set_num_threads(1)
        results[mode] = meta_grads(algo, batch)
        torch.set_num_threads(2)
    (l1, g1, m1), (l2, g2, m2) = results["threads"], results["loop"]
    assert torch.allclose(l1, l2, atol=1e-6) and m1 == pytest.approx(m2)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), (a - b).abs().max()
    assert torch.get_num_threads() == 2  # the intra-op setting is restored after the map


def test_threads_is_the_cpu_default_for_conv_backbones_and_carries_grad_mode(two_threads):
    from metalearn.algorithms.task_map import resolve_task_mode

    cpu = torch.device("cpu")
    assert resolve_task_mode("auto", cpu, Conv4(1, hidden=4), second_order=True) == "threads"
    assert resolve_task_mode("auto", cpu, Conv4(1, hidden=4)) == "loop"  # first order: no gain
    assert resolve_task_mode("auto", cpu, MLP(1, (4,), 1), second_order=True) == "vmap"
    torch.set_num_threads(1)
    assert resolve_task_mode("auto", cpu, Conv4(1, hidden=4), second_order=True) == "loop"
    torch.set_num_threads(2)
    algo = MAML(Conv4(1, hidden=4, out_features=3), MAMLConfig(task_mode="threads"))
    with torch.no_grad():
        loss, _ = algo.meta_loss(image_batch(n_tasks=3))
    assert not loss.requires_grad
    bad = image_batch(n_tasks=3)
    bad.support_x[1, 0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="task 1"):
        algo.meta_loss(bad)


def test_vmap_chunks_equal_full_vmap():
    batch = image_batch(n_tasks=4)
    out = []
    for chunk in (None, 3):
        torch.manual_seed(0)
        algo = MAML(Conv4(1, hidden=4, out_features=3), MAMLConfig(task_mode="vmap", chunk_size=chunk))
        out.append(meta_grads(algo, batch)[1])
    for a, b in zip(*out):
        assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- exactness of meta-gradients


def reference_maml(net, batch, inner_lr, inner_steps, first_order=False):
    """THE specification of MAML and FOMAML (Finn et al. 2017, Algorithm 2), torch.func style.

    Per task: ``inner_steps`` SGD steps from the meta-parameters on the support loss
    (cross-entropy for labels, MSE for float targets), then the query loss at the adapted
    parameters. The meta-loss is the mean over tasks; its gradient flows through the inner
    steps (second order) unless ``first_order`` takes the inner gradients as constants. With
    ``norm="task"`` the query is forwarded after the support, whose rows give the statistics.

    Returns:
        ``(meta_loss, meta_gradients)``, the gradients in ``net.parameters()`` order.
    """
    params = dict(net.named_parameters())
    task_norm = getattr(net, "norm", None) == "task"

    def loss(p, x, y, support_x=None):
        if support_x is None:
            out = functional_call(net, p, (x,))
        else:
            n = len(support_x)
            out = functional_call(net, p, (torch.cat([support_x, x]),), {"n_support": n})[n:]
        return F.mse_loss(out, y) if y.is_floating_point() else F.cross_entropy(out, y)

    query_losses = []
    for ep in batch:
        fast = params
        for _ in range(inner_steps):
            grads = torch.autograd.grad(loss(fast, ep.support_x, ep.support_y), list(fast.values()),
                                        create_graph=not first_order)
            fast = {k: w - inner_lr * g for (k, w), g in zip(fast.items(), grads)}
        query_losses.append(loss(fast, ep.query_x, ep.query_y, ep.support_x if task_norm else None))
    meta_loss = torch.stack(query_losses).mean()
    return meta_loss, torch.autograd.grad(meta_loss, list(params.values()))


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("task_mode", ["loop", "threads", "vmap"])
@pytest.mark.parametrize("norm", ["transductive", "task"])
def test_maml_equals_reference_in_every_task_mode(first_order, task_mode, norm, two_threads):
    torch.manual_seed(0)
    net = Conv4(1, hidden=6, out_features=3, norm=norm)
    batch = image_batch()
    ref_loss, ref = reference_maml(net, batch, 0.3, 2, first_order)
    loss, ours, _ = meta_grads(MAML(net, MAMLConfig(inner_lr=0.3, inner_steps=2, first_order=first_order,
                                                    task_mode=task_mode)), batch)
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()


def test_first_order_differs_from_second_order():
    torch.manual_seed(0)
    net = MLP(1, (8, 8), 1, norm="transductive")
    batch = regression_batch()
    g2 = meta_grads(MAML(net, MAMLConfig(inner_lr=0.05, inner_steps=2)), batch)[1]
    g1 = meta_grads(MAML(net, MAMLConfig(inner_lr=0.05, inner_steps=2, first_order=True)), batch)[1]
    assert max((a - b).abs().max() for a, b in zip(g1, g2)) > 1e-4


@pytest.mark.parametrize("norm", ["none", "transductive"])
def test_second_order_matches_central_finite_differences(norm):
    torch.manual_seed(0)
    net = MLP(1, (5,), 1, norm=norm).double()
    batch = regression_batch(n_tasks=2, dtype=torch.float64)
    algo = MAML(net, MAMLConfig(inner_lr=0.05, inner_steps=2, task_mode="loop"))
    _, grads, _ = meta_grads(algo, batch)
    eps = 1e-6
    for p, g in zip(algo.parameters(), grads):
        fd = torch.empty_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                orig = p.view(-1)[i].item()
                p.view(-1)[i] = orig + eps
                up = algo.meta_loss(batch)[0]
                p.view(-1)[i] = orig - eps
                down = algo.meta_loss(batch)[0]
                p.view(-1)[i] = orig
            fd.view(-1)[i] = (up - down) / (2 * eps)
        assert torch.allclose(g, fd, atol=1e-7, rtol=1e-5), (g - fd).abs().max()


# ---------------------------------------------------------------- bad input


def test_running_stats_backbone_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(ValueError, match="keeps running statistics.*norm='transductive'"):
        MAML(net)


def test_bad_inner_step_counts_are_refused():
    with pytest.raises(ValueError, match="inner_steps must be an integer >= 0"):
        MAML(MLP(1, (4,), 1), MAMLConfig(inner_steps=-1))
    with pytest.raises(ValueError, match="eval_inner_steps must be an integer >= 1"):
        MAML(MLP(1, (4,), 1), MAMLConfig(eval_inner_steps=0))


def test_as_batch_stacks_equal_shapes_and_keeps_a_list_of_different_ones():
    a, b = regression_batch(n_support=5)[0], regression_batch(n_support=4)[0]
    stacked = as_batch([a, a])
    assert isinstance(stacked, EpisodeBatch) and torch.equal(stacked.support_x[1], a.support_x)
    kept = as_batch((a, b))
    assert isinstance(kept, list) and kept[0] is a and kept[1] is b
    with pytest.raises(ValueError, match="empty"):
        as_batch([])
    with pytest.raises(TypeError, match="EpisodeBatch.stack"):
        MAML(MLP(1, (4,), 1)).meta_loss(a)


def test_non_finite_inner_loss_names_step_and_task():
    batch = regression_batch(n_tasks=3)
    bad_x = batch.support_x.clone()
    bad_x[2, 0, 0] = float("nan")
    bad = EpisodeBatch(bad_x, batch.support_y, batch.query_x, batch.query_y)
    algo = MAML(MLP(1, (4,), 1), MAMLConfig(inner_lr=0.01, task_mode="loop"))
    with pytest.raises(FloatingPointError, match="inner step 0 of task 2"):
        algo.meta_loss(bad)
    # A huge step makes the second support loss overflow: step 1, first task.
    algo = MAML(MLP(1, (4,), 1), MAMLConfig(inner_lr=1e30, inner_steps=3, task_mode="vmap"))
    with pytest.raises(FloatingPointError, match="inner step [12] of task 0"):
        algo.meta_loss(batch)
    with pytest.raises(FloatingPointError, match="inner step 0 of task 0"):
        MAML(MLP(1, (4,), 1)).adapt(bad[2].support_x, bad[2].support_y)
