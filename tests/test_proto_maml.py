"""fo-Proto-MAML and Proto-MAML: the prototype head, its gradients, variable-way episodes."""

import copy

import pytest
import torch
import torch.nn.functional as F
from test_gradient_core import two_threads  # noqa: F401  (a fixture)
from torch.func import functional_call

from metalearn.algorithms import ALGORITHMS, ProtoMAML, ProtoMAMLConfig, ProtoNet
from metalearn.algorithms.proto_maml import prototype_head
from metalearn.models import MLP, Conv4
from metalearn.types import Episode, EpisodeBatch, EpisodeList


def episode(n_way, k_shot, n_query, dim=4, seed=0, dtype=torch.float32, centers=None):
    """Gaussian blobs: class means ``centers`` (random when None), unit noise."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_way, dim, generator=g, dtype=dtype) * 2 if centers is None else centers[:n_way]
    sy = torch.arange(n_way).repeat_interleave(k_shot)
    qy = torch.arange(n_way).repeat_interleave(n_query)
    noise = lambda n: torch.randn(n, dim, generator=g, dtype=dtype)  # noqa: E731
    return Episode(means[sy] + noise(len(sy)), sy, means[qy] + noise(len(qy)), qy)


def grads_of(algo, batch):
    algo.zero_grad()
    loss, metrics = algo.meta_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in algo.backbone.named_parameters()}, metrics


def test_registered_and_defaults_are_meta_datasets():
    assert ALGORITHMS["proto_maml"] is ProtoMAML
    cfg = ProtoMAMLConfig()
    assert (cfg.inner_lr, cfg.inner_steps, cfg.first_order, cfg.adapt_body) == (0.01, 5, True, True)


def test_prototype_head_is_protonets_linear_form():
    z, c = torch.randn(7, 5), torch.randn(3, 5)
    w, b = prototype_head(c, torch.arange(3), 3)  # one example per class: prototypes = c
    lin = z @ w.T + b
    assert torch.allclose(lin - (z * z).sum(1, keepdim=True), -torch.cdist(z, c) ** 2, atol=1e-4)


@pytest.mark.parametrize("net", ["mlp", "conv4-group", "conv4-task"])
def test_head_at_step_zero_gives_protonets_probabilities(net):
    """Same backbone, same episode. (With norm="task" both normalise with support statistics;
    "transductive" norm differs by design: ProtoNet embeds support and query in one batch,
    the MAML family forwards the query alone.)"""
    torch.manual_seed(0)
    if net == "mlp":
        backbone, ep = MLP(4, (16, 8), out_features=None), episode(5, 3, 4)
    else:
        backbone = Conv4(1, hidden=4, image_size=16, norm=net.split("-")[1])
        g = torch.Generator().manual_seed(1)
        sy, qy = torch.arange(4).repeat_interleave(2), torch.arange(4).repeat(3)
        ep = Episode(torch.randn(8, 1, 16, 16, generator=g), sy, torch.randn(12, 1, 16, 16, generator=g), qy)
    ours = ProtoMAML(backbone, ProtoMAMLConfig(inner_steps=0)).adapt(ep.support_x, ep.support_y)(ep.query_x)
    theirs = ProtoNet(backbone).adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert ours.shape == theirs.shape == (len(ep.query_y), int(ep.support_y.max()) + 1)
    assert torch.allclose(F.softmax(ours, -1), F.softmax(theirs, -1), atol=1e-5)
    diff = ours - theirs  # a per-row constant (||z||^2), not the same logits
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-3)
    assert diff.abs().max() > 1e-2


def test_variable_way_episode_list_is_mapped_task_by_task():
    torch.manual_seed(0)
    algo = ProtoMAML(MLP(4, (8,), out_features=None), ProtoMAMLConfig(inner_lr=0.1, inner_steps=2))
    eps = [episode(3, 2, 3, seed=1), episode(5, 1, 2, seed=2), episode(7, 4, 1, seed=3)]
    loss, grads, metrics = grads_of(algo, EpisodeList(eps))
    singles = [grads_of(algo, [ep]) for ep in eps]
    assert loss == pytest.approx(torch.stack([s[0] for s in singles]).mean().item(), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(sum(s[2]["accuracy"] for s in singles) / 3)
    for name, g in grads.items():
        assert torch.allclose(g, sum(s[1][name] for s in singles) / 3, atol=1e-6)
    for ep in eps:  # each episode's own number of ways
        n_way = int(ep.support_y.max()) + 1
        assert algo.adapt(ep.support_x, ep.support_y)(ep.query_x).shape == (len(ep.query_y), n_way)


def hand_built_fo_proto_maml(net, ep, lr, steps, detach_init=False):
    """fo-Proto-MAML written out: the query loss at weights whose inner updates are constants.

    Returns the query loss and its gradient with respect to the backbone's initial weights.
    """
    theta = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    body = lambda p, x: functional_call(net, p, (x,))  # noqa: E731
    protos = torch.stack([body(theta, ep.support_x)[ep.support_y == k].mean(0)
                          for k in range(int(ep.support_y.max()) + 1)])
    w, b = 2 * protos, -(protos**2).sum(1)
    if detach_init:
        w, b = w.detach(), b.detach()
    cur = {**theta, "w": w, "b": b}
    for _ in range(steps):
        leaves = {k: v.detach().requires_grad_() for k, v in cur.items()}  # inner grads: constants
        logits = body({k: leaves[k] for k in theta}, ep.support_x) @ leaves["w"].T + leaves["b"]
        g = torch.autograd.grad(F.cross_entropy(logits, ep.support_y), list(leaves.values()))
        cur = {k: v - lr * gk for (k, v), gk in zip(cur.items(), g)}
    logits = body({k: cur[k] for k in theta}, ep.query_x) @ cur["w"].T + cur["b"]
    loss = F.cross_entropy(logits, ep.query_y)
    return loss.detach(), dict(zip(theta, torch.autograd.grad(loss, list(theta.values()))))


@pytest.mark.parametrize("task_mode", ["loop", "vmap", "threads"])
def test_first_order_gradient_equals_the_hand_built_one(task_mode, two_threads):  # noqa: F811
    torch.manual_seed(0)
    net = MLP(4, (8, 6), out_features=None)
    eps = [episode(4, 3, 2, seed=s) for s in (1, 2)]  # equal shapes: an EpisodeBatch, vmappable
    algo = ProtoMAML(net, ProtoMAMLConfig(inner_lr=0.3, inner_steps=3, task_mode=task_mode))
    loss, grads, _ = grads_of(algo, EpisodeBatch.stack(eps))
    refs = [hand_built_fo_proto_maml(net, ep, 0.3, 3) for ep in eps]
    assert loss.item() == pytest.approx(sum(r[0] for r in refs).item() / 2, rel=1e-5)
    for name, g in grads.items():
        assert torch.allclose(g, (refs[0][1][name] + refs[1][1][name]) / 2, atol=1e-5), name
    # the gradient flows through the prototype initialisation (as in Meta-Dataset's code):
    # without that path it is a different gradient
    cut = [hand_built_fo_proto_maml(net, ep, 0.3, 3, detach_init=True) for ep in eps]
    gap = max(((cut[0][1][n] + cut[1][1][n]) / 2 - g).abs().max() for n, g in grads.items())
    assert gap > 1e-3


def test_second_order_matches_central_finite_differences():
    torch.manual_seed(0)
    net = MLP(3, (4,), out_features=None).double()
    eps = [episode(3, 2, 2, dim=3, seed=s, dtype=torch.float64) for s in (1, 2)]
    algo = ProtoMAML(net, ProtoMAMLConfig(inner_lr=0.2, inner_steps=2, first_order=False, task_mode="loop"))
    _, grads, _ = grads_of(algo, eps)
    _, fo_grads, _ = grads_of(ProtoMAML(net, ProtoMAMLConfig(inner_lr=0.2, inner_steps=2)), eps)
    params = dict(net.named_parameters())
    for seed in range(4):  # directional derivatives along random directions, central differences
        g = torch.Generator().manual_seed(seed)
        v = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in params.items()}
        losses = []
        for sign in (1.0, -1.0):
            moved = copy.deepcopy(net)
            with torch.no_grad():
                for n, p in moved.named_parameters():
                    p += sign * 1e-6 * v[n]
            losses.append(ProtoMAML(moved, algo.config).meta_loss(eps)[0].item())
        fd = (losses[0] - losses[1]) / 2e-6
        exact = sum((grads[n] * v[n]).sum() for n in params).item()
        assert fd == pytest.approx(exact, rel=1e-5, abs=1e-8), seed
    assert max((grads[n] - fo_grads[n]).abs().max() for n in grads) > 1e-5  # second order matters


def test_adapt_body_false_adapts_the_head_only():
    torch.manual_seed(0)
    net = MLP(4, (8,), out_features=None)
    ep = episode(3, 2, 2)
    algo = ProtoMAML(net, ProtoMAMLConfig(inner_lr=0.5, inner_steps=3, adapt_body=False))
    adapted = algo.adapt(ep.support_x, ep.support_y).params
    for name, p in net.named_parameters():
        assert torch.equal(adapted[name], p.detach())
    start = algo.initial_params(dict(net.named_parameters()), ep.support_x, ep.support_y)
    assert not torch.allclose(adapted["proto_head.weight"], start["proto_head.weight"])
    full = ProtoMAML(net, ProtoMAMLConfig(inner_lr=0.5, inner_steps=3)).adapt(ep.support_x, ep.support_y).params
    assert any(not torch.equal(full[n], p.detach()) for n, p in net.named_parameters())


def test_adapt_leaves_the_meta_parameters_alone():
    torch.manual_seed(0)
    algo = ProtoMAML(MLP(4, (8,), out_features=None), ProtoMAMLConfig(inner_lr=0.5, inner_steps=3))
    before = copy.deepcopy(algo.state_dict())
    ep = episode(4, 2, 3)
    predictor = algo.adapt(ep.support_x, ep.support_y)
    with torch.no_grad():
        predictor(ep.query_x)
    assert all(torch.equal(before[k], v) for k, v in algo.state_dict().items())
    assert all(p.grad is None for p in algo.parameters())
    assert not any(v.requires_grad for v in predictor.params.values())
    assert sorted(algo.state_dict()) == sorted(before)  # no head among the meta-parameters


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="out_features=None"):
        ProtoMAML(MLP(4, (8,), out_features=3))
    algo = ProtoMAML(MLP(4, (8,), out_features=None))
    with pytest.raises(ValueError, match="no support example"):
        algo.adapt(torch.randn(4, 4), torch.tensor([0, 0, 2, 2]))
    ep = episode(3, 2, 2)
    bad = Episode(ep.support_x, ep.support_y.float(), ep.query_x, ep.query_y.float())
    with pytest.raises(ValueError, match="int64 labels"):
        algo.meta_loss([bad])


def test_meta_training_on_blobs_lowers_the_query_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    dim, n_classes = 16, 20
    centers = torch.zeros(n_classes, dim)
    centers[:, :4] = 3 * torch.randn(n_classes, 4, generator=g)  # 4 informative coordinates
    noise = torch.full((dim,), 2.0)
    noise[:4] = 0.3

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        n_way = int(torch.randint(3, 7, (1,), generator=gen))
        classes = torch.randperm(n_classes, generator=gen)[:n_way]
        k = int(torch.randint(1, 4, (1,), generator=gen))
        sy, qy = torch.arange(n_way).repeat_interleave(k), torch.arange(n_way).repeat_interleave(3)
        x = lambda y: centers[classes][y] + noise * torch.randn(len(y), dim, generator=gen)  # noqa: E731
        return Episode(x(sy), sy, x(qy), qy)

    algo = ProtoMAML(MLP(dim, (32,), out_features=None), ProtoMAMLConfig(inner_lr=0.05, inner_steps=2))
    opt = torch.optim.Adam(algo.parameters(), lr=3e-3)
    held_out = EpisodeList([draw(10_000 + i) for i in range(20)])
    before = algo.meta_loss(held_out)[1]
    for step in range(60):
        loss, _ = algo.meta_loss(EpisodeList([draw(4 * step + i) for i in range(4)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = algo.meta_loss(held_out)[1]
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    assert after["accuracy"] > before["accuracy"]


@pytest.mark.parametrize("first_order", [True, False])
def test_task_modes_agree(first_order, two_threads):  # noqa: F811
    torch.manual_seed(0)
    net = MLP(4, (8,), out_features=None)
    batch = EpisodeBatch.stack([episode(3, 2, 3, seed=s) for s in (1, 2, 3)])
    results = {}
    for mode in ("loop", "vmap", "threads"):
        cfg = ProtoMAMLConfig(inner_lr=0.2, inner_steps=2, first_order=first_order, task_mode=mode)
        results[mode] = grads_of(ProtoMAML(net, cfg), batch)
    loss, grads, _ = results["loop"]
    for mode in ("vmap", "threads"):
        assert results[mode][0].item() == pytest.approx(loss.item(), rel=1e-5)
        for name, g in grads.items():
            assert torch.allclose(results[mode][1][name], g, atol=1e-5), (mode, name)
