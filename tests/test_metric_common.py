"""Contract tests shared by every metric-based learner (ProtoNet, Matching, Relation, Baseline).

Parametrised over the methods and their main options: each learns a separable Gaussian-blob
task, adapt never changes the meta-parameters, predictions are equivariant to relabelling the
classes, bad support sets fail with errors naming the fix, and every metalearn backbone works.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from metalearn.algorithms.baseline import Baseline, BaselineConfig
from metalearn.algorithms.matching import MatchingConfig, MatchingNet
from metalearn.algorithms.protonet import ProtoNet, ProtoNetConfig
from metalearn.algorithms.relation import RelationConfig, RelationNet
from metalearn.models import MLP, Conv4, FeatureMaps, ResNet12
from metalearn.types import Episode, EpisodeBatch

DIM, INFO = 32, 8  # blob inputs: INFO informative coordinates, the rest loud noise


class Blobs:
    """Gaussian-blob classes: a class mean on the first INFO coordinates, noise everywhere.

    The noise on the uninformative coordinates is large, so a random embedding mixes it into
    every feature and classifies poorly; a learner has to find the informative subspace.
    """

    def __init__(self, n_classes: int, seed: int, image: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.means = torch.zeros(n_classes, DIM)
        self.means[:, :INFO] = 3.0 * torch.randn(n_classes, INFO, generator=g)
        self.noise = torch.full((DIM,), 2.0)
        self.noise[:INFO] = 0.3
        self.image, self.g = image, g

    def draw(self, classes: torch.Tensor, per_class: int) -> torch.Tensor:
        x = self.means[classes].repeat_interleave(per_class, 0)
        x = x + self.noise * torch.randn(x.shape, generator=self.g)
        return x.view(-1, 2, 4, 4) if self.image else x

    def episode(self, n_way: int, k_shot: int, n_query: int) -> Episode:
        classes = torch.randperm(len(self.means), generator=self.g)[:n_way]
        labels = torch.arange(n_way)
        return Episode(self.draw(classes, k_shot), labels.repeat_interleave(k_shot),
                       self.draw(classes, n_query), labels.repeat_interleave(n_query), class_ids=classes)


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread avoids oversubscription on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_algo(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name.startswith("relation"):
        backbone = nn.Sequential(nn.Conv2d(2, 16, 1), nn.ReLU(), nn.Conv2d(16, 8, 1))
        return RelationNet(backbone, RelationConfig(feature_shape=(8, 4, 4), hidden_channels=16, norm="none"))
    backbone = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, 16))
    if name == "protonet":
        return ProtoNet(backbone)
    if name == "protonet_cosine":
        return ProtoNet(backbone, ProtoNetConfig(distance="cosine"))
    if name == "matching":
        return MatchingNet(backbone, MatchingConfig(temperature=10.0))
    if name == "matching_fce":
        return MatchingNet(backbone, MatchingConfig(fce=True, feature_dim=16, fce_steps=2, temperature=10.0))
    if name == "baseline":
        return Baseline(backbone, BaselineConfig(n_classes=64, feature_dim=16))
    if name == "baseline_pp":
        return Baseline(backbone, BaselineConfig(n_classes=64, feature_dim=16, head="cosine", scale=10.0))
    raise KeyError(name)


METHODS = ["protonet", "protonet_cosine", "matching", "matching_fce", "relation", "baseline", "baseline_pp"]


def test_accuracy(algo: nn.Module, blobs: Blobs, n: int = 20) -> float:
    accs = []
    with torch.no_grad():
        for _ in range(n):
            ep = blobs.episode(5, 5, 10)
            pred = algo.adapt(ep.support_x, ep.support_y)(ep.query_x).argmax(-1)
            accs.append((pred == ep.query_y).float().mean().item())
    return sum(accs) / len(accs)


test_accuracy.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("name", METHODS)
def test_learns_separable_blobs(name):
    """Meta-train on 64 classes, test on 20 unseen ones: >= 95% where a random embedding is far lower."""
    algo = make_algo(name)
    image = name.startswith("relation")
    train, test = Blobs(64, seed=1, image=image), Blobs(20, seed=2, image=image)
    before = test_accuracy(algo, test)
    opt = torch.optim.Adam(algo.parameters(), lr=1e-2)
    for _ in range(60):
        batch = EpisodeBatch.stack([train.episode(5, 5, 10) for _ in range(2)])
        loss, metrics = algo.meta_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = test_accuracy(algo, test)
    assert after >= 0.95, (before, after)
    assert before < 0.9, f"the task is too easy to show learning: {before}"


@pytest.mark.parametrize("name", METHODS)
def test_adapt_does_not_change_meta_parameters(name):
    algo = make_algo(name)
    ep = Blobs(10, seed=3, image=name.startswith("relation")).episode(5, 2, 3)
    before = copy.deepcopy(algo.state_dict())
    logits = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert logits.shape == (15, 5)
    after = algo.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(p.grad is None for p in algo.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_predictions_follow_a_relabelling_of_the_classes(name):
    """Permuting class labels permutes the logit columns; shuffling the support changes nothing.

    Full context embeddings read the support set as a sequence (a BiLSTM), so for them only
    the labels are permuted, not the order.
    """
    algo = make_algo(name)
    ep = Blobs(10, seed=4, image=name.startswith("relation")).episode(4, 3, 2)
    perm = torch.tensor([2, 0, 3, 1])
    shuffle = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    if name == "matching_fce":
        shuffle = torch.arange(12)
    with torch.no_grad():
        ref = algo.adapt(ep.support_x, ep.support_y)(ep.query_x)
        out = algo.adapt(ep.support_x[shuffle], perm[ep.support_y][shuffle])(ep.query_x)
    # Baseline fits its head with 100 Adam steps, which carry the rounding of the reordered sums.
    tol = 1e-3 if name.startswith("baseline") else 1e-5
    torch.testing.assert_close(out[:, perm], ref, rtol=1e-4, atol=tol)


@pytest.mark.parametrize("name", METHODS)
def test_meta_loss_is_deterministic_and_reaches_every_parameter(name):
    algo = make_algo(name)
    batch = EpisodeBatch.stack([Blobs(10, seed=5, image=name.startswith("relation")).episode(5, 2, 3)
                                for _ in range(2)])
    loss, metrics = algo.meta_loss(batch)
    loss.backward()
    assert 0.0 <= metrics["accuracy"] <= 1.0 and torch.isfinite(loss)
    missing = [n for n, p in algo.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    assert torch.equal(algo.meta_loss(batch)[0], loss.detach())


@pytest.mark.parametrize("name", METHODS)
def test_support_missing_a_query_class_is_refused(name):
    algo = make_algo(name)
    ep = Blobs(10, seed=6, image=name.startswith("relation")).episode(3, 2, 2)
    keep = ep.support_y != 1  # class 1 has no support example but is in the query
    bad = EpisodeBatch.stack([Episode(ep.support_x[keep], ep.support_y[keep], ep.query_x, ep.query_y)])
    if name.startswith("baseline"):  # pretraining uses dataset class ids; its adapt still checks
        with pytest.raises(ValueError, match=r"class\(es\) \[1\].*no support example"):
            algo.adapt(ep.support_x[keep], ep.support_y[keep])
        return
    with pytest.raises(ValueError, match=r"class\(es\) \[1\].*no support example"):
        algo.meta_loss(bad)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\].*no support example"):
        algo.adapt(ep.support_x[keep], ep.support_y[keep])


@pytest.mark.parametrize("name", METHODS)
def test_k_shot_zero_is_refused(name):
    algo = make_algo(name)
    ep = Blobs(10, seed=7, image=name.startswith("relation")).episode(3, 1, 2)
    empty_x, empty_y = ep.support_x[:0], ep.support_y[:0]
    with pytest.raises(ValueError, match="k_shot=0.*k_shot >= 1"):
        algo.adapt(empty_x, empty_y)
    if not name.startswith("baseline"):
        with pytest.raises(ValueError, match="k_shot=0"):
            algo.meta_loss(EpisodeBatch.stack([Episode(empty_x, empty_y, ep.query_x, ep.query_y)]))


def metalearn_backbone(kind: str, norm: str) -> nn.Module:
    if kind == "conv4":
        return Conv4(in_channels=1, hidden=8, norm=norm, image_size=28)
    if kind == "resnet12":
        return ResNet12(in_channels=1, channels=(4, 4, 8, 8), norm=norm)
    return MLP(28 * 28, (16, 16), out_features=None, norm=norm)


@pytest.mark.parametrize("kind", ["conv4", "mlp", "resnet12"])
@pytest.mark.parametrize("norm", ["transductive", "task", "group", "none"])
def test_every_method_runs_on_every_metalearn_backbone(kind, norm):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ep = Episode(torch.rand(6, 1, 28, 28, generator=g), torch.arange(3).repeat_interleave(2),
                 torch.rand(6, 1, 28, 28, generator=g), torch.arange(3).repeat_interleave(2),
                 class_ids=torch.tensor([4, 0, 2]))
    backbone = metalearn_backbone(kind, norm)
    with torch.no_grad():
        dim = backbone(ep.support_x).shape[1]
    algos = [
        ProtoNet(backbone), ProtoNet(backbone, ProtoNetConfig(distance="cosine")),
        MatchingNet(backbone, MatchingConfig(fce=True, feature_dim=dim)),
        RelationNet(FeatureMaps(backbone, (dim, 1, 1)), RelationConfig(hidden_channels=4)),
        Baseline(backbone, BaselineConfig(n_classes=5, feature_dim=dim, finetune_steps=3)),
    ]
    for algo in algos:
        loss, _ = algo.meta_loss(EpisodeBatch.stack([ep]))
        loss.backward()
        assert torch.isfinite(loss)
        with torch.no_grad():
            assert algo.adapt(ep.support_x, ep.support_y)(ep.query_x).shape == (6, 3)


# ----------------------------------------------------------------- seams for the new domains


def assert_list_is_mean_of_episodes(algo: nn.Module, episodes: list[Episode]) -> None:
    """``meta_loss`` of a list of (unequal) episodes is the mean of its single-episode losses,
    metrics and gradients."""
    def run(batch):
        algo.zero_grad(set_to_none=True)
        loss, metrics = algo.meta_loss(batch)
        loss.backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in algo.parameters()]
        return loss.detach(), metrics, grads

    loss, metrics, grads = run(episodes)
    singles = [run(EpisodeBatch.stack([ep])) for ep in episodes]
    torch.testing.assert_close(loss, torch.stack([s[0] for s in singles]).mean())
    for key, value in metrics.items():
        assert value == pytest.approx(sum(s[1][key] for s in singles) / len(singles), rel=1e-5), key
    for i, g in enumerate(grads):
        torch.testing.assert_close(g, sum(s[2][i] for s in singles) / len(singles), rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads)


assert_list_is_mean_of_episodes.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("name", METHODS)
def test_a_list_of_episodes_of_different_shapes_is_the_mean_of_its_episodes(name):
    """A meta-batch may mix n_way / k_shot / n_query: each task's n_way is read from the task."""
    blobs = Blobs(64, seed=8, image=name.startswith("relation"))
    episodes = [blobs.episode(3, 1, 2), blobs.episode(5, 2, 1), blobs.episode(2, 3, 4)]
    assert_list_is_mean_of_episodes(make_algo(name), episodes)
    with pytest.raises(TypeError, match=r"single Episode.*\[episode\]"):
        make_algo(name).meta_loss(episodes[0])


class TokenEncoder(nn.Module):
    """A text encoder as users write one: int64 token ids ``(n, L)`` -> ``(n, d)``; no n_support."""

    def __init__(self, vocab: int = 50, dim: int = 12):
        super().__init__()
        self.embed, self.out = nn.Embedding(vocab, dim), nn.Linear(dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids).mean(1))


def token_episode(n_way: int, k_shot: int, n_query: int, length: int, seed: int) -> Episode:
    """Each class owns a band of 10 token ids; sentences draw their tokens from their class's band."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randperm(5, generator=g)[:n_way]

    def draw(per: int) -> torch.Tensor:
        base = (10 * classes).repeat_interleave(per)[:, None]
        return base + torch.randint(0, 10, (n_way * per, length), generator=g)

    labels = torch.arange(n_way)
    return Episode(draw(k_shot), labels.repeat_interleave(k_shot), draw(n_query),
                   labels.repeat_interleave(n_query), class_ids=classes)


def test_plain_encoders_of_token_ids_work_as_backbones():
    """An nn.Module with forward(x) over int64 ids needs no n_support, out_dim or float input."""
    torch.manual_seed(0)
    encoder = TokenEncoder()
    algos = [
        ProtoNet(encoder), MatchingNet(encoder, MatchingConfig(fce=True, feature_dim=12)),
        RelationNet(FeatureMaps(encoder, (12, 1, 1)), RelationConfig(hidden_channels=4)),
        Baseline(encoder, BaselineConfig(n_classes=5, feature_dim=12, finetune_steps=3)),
    ]
    batch = EpisodeBatch.stack([token_episode(3, 2, 2, length=7, seed=s) for s in range(2)])
    unequal = [token_episode(3, 2, 2, length=7, seed=0), token_episode(4, 1, 3, length=9, seed=1)]
    for algo in algos:
        assert batch.support_x.dtype == torch.int64
        for meta_batch in (batch, unequal):
            algo.zero_grad(set_to_none=True)
            loss, metrics = algo.meta_loss(meta_batch)
            loss.backward()
            assert torch.isfinite(loss) and 0.0 <= metrics["accuracy"] <= 1.0
            assert encoder.embed.weight.grad is not None and encoder.embed.weight.grad.abs().sum() > 0
        ep = unequal[1]
        with torch.no_grad():
            assert algo.adapt(ep.support_x, ep.support_y)(ep.query_x).shape == (12, 4)
