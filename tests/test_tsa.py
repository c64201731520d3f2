"""TSA: zero adapters equal the frozen backbone's classifier, adaptation lowers the support loss and
touches nothing but alpha and beta, on Conv4, ResNet-12 and ResNet-18; pretraining is Baseline's."""

import pytest
import torch
from torch import nn

from metalearn.algorithms import ALGORITHMS, TSA, Baseline, BaselineConfig, ProtoNet, TSAConfig
from metalearn.algorithms.protonet import ProtoNetConfig
from metalearn.algorithms.tsa import adapted, adapter_sites, init_adapters
from metalearn.models import MLP, Conv4, ResNet12, ResNet18
from metalearn.types import Episode, EpisodeBatch


def backbones(norm="transductive"):
    return {
        "conv4": (Conv4(1, hidden=4, norm=norm), (1, 28, 28)),
        "resnet12": (ResNet12(1, (4, 4, 8, 8), norm=norm), (1, 16, 16)),
        "resnet18": (ResNet18(1, (4, 4, 8, 8), norm=norm, stem="small"), (1, 16, 16)),
    }


def episode(x_shape, n_way=3, shots=(1, 3, 2), n_query=2, seed=0):
    """An imbalanced episode (per-class shots) whose classes differ in mean."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_way, *x_shape, generator=g)
    sy = torch.cat([torch.full((k,), c) for c, k in enumerate(shots)])
    qy = torch.arange(n_way).repeat_interleave(n_query)
    sx = means[sy] + 0.5 * torch.randn(len(sy), *x_shape, generator=g)
    qx = means[qy] + 0.5 * torch.randn(len(qy), *x_shape, generator=g)
    return Episode(sx, sy, qx, qy, class_ids=torch.tensor([4, 0, 7][:n_way]))


@pytest.mark.parametrize("name", ["conv4", "resnet12", "resnet18"])
@pytest.mark.parametrize("norm", ["transductive", "task"])
def test_zero_adapters_equal_frozen_nearest_centroid(name, norm):
    torch.manual_seed(0)
    net, shape = backbones(norm)[name]
    ep = episode(shape)
    tsa = TSA(net, TSAConfig(n_classes=8, alpha_init="zeros", steps=0))
    ncc = ProtoNet(net, ProtoNetConfig(distance="cosine", temperature=10.0, learn_temperature=False))
    with torch.no_grad():
        expected = ncc.adapt(ep.support_x, ep.support_y)(ep.query_x)
    got = tsa.adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert got.shape == (6, 3)
    assert torch.allclose(got, expected, atol=1e-5)
    # the reference code's init (identity times 1e-4) is close to it but not equal
    eye = TSA(net, TSAConfig(n_classes=8, steps=0)).adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert not torch.equal(eye, expected) and torch.allclose(eye, expected, atol=0.05)


@pytest.mark.parametrize("name", ["conv4", "resnet12", "resnet18"])
def test_adapt_lowers_support_loss_and_leaves_the_backbone_alone(name):
    torch.manual_seed(0)
    net, shape = backbones("task")[name]
    ep = episode(shape)
    tsa = TSA(net, TSAConfig(n_classes=8, steps=10))
    before = {k: v.clone() for k, v in tsa.state_dict().items()}
    predictor = tsa.adapt(ep.support_x, ep.support_y)
    losses = predictor.support_losses
    assert len(losses) == 11 and losses[-1] < 0.9 * losses[0]
    # the loss recorded last is the loss of the predictor's alpha and beta
    final = tsa.support_loss(predictor.alphas, predictor.beta, ep.support_x, ep.support_y, 3)
    assert final.item() == pytest.approx(losses[-1], rel=1e-4)
    # the backbone (and the pretraining head) are bit-identical and received no gradient
    after = tsa.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in tsa.parameters())
    assert all(p.requires_grad for p in net.parameters())  # not frozen by flipping flags either
    assert not any(m._forward_hooks for m in net.modules())  # the hooks are gone
    # alpha and beta moved from their initial values, and are plain tensors of their own
    init = init_adapters(net, tsa.sites, tsa.config)
    assert any(not torch.equal(a, b) for a, b in zip(predictor.alphas, init))
    assert not torch.equal(predictor.beta, torch.eye(predictor.beta.shape[0]))
    assert all(not a.requires_grad for a in [*predictor.alphas, predictor.beta])
    assert predictor(ep.query_x).shape == (6, 3)


def test_gradients_reach_only_alpha_and_beta():
    torch.manual_seed(0)
    net, shape = backbones()["resnet18"]
    ep = episode(shape)
    tsa = TSA(net, TSAConfig(n_classes=8))
    alphas = [a.requires_grad_(True) for a in init_adapters(net, tsa.sites, tsa.config)]
    beta = torch.eye(net.out_dim, requires_grad=True)
    for p in net.parameters():
        p.requires_grad_(False)  # if anything but alpha and beta needed a gradient, it would be absent
    loss = tsa.support_loss(alphas, beta, ep.support_x, ep.support_y, 3)
    grads = torch.autograd.grad(loss, [*alphas, beta])
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # every residual-block conv has an adapter; ResNet-18's stem has none
    assert len(tsa.sites) == 16 and "conv1" not in tsa.sites and "layer2.0.conv1" in tsa.sites
    assert [tuple(a.shape) for a in alphas[:3]] == [(4, 4, 1, 1)] * 3
    assert tuple(alphas[8].shape) == (8, 4, 1, 1)  # layer3.0.conv1: 4 -> 8 channels, stride 2


def test_adapters_change_the_features_by_a_strided_1x1_conv():
    torch.manual_seed(0)
    net = ResNet18(1, (4, 4, 8, 8), stem="small", norm="none")
    x = torch.randn(2, 1, 15, 15)  # odd sizes: the 1x1 stride-2 conv must match the 3x3 one
    site = "layer2.0.conv1"
    conv = net.get_submodule(site)
    alpha = torch.randn(4, 4, 1, 1)
    inputs = {}

    def keep_input(module, args, out):
        inputs["x"] = args[0]

    handle = conv.register_forward_hook(keep_input)
    net(x)
    handle.remove()
    with adapted(net, [site], [alpha]):
        out = conv(inputs["x"])
    assert torch.allclose(out, conv(inputs["x"]) + nn.functional.conv2d(inputs["x"], alpha, stride=2))
    assert adapter_sites(Conv4(1, hidden=4)) == ["convs.0", "convs.1", "convs.2", "convs.3"]
    assert len(adapter_sites(ResNet12(1, (4, 4, 8, 8)))) == 12


def test_any_way_episodes_and_beta_or_alpha_only():
    torch.manual_seed(0)
    net, shape = backbones("task")["conv4"]
    for n_way, shots in [(2, (1, 4)), (5, (1, 1, 2, 3, 1))]:
        ep = episode(shape, n_way=n_way, shots=shots)
        for cfg in (TSAConfig(n_classes=8, steps=3, learn_alpha=False),
                    TSAConfig(n_classes=8, steps=3, learn_beta=False)):
            p = TSA(net, cfg).adapt(ep.support_x, ep.support_y)
            assert p(ep.query_x).shape == (ep.query_x.shape[0], n_way)
            init = init_adapters(net, adapter_sites(net), cfg)
            assert all(torch.equal(a, b) for a, b in zip(p.alphas, init)) == (not cfg.learn_alpha)
            assert torch.equal(p.beta, torch.eye(net.out_dim)) == (not cfg.learn_beta)


def test_adapt_under_inference_mode():
    net, shape = backbones()["conv4"]
    ep = episode(shape)
    with torch.inference_mode():
        p = TSA(net, TSAConfig(n_classes=8, steps=2)).adapt(ep.support_x, ep.support_y)
        assert p(ep.query_x).shape == (6, 3) and p.support_losses[-1] < p.support_losses[0]


def test_meta_loss_is_baselines_pretraining():
    torch.manual_seed(0)
    net, shape = backbones()["conv4"]
    tsa = TSA(net, TSAConfig(n_classes=8, head="cosine"))
    ref = Baseline(net, BaselineConfig(n_classes=8, head="cosine"))
    ref.head.load_state_dict(tsa.baseline.head.state_dict())
    a, b = episode(shape, seed=1), episode(shape, n_way=2, shots=(2, 1), seed=2)
    for batch in ([a, b], EpisodeBatch.stack([a, a])):
        loss, metrics = tsa.meta_loss(batch)
        ref_loss, ref_metrics = ref.meta_loss(batch)
        assert torch.allclose(loss, ref_loss) and metrics == ref_metrics
    loss.backward()
    assert net.convs[0].weight.grad is not None and tsa.baseline.head.weight.grad is not None
    assert ALGORITHMS["tsa"] is TSA and tsa.backbone is net
    assert {k.split(".")[1] for k in tsa.state_dict()} == {"backbone", "head"}


def test_errors_name_the_fix():
    with pytest.raises(TypeError, match="Conv4, ResNet12, ResNet18.*MLP is not one of them"):
        TSA(MLP(4, (8,)), TSAConfig(n_classes=3))
    with pytest.raises(ValueError, match="out_features=None"):
        TSA(Conv4(1, hidden=4, out_features=5), TSAConfig(n_classes=3))
    with pytest.raises(ValueError, match="n_classes"):
        TSA(Conv4(1, hidden=4), TSAConfig())
    with pytest.raises(ValueError, match="alpha_init"):
        TSA(Conv4(1, hidden=4), TSAConfig(n_classes=3, alpha_init="random"))
    with pytest.raises(ValueError, match="TSAConfig.steps"):
        TSA(Conv4(1, hidden=4), TSAConfig(n_classes=3, steps=-1))
    ep = episode((1, 28, 28))
    tsa = TSA(Conv4(1, hidden=4), TSAConfig(n_classes=3, steps=2))
    with pytest.raises(ValueError, match="no support example"):
        tsa.adapt(ep.support_x, torch.tensor([0, 0, 0, 2, 2, 2]))  # class 1 has none
    with pytest.raises(FloatingPointError, match="lr_alpha"):
        tsa.adapt(torch.full_like(ep.support_x, float("nan")), ep.support_y)
