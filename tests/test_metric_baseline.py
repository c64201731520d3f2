"""Baseline / Baseline++: scale-invariant cosine head, batched head fitting, pretrained checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metalearn.algorithms.baseline import Baseline, BaselineConfig, fit_heads, head_logits
from metalearn.models import Conv4
from metalearn.models.weights import load_backbone
from metalearn.types import Episode, EpisodeBatch


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.factor * self.inner(x)


def support(n_way=3, k_shot=4, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_way * k_shot, dim, generator=g), torch.arange(n_way).repeat_interleave(k_shot)


def test_cosine_head_is_invariant_to_the_scale_of_the_features():
    g = torch.Generator().manual_seed(0)
    f, w = torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g)
    for a in (0.01, 3.0, 250.0):
        torch.testing.assert_close(head_logits(a * f, w, None, "cosine", 10.0), head_logits(f, w, None, "cosine", 10.0))
    linear = head_logits(f, w, torch.zeros(4), "linear", 1.0)
    assert not torch.allclose(head_logits(3 * f, w, torch.zeros(4), "linear", 1.0), linear)


def test_baseline_pp_predictions_do_not_depend_on_the_feature_scale():
    """The whole Baseline++ adaptation (imprinted init + cosine head fit) is scale invariant."""
    torch.manual_seed(1)
    inner = nn.Linear(6, 8)
    cfg = BaselineConfig(n_classes=10, feature_dim=8, head="cosine")
    x, y = support()
    q = torch.randn(5, 6)
    ref = Baseline(inner, cfg).adapt(x, y)(q)
    out = Baseline(Scaled(inner, 37.0), cfg).adapt(x, y)(q)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_heads_fitted_together_equal_heads_fitted_one_task_at_a_time(head):
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(4, 12, 5, generator=g)
    labels = torch.stack([torch.randperm(12, generator=g) % 3 for _ in range(4)])
    cfg = BaselineConfig(n_classes=3, head=head, finetune_steps=50)
    w, b = fit_heads(feats, labels, 3, cfg)
    for t in range(4):
        wt, bt = fit_heads(feats[t : t + 1], labels[t : t + 1], 3, cfg)
        torch.testing.assert_close(w[t], wt[0], rtol=1e-4, atol=1e-5)
        if b is not None:
            torch.testing.assert_close(b[t], bt[0], rtol=1e-4, atol=1e-5)


def test_fitted_head_classifies_its_support_set_and_leaves_the_backbone_alone():
    torch.manual_seed(3)
    algo = Baseline(nn.Linear(6, 8), BaselineConfig(n_classes=5, feature_dim=8, finetune_steps=200, finetune_lr=0.05))
    x, y = support()
    predictor = algo.adapt(x, y)
    assert (predictor(x).argmax(-1) == y).all()
    assert all(p.grad is None for p in algo.parameters())


def test_adapt_works_inside_inference_mode():
    torch.manual_seed(4)
    algo = Baseline(nn.Linear(6, 8), BaselineConfig(n_classes=5, feature_dim=8, finetune_steps=5))
    x, y = support()
    with torch.inference_mode():
        assert algo.adapt(x, y)(x).shape == (12, 3)


def test_meta_loss_pretrains_on_dataset_class_ids():
    torch.manual_seed(5)
    algo = Baseline(nn.Linear(6, 8), BaselineConfig(n_classes=10, feature_dim=8))
    x, y = support(n_way=2, k_shot=2)
    ep = Episode(x, y, x, y, class_ids=torch.tensor([7, 2]))
    loss, _ = algo.meta_loss(EpisodeBatch.stack([ep]))
    global_y = torch.tensor([7, 7, 2, 2])
    expected, _ = algo.pretrain_loss(torch.cat([x, x]), torch.cat([global_y, global_y]))
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="no class_ids"):
        algo.meta_loss(EpisodeBatch.stack([Episode(x, y, x, y)]))
    with pytest.raises(ValueError, match="set BaselineConfig.n_classes"):
        algo.pretrain_loss(x, torch.tensor([0, 1, 2, 12]))


def test_baseline_needs_the_number_of_classes():
    with pytest.raises(ValueError, match="n_classes"):
        Baseline(nn.Linear(2, 2), BaselineConfig(feature_dim=2))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_pretrained_backbone_loads_from_a_checkpoint(tmp_path, suffix):
    torch.manual_seed(6)
    trained = Baseline(Conv4(in_channels=1, hidden=4, norm="group"), BaselineConfig(n_classes=5))
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(trained.state_dict(), str(path))  # a whole Baseline: keys "backbone.*", "head.*"
    else:
        torch.save({"state_dict": trained.backbone.state_dict()}, path)  # the bare backbone
    fresh = Conv4(in_channels=1, hidden=4, norm="group")
    load_backbone(fresh, path)
    for k, v in trained.backbone.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_mismatching_checkpoint_is_refused_with_what_differs(tmp_path):
    torch.save(Conv4(in_channels=1, hidden=4).state_dict(), tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"does not match.*shape mismatches.*same architecture"):
        load_backbone(Conv4(in_channels=1, hidden=8), tmp_path / "small.pt")
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"does not match.*missing"):
        load_backbone(Conv4(in_channels=1, hidden=4), tmp_path / "other.pt")


def test_checkpoints_with_code_are_not_executed(tmp_path):
    torch.save({"weights": torch.zeros(2), "obj": Scaled(nn.Linear(1, 1), 2.0)}, tmp_path / "pickled.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_backbone(nn.Linear(1, 1), tmp_path / "pickled.pt")


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: avoid oversubscribing the shared cores
    yield
    torch.set_num_threads(n)


def test_pretraining_on_minibatches_of_a_dataset_transfers_to_new_classes(one_thread):
    """Non-episodic pretraining (the paper's) on 64 blob classes; fine-tune heads on 20 unseen ones."""
    from test_metric_common import Blobs, test_accuracy

    from metalearn.data import ArrayDataset
    from metalearn.train.pretrain import pretrain

    torch.manual_seed(7)
    train, test = Blobs(64, seed=1), Blobs(20, seed=2)
    x = train.draw(torch.arange(64), 30)
    dataset = ArrayDataset(x.numpy(), torch.arange(64).repeat_interleave(30).numpy())
    for head in ("linear", "cosine"):
        backbone = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16))
        algo = Baseline(backbone, BaselineConfig(n_classes=64, feature_dim=16, head=head, scale=10.0))
        before = test_accuracy(algo, test)
        history = pretrain(algo, dataset, steps=150, batch_size=64, lr=1e-2)
        assert history[-1]["accuracy"] > history[0]["accuracy"]
        assert test_accuracy(algo, test) >= 0.95 > before
    with pytest.raises(ValueError, match="n_classes"):
        pretrain(Baseline(nn.Linear(32, 4), BaselineConfig(n_classes=10, feature_dim=4)), dataset, steps=1)


def test_pretrain_shows_progress_on_stderr_and_prints_nothing(capsys):
    """The pretraining loop reports through a tqdm bar (stderr), as `metalearn train` does."""
    from metalearn.data import ArrayDataset
    from metalearn.train.pretrain import pretrain

    dataset = ArrayDataset(torch.randn(40, 6).numpy(), torch.arange(4).repeat_interleave(10).numpy())
    algo = Baseline(nn.Linear(6, 5), BaselineConfig(n_classes=4, feature_dim=5))
    history = pretrain(algo, dataset, steps=3, batch_size=8, progress=True)
    out = capsys.readouterr()
    assert len(history) == 3 and out.out == ""
    assert "pretrain" in out.err and "3/3" in out.err
    pretrain(algo, dataset, steps=2, batch_size=8, progress=False)
    assert capsys.readouterr().err == ""
