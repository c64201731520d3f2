"""Backbones: shapes, out_dim, normalisation semantics, no running statistics, vmap safety."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from metalearn.models import (
    BACKBONES,
    MLP,
    NORM_MODES,
    Conv4,
    ResNet12,
    check_no_running_stats,
    make_norm,
)


def _nets(norm, out_features):
    return [
        (Conv4(1, hidden=8, out_features=out_features, norm=norm), torch.randn(6, 1, 28, 28)),
        (Conv4(3, hidden=4, out_features=out_features, norm=norm, image_size=84),
         torch.randn(6, 3, 84, 84)),
        (MLP(4, (16, 8), out_features=out_features, norm=norm), torch.randn(6, 4)),
        (ResNet12(3, (8, 8, 16, 16), out_features=out_features, norm=norm),
         torch.randn(6, 3, 20, 20)),
    ]


@pytest.mark.parametrize("norm", NORM_MODES)
def test_shapes_and_out_dim(norm):
    for net, x in _nets(norm, None):
        assert net(x).shape == (6, net.out_dim)
        assert list(net.buffers()) == []
    for net, x in _nets(norm, 5):
        assert net(x).shape == (6, 5)
        assert any(name.startswith("head.") for name, _ in net.named_parameters())


def test_standard_out_dims():
    assert Conv4(1, 64).out_dim == 64
    assert Conv4(3, 32, image_size=84).out_dim == 800
    assert MLP(784, (256, 128, 64, 64), out_features=None).out_dim == 64
    assert ResNet12(3).out_dim == 640
    assert set(BACKBONES) == {"conv4", "mlp", "resnet12", "resnet18", "timm", "text-bag", "text-cnn", "text-transformer", "hf-text", "rating-net"}


def test_task_norm_uses_support_statistics_only():
    torch.manual_seed(0)
    net = Conv4(1, hidden=8, out_features=3, norm="task")
    support, query = torch.randn(4, 1, 28, 28), torch.randn(6, 1, 28, 28)
    out = net(torch.cat([support, query]), n_support=4)
    # Support outputs do not depend on the query rows ...
    assert torch.allclose(out[:4], net(support), atol=1e-5)
    # ... and each query output does not depend on the other query rows.
    out1 = net(torch.cat([support, query[:1]]), n_support=4)
    assert torch.allclose(out[4:5], out1[4:5], atol=1e-5)


def test_transductive_norm_uses_batch_statistics():
    torch.manual_seed(0)
    net = MLP(4, (8,), out_features=2, norm="transductive")
    x = torch.randn(6, 4)
    # Changing other rows changes a row's output (batch statistics) ...
    y = x.clone()
    y[1:] += 3.0
    assert not torch.allclose(net(x)[0], net(y)[0])
    # ... while group norm and no norm are per example.
    for norm in ("group", "none"):
        net = MLP(4, (8,), out_features=2, norm=norm)
        assert torch.allclose(net(x)[0], net(y)[0], atol=1e-6)


def test_batch_stat_norm_matches_torch_batch_norm():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, 4)
    ref = nn.BatchNorm2d(3, track_running_stats=False)
    ours = make_norm("transductive", 3)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    task = make_norm("task", 3)
    assert torch.allclose(task(x, n_support=5), ref(x), atol=1e-5)


@pytest.mark.parametrize("norm", NORM_MODES)
def test_vmap_over_tasks_equals_loop(norm):
    torch.manual_seed(0)
    net = Conv4(1, hidden=8, out_features=3, norm=norm)
    params = dict(net.named_parameters())
    xs = torch.randn(3, 7, 1, 28, 28)
    batched = vmap(lambda x: functional_call(net, params, (x,), {"n_support": 2}))(xs)
    looped = torch.stack([net(x, n_support=2) for x in xs])
    assert torch.allclose(batched, looped, atol=1e-5)


def test_bad_norm_and_running_stats_errors():
    with pytest.raises(ValueError, match="choose one of transductive"):
        Conv4(norm="batch")
    with pytest.raises(ValueError, match="too small"):
        Conv4(image_size=8)
    bad = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="norm='transductive', 'task', 'group' or 'none'"):
        check_no_running_stats(bad)
    check_no_running_stats(Conv4())
    check_no_running_stats(nn.Sequential(nn.BatchNorm2d(4, track_running_stats=False)))


def test_channels_last_path_equals_plain_path():
    torch.manual_seed(0)
    fast = Conv4(1, hidden=8, out_features=3, channels_last=True)
    plain = Conv4(1, hidden=8, out_features=3, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(5, 1, 28, 28)
    y1, y2 = fast(x), plain(x)
    assert torch.allclose(y1, y2, atol=1e-5)
    g1 = torch.autograd.grad(y1.square().sum(), list(fast.parameters()))
    g2 = torch.autograd.grad(y2.square().sum(), list(plain.parameters()))
    assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(g1, g2))
    rgb = Conv4(3, hidden=4, channels_last=True, image_size=84)
    ref = Conv4(3, hidden=4, channels_last=False, image_size=84)
    ref.load_state_dict(rgb.state_dict())
    x = torch.randn(2, 3, 84, 84)
    assert torch.allclose(rgb(x), ref(x), atol=1e-5)


def _textbook_conv4(net: Conv4, x, n_support=None):
    """Conv4 as the papers write it: convolution, normalisation, ReLU, then max-pooling."""
    for conv, norm in zip(net.convs, net.norms):
        x = nn.functional.max_pool2d(torch.relu(norm(conv(x), n_support)), 2)
    return net.head(x.flatten(1)) if net.head is not None else x.flatten(1)


def _textbook_resblock(block, x, n_support=None):
    h = x
    for i, (conv, norm) in enumerate(zip(block.convs, block.norms)):
        h = norm(conv(h), n_support)
        if i < 2:
            h = nn.functional.leaky_relu(h, 0.1)
    h = nn.functional.leaky_relu(h + block.shortcut_norm(block.shortcut(x), n_support), 0.1)
    return nn.functional.max_pool2d(h, 2)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("norm", ["transductive", "task", "none", "group"])
def test_conv4_and_resnet12_are_the_textbook_function(norm, channels_last):
    """Conv4 (whose channels-last path runs its first block by the CPU kernels, folding batch
    norm into the convolution) and ResNet-12 give the same outputs, gradients and
    second-order gradients as conv, norm, activation, pool written out, in float64."""
    torch.manual_seed(0)
    conv4 = Conv4(1, hidden=6, out_features=3, norm=norm, channels_last=channels_last).double()
    with torch.no_grad():  # non-trivial affine parameters, one negative scale
        for p in conv4.norms.parameters():
            p.copy_(torch.randn_like(p))
    block = ResNet12(3, (4, 4, 6, 6), norm=norm).double().blocks[0]
    cases = [(conv4, conv4, _textbook_conv4, torch.randn(7, 1, 28, 28, dtype=torch.float64)),
             (block, block, _textbook_resblock, torch.randn(5, 3, 12, 12, dtype=torch.float64))]
    for module, arg, textbook, x in cases:
        params = [p for p in module.parameters()]
        fast, ref = module(x, 2), textbook(arg, x, 2)
        assert torch.allclose(fast, ref, atol=1e-12)
        v = [torch.randn_like(p) for p in params]
        out = []
        for y in (fast, ref):
            g = torch.autograd.grad(y.square().sum(), params, create_graph=True)
            hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params)
            out.append((g, hv))
        for a, b in zip(out[0][0] + out[0][1], out[1][0] + out[1][1]):
            assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)
