"""The CPU kernels of metalearn.kernels compute the textbook layers they replace, in float64,
gradients of first and second order included, and Conv4's ``fast_cpu`` switch selects them."""

import pytest
import torch
from torch import nn

from metalearn.kernels import cpu_conv
from metalearn.kernels.cpu_conv import _MatmulPoolReLU, unfold3x3
from metalearn.models import NORM_MODES, Conv4
from metalearn.models import conv4 as conv4_module


def _grads_and_hvps(net, x, n_support):
    """Output, parameter gradients and a Hessian-vector product of ``sum(net(x)**2)``."""
    params = list(net.parameters())
    y = net(x, n_support)
    g = torch.autograd.grad(y.square().sum(), params, create_graph=True)
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params)
    return [y, *g, *hv]


@pytest.mark.parametrize("in_channels", [1, 3, 5])
@pytest.mark.parametrize("norm", NORM_MODES)
def test_fast_cpu_switch_is_the_same_function(monkeypatch, norm, in_channels):
    """``fast_cpu=True`` (the kernels: folded batch norm, matmul convolution, index-only
    pooling, by channel count and norm) and ``fast_cpu=False`` (the plain layers) give the same
    outputs, gradients and second-order gradients in float64; only True enters the kernels."""
    calls = []

    def spy(*args):
        calls.append(1)
        return cpu_conv.fused_first_block(*args)

    monkeypatch.setattr(conv4_module, "fused_first_block", spy)
    torch.manual_seed(0)
    fast = Conv4(in_channels, hidden=6, out_features=3, norm=norm, fast_cpu=True).double()
    with torch.no_grad():  # non-trivial affine parameters, one negative scale
        for p in fast.norms.parameters():
            p.copy_(torch.randn_like(p))
    plain = Conv4(in_channels, hidden=6, out_features=3, norm=norm, fast_cpu=False).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(7, in_channels, 28, 28, dtype=torch.float64)
    a = _grads_and_hvps(fast, x, 2)
    assert len(calls) == 1
    b = _grads_and_hvps(plain, x, 2)
    assert len(calls) == 1
    for u, v in zip(a, b):
        assert torch.allclose(u, v, atol=1e-10, rtol=1e-8)


def test_fast_cpu_auto_is_on_for_cpu_only_outside_transforms(monkeypatch):
    """``"auto"`` runs the kernels on CPU, as before the switch existed; ``channels_last=False``
    keeps them off; inside ``vmap`` (which cannot change memory formats) they never run."""
    calls = []
    monkeypatch.setattr(conv4_module, "fused_first_block",
                        lambda *a: calls.append(1) or cpu_conv.fused_first_block(*a))
    x = torch.randn(4, 1, 28, 28)
    auto = Conv4(1, hidden=4)
    auto(x)
    assert len(calls) == 1
    Conv4(1, hidden=4, channels_last=False)(x)
    assert len(calls) == 1
    params = dict(auto.named_parameters())
    torch.func.vmap(lambda t: torch.func.functional_call(auto, params, (t,)))(x[None])
    assert len(calls) == 1


def test_fast_cpu_bad_values():
    with pytest.raises(ValueError, match="fast_cpu must be 'auto', True or False"):
        Conv4(fast_cpu="yes")
    with pytest.raises(ValueError, match="fast_cpu must be 'auto', True or False"):
        Conv4(fast_cpu=1)
    with pytest.raises(ValueError, match="needs channels-last"):
        Conv4(fast_cpu=True, channels_last=False)


def test_fast_cpu_round_trips_through_the_run_config():
    """``fast_cpu`` is a Conv4 option of the run config like any other: set from the command
    line, saved, reloaded and passed to the constructor; a bad value names the choices."""
    from metalearn.train.config import ConfigError, RunConfig, apply_overrides, build_component

    cfg = apply_overrides(RunConfig(), ["model.backbone=conv4", "model.fast_cpu=false"])
    cfg = RunConfig.from_dict(cfg.to_dict())
    assert cfg.model.options["fast_cpu"] is False
    assert build_component(Conv4, cfg.model.resolve()).fast_cpu is False
    cfg = apply_overrides(cfg, ["model.fast_cpu=auto"])
    assert build_component(Conv4, cfg.model.resolve()).fast_cpu == "auto"
    with pytest.raises(ConfigError, match="model.fast_cpu must be auto, True or False, got 'fast'"):
        apply_overrides(cfg, ["model.fast_cpu=fast"])
    with pytest.raises(ConfigError, match="model.norm must be transductive, task, group or none"):
        apply_overrides(cfg, ["model.norm=batch"])


@pytest.mark.parametrize("h,w", [(4, 6), (5, 3)])
def test_first_block_chunks_are_the_whole_batch(monkeypatch, h, w):
    """The fused first block (product, 2x2 max-pool, ReLU), computed a few images at a time with
    a ragged last chunk and odd sizes (pooling floors), equals the one-shot textbook function,
    and its gradients of first and second order (patches included) pass gradcheck in float64."""
    torch.manual_seed(0)
    n, k, c = 5, 4, 3
    monkeypatch.setattr(cpu_conv, "CHUNK_BYTES", 2 * h * w * c * 8)  # 2 images per chunk: 2, 2, 1
    cols = torch.randn(n, k, h * w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(k, c, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(c, dtype=torch.float64, requires_grad=True)

    def fused(p, wt, b):
        return _MatmulPoolReLU.apply(p, wt, b, h, w)

    def textbook(p, wt, b):
        y = (p.transpose(1, 2) @ wt + b).view(n, h, w, c).permute(0, 3, 1, 2)
        return nn.functional.max_pool2d(torch.relu(y), 2)

    inputs = (cols, weight, shift)
    assert torch.allclose(fused(*inputs), textbook(*inputs), atol=1e-14)
    assert fused(*inputs).is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(fused, inputs)
    assert torch.autograd.gradgradcheck(fused, inputs)
    g = torch.randn(n, c, h // 2, w // 2, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(fused(*inputs), inputs, g),
                    torch.autograd.grad(textbook(*inputs), inputs, g)):
        assert torch.allclose(a, b, atol=1e-12)


def test_unfold3x3_is_unfold():
    for shape in [(2, 1, 5, 7), (3, 3, 4, 4), (1, 2, 1, 1)]:
        x = torch.randn(*shape)
        assert torch.equal(unfold3x3(x), nn.functional.unfold(x, 3, padding=1))
