"""ResNet-18: shapes of both stems, vmap safety, loading torchvision-format weights; the timm adapter."""

import importlib

import pytest
import torch
from safetensors.torch import save_file
from torch.func import functional_call, vmap

from metalearn.models import BACKBONES, ResNet18, TimmBackbone, load_pretrained, timm_backbone
from metalearn.models.timm_backbone import import_timm

WIDTHS = (4, 8, 8, 16)


def torchvision_state(widths=WIDTHS, in_channels=3, n_classes=10, seed=0):
    """A random state dict in torchvision's resnet18 layout, written out by hand (no torchvision)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    def bn(prefix, c):
        return {f"{prefix}.weight": rand(c), f"{prefix}.bias": rand(c), f"{prefix}.running_mean": rand(c),
                f"{prefix}.running_var": rand(c).abs(), f"{prefix}.num_batches_tracked": torch.tensor(7)}

    state = {"conv1.weight": rand(widths[0], in_channels, 7, 7), **bn("bn1", widths[0])}
    c_in = widths[0]
    for stage, c in enumerate(widths, start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            state[f"{p}.conv1.weight"] = rand(c, c_in if block == 0 else c, 3, 3)
            state |= bn(f"{p}.bn1", c)
            state[f"{p}.conv2.weight"] = rand(c, c, 3, 3)
            state |= bn(f"{p}.bn2", c)
            if block == 0 and stage > 1:
                state[f"{p}.downsample.0.weight"] = rand(c, c_in, 1, 1)
                state |= bn(f"{p}.downsample.1", c)
        c_in = c
    state["fc.weight"], state["fc.bias"] = rand(n_classes, widths[-1]), rand(n_classes)
    return state


@pytest.mark.parametrize("stem, size, in_channels", [("imagenet", 84, 3), ("imagenet", 64, 1), ("small", 32, 3),
                                                      ("small", 28, 1)])
def test_forward_shapes_both_stems(stem, size, in_channels):
    torch.manual_seed(0)
    net = ResNet18(in_channels, WIDTHS, stem=stem)
    assert net(torch.randn(3, in_channels, size, size)).shape == (3, 16) and net.out_dim == 16
    assert ResNet18(in_channels, WIDTHS, out_features=5, stem=stem)(torch.randn(2, in_channels, size, size)).shape == (2, 5)


def test_default_is_resnet18():
    # the default widths and block counts are torchvision's resnet18 without its classifier
    # (11,689,512 parameters less fc's 513,000)
    net = ResNet18()
    assert BACKBONES["resnet18"] is ResNet18 and net.out_dim == 512
    assert sum(p.numel() for p in net.parameters()) == 11_176_512


def test_feature_map_sizes():
    net = ResNet18(3, WIDTHS, stem="imagenet")
    x = torch.randn(2, 3, 84, 84)
    h = net.bn1(net.conv1(x))
    assert h.shape[-1] == 42  # 7x7 conv of stride 2
    stages = []
    h = torch.nn.functional.max_pool2d(h, 3, 2, 1)
    for stage in net.stages():
        for block in stage:
            h = block(h)
        stages.append(h.shape[-1])
    assert stages == [21, 11, 6, 3]
    assert net.layer1[0].downsample is None and net.layer2[0].downsample is not None


@pytest.mark.parametrize("norm", ["task", "transductive"])
def test_vmap_over_tasks_equals_loop(norm):
    torch.manual_seed(0)
    net = ResNet18(1, WIDTHS, out_features=3, norm=norm, stem="small")
    per_task = [{k: v + 0.01 * torch.randn_like(v) for k, v in net.named_parameters()} for _ in range(3)]
    stacked = {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}
    xs = torch.randn(3, 6, 1, 28, 28)
    batched = vmap(lambda p, x: functional_call(net, p, (x,), {"n_support": 2}))(stacked, xs)
    looped = torch.stack([functional_call(net, p, (x,), {"n_support": 2}) for p, x in zip(per_task, xs)])
    assert torch.allclose(batched, looped, atol=1e-5)
    if norm == "task":  # the queries do not change the support statistics
        x = xs[0]
        other = torch.cat([x[:2], torch.randn(4, 1, 28, 28)])
        assert torch.allclose(net(x, 2)[:2], net(other, 2)[:2], atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("norm", ["transductive", "task", "group"])
def test_load_pretrained_places_every_tensor(tmp_path, suffix, norm):
    state = torchvision_state()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    net = ResNet18(3, WIDTHS, norm=norm, out_features=4)
    head = net.head.weight.detach().clone()
    assert load_pretrained(net, path) is net
    own = net.state_dict()
    placed = [k for k in state if not k.startswith("fc.") and not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))]
    assert len(placed) == len([k for k in own if not k.startswith("head.")]) == 60
    for k in placed:
        assert torch.equal(own[k], state[k]), k
    assert torch.equal(net.head.weight, head)  # the ImageNet classifier is dropped, ours kept


def test_load_pretrained_reads_a_wrapped_checkpoint(tmp_path):
    state = torchvision_state()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pt")
    net = load_pretrained(ResNet18(3, WIDTHS), tmp_path / "ckpt.pt")
    assert torch.equal(net.layer4[1].bn2.bias, state["layer4.1.bn2.bias"])


def test_load_pretrained_errors_list_the_keys(tmp_path):
    state = torchvision_state()
    del state["layer3.0.downsample.0.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing 1: layer3\.0\.downsample\.0\.weight"):
        load_pretrained(ResNet18(3, WIDTHS), tmp_path / "missing.pth")
    # the 3x3 stem of stem="small" cannot take the 7x7 ImageNet conv
    torch.save(torchvision_state(), tmp_path / "full.pth")
    with pytest.raises(ValueError, match=r"shape mismatch: conv1\.weight: file \(4, 3, 7, 7\) vs net \(4, 3, 3, 3\)"):
        load_pretrained(ResNet18(3, WIDTHS, stem="small"), tmp_path / "full.pth")
    with pytest.raises(ValueError, match=r"without a place in the net 40: bn1\.bias.*norm with an affine"):
        load_pretrained(ResNet18(3, WIDTHS, norm="none"), tmp_path / "full.pth")
    net = ResNet18(3, WIDTHS)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="channels=\\(8, 8, 8, 16\\)"):
        load_pretrained(ResNet18(3, (8, 8, 8, 16)), tmp_path / "full.pth")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_bad_stem_and_widths():
    with pytest.raises(ValueError, match="choose 'imagenet'"):
        ResNet18(stem="cifar")
    with pytest.raises(ValueError, match="four widths"):
        ResNet18(channels=(8, 16))


def _timm_import_error() -> str | None:
    try:
        import_timm()
    except ImportError as e:
        return str(e)
    return None


@pytest.mark.skipif(_timm_import_error() is not None,
                    reason=f"timm does not import here: {_timm_import_error()}")
def test_timm_backbone_features_and_checkpoint(tmp_path):  # pragma: no cover - needs timm
    net = timm_backbone("resnet18", in_channels=1)
    assert isinstance(net, TimmBackbone) and net(torch.randn(2, 1, 32, 32)).shape == (2, net.out_dim)
    torch.save(net.model.state_dict(), tmp_path / "w.pth")
    again = timm_backbone("resnet18", tmp_path / "w.pth", in_channels=1)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("error", [ModuleNotFoundError("No module named 'timm'"),
                                   RuntimeError("operator torchvision::nms does not exist")])
def test_timm_import_failure_names_both_causes(monkeypatch, error):
    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "timm":
            raise error
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ImportError, match="pip install timm") as info:
        timm_backbone("resnet18")
    message = str(info.value)
    assert str(error) in message and "torchvision does not match torch" in message
    assert "torchvision::nms" in message and isinstance(info.value.__cause__, type(error))
