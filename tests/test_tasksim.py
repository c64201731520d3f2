"""Task embeddings (algorithms/task_embedding.py), the task memory and warm starts
(algorithms/warm_start.py); the mixture task family."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from metalearn.algorithms import MAML, MAMLConfig
from metalearn.algorithms.functional import make_forward
from metalearn.algorithms.task_embedding import (
    class_statistics_embedding,
    fit_projection,
    gradient_embedding,
)
from metalearn.algorithms.warm_start import TaskMemory, WarmStartAdapter, build_memory
from metalearn.data.regression import LinearTasks, MixtureTasks, QuadraticTasks, SinusoidTasks
from metalearn.eval import evaluate
from metalearn.models import MLP
from metalearn.optim.update_rules import sgd


@pytest.fixture(autouse=True)
def single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def maml(seed: int = 0, hidden=(16,)) -> MAML:
    torch.manual_seed(seed)
    return MAML(MLP(1, hidden, out_features=1), MAMLConfig(inner_lr=0.02, inner_steps=1))


# ----------------------------------------------------------------- embeddings


def test_class_statistics_are_order_and_label_invariant():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(12, 5, generator=g), torch.arange(4).repeat(3)
    e = class_statistics_embedding(z, y, stats=("mean", "spread", "std"))
    assert e.shape == (15,)
    perm = torch.randperm(12, generator=g)
    torch.testing.assert_close(class_statistics_embedding(z[perm], y[perm], stats=("mean", "spread", "std")), e)
    relabel = torch.tensor([2, 3, 1, 0])
    torch.testing.assert_close(class_statistics_embedding(z, relabel[y], stats=("mean", "spread", "std")), e)
    # the within-class std is the population std of each class, averaged over classes
    ref = torch.stack([z[y == c].std(0, correction=0) for c in range(4)]).mean(0)
    torch.testing.assert_close(e[10:], ref)


def test_std_statistic_with_one_example_per_class_names_the_fix():
    z, y = torch.randn(5, 3), torch.arange(5)
    assert class_statistics_embedding(z, y).shape == (6,)  # mean and spread work with 1 shot
    with pytest.raises(ValueError, match="k_shot >= 2"):
        class_statistics_embedding(z, y, stats=("mean", "std"))
    with pytest.raises(ValueError, match="unknown task statistics"):
        class_statistics_embedding(z, y, stats=("median",))


def test_gradient_embedding_matches_autograd_and_vmap():
    learner = maml()
    forward, params = make_forward(learner.backbone), dict(learner.backbone.named_parameters())
    batch = SinusoidTasks().sample_batch(3, 5, 1, torch.Generator().manual_seed(0))
    e = gradient_embedding(forward, params, batch.support_x[0], batch.support_y[0])
    loss = torch.nn.functional.mse_loss(learner.backbone(batch.support_x[0]), batch.support_y[0])
    ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))])
    torch.testing.assert_close(e, ref)
    batched = vmap(lambda sx, sy: gradient_embedding(forward, params, sx, sy))(batch.support_x, batch.support_y)
    torch.testing.assert_close(batched[0], e)


# ----------------------------------------------------------------- memory and retrieval


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_retrieval_returns_the_planted_nearest_task(metric):
    g = torch.Generator().manual_seed(1)
    keys = torch.randn(50, 8, generator=g)
    memory = TaskMemory(metric=metric, temperature=0.5)
    memory.add(keys[:30], {"w": torch.arange(30.0)[:, None]})
    memory.add(keys[30:], {"w": torch.arange(30.0, 50.0)[:, None]})
    query = keys[37] + 0.01 * torch.randn(8, generator=g)
    idx, w = memory.query(query, k=5)
    assert idx[0].item() == 37 and len(memory) == 50
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and (w[:-1] >= w[1:]).all()
    start = memory.warm_start(query, k=5)["w"]
    torch.testing.assert_close(start, (w * idx.float()).sum()[None])


def test_memory_errors_name_the_fix():
    memory = TaskMemory()
    with pytest.raises(ValueError, match="empty.*memory.add"):
        memory.query(torch.randn(4), k=1)
    memory.add(torch.randn(3, 4), {"w": torch.randn(3, 2)})
    with pytest.raises(ValueError, match="dimension 6 .* dimension 4.*same backbone"):
        memory.query(torch.randn(6), k=1)
    with pytest.raises(ValueError, match="dimension 5"):
        memory.add(torch.randn(2, 5), {"w": torch.randn(2, 2)})
    with pytest.raises(ValueError, match="different names"):
        memory.add(torch.randn(2, 4), {"v": torch.randn(2, 2)})
    with pytest.raises(ValueError, match="unknown metric"):
        TaskMemory(metric="manhattan")


def test_learned_projection_recovers_the_relevant_directions():
    """Only 2 of 10 embedding coordinates say where the adapted parameters are; the others are
    loud noise. The fitted projection makes nearest neighbours agree with the targets' ones."""
    g = torch.Generator().manual_seed(2)
    signal = torch.randn(120, 2, generator=g)
    emb = torch.cat([signal, 3 * torch.randn(120, 8, generator=g)], 1)
    targets = signal @ torch.tensor([[2.0, 0.5], [-1.0, 1.5]])

    def agreement(z):
        d = torch.cdist(z, z) + torch.eye(len(z)) * 1e9
        t = torch.cdist(targets, targets) + torch.eye(len(z)) * 1e9
        return (d.argmin(1) == t.argmin(1)).float().mean().item()

    proj = fit_projection(emb, targets, dim=2, steps=300, lr=0.05)
    assert proj.shape == (10, 2)
    assert agreement(emb @ proj) > agreement(emb) + 0.3


def test_build_memory_vmap_equals_loop():
    learner = maml()
    batch = LinearTasks().sample_batch(4, 5, 5, torch.Generator().manual_seed(3))
    forward, meta = make_forward(learner.backbone), dict(learner.backbone.named_parameters())

    def embed(sx, sy):
        return gradient_embedding(forward, meta, sx, sy)

    a = build_memory(learner, batch, embed, 3, sgd(0.01), task_mode="vmap")
    b = build_memory(learner, batch, embed, 3, sgd(0.01), task_mode="loop")
    torch.testing.assert_close(a.keys(), b.keys())
    for k, v in a.params().items():
        torch.testing.assert_close(v, b.params()[k])


# ----------------------------------------------------------------- warm starts


def test_warm_start_from_the_meta_init_is_plain_maml():
    learner = maml()
    meta = {k: v.detach() for k, v in learner.backbone.named_parameters()}
    memory = TaskMemory()
    memory.add(torch.ones(3), meta)
    adapter = WarmStartAdapter(learner, memory, lambda sx, sy: torch.ones(3), k=1)
    ep = LinearTasks().sample_batch(1, 5, 7, torch.Generator().manual_seed(4))[0]
    torch.testing.assert_close(adapter.adapt(ep.support_x, ep.support_y)(ep.query_x),
                               learner.adapt(ep.support_x, ep.support_y)(ep.query_x))
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    adapter.adapt(ep.support_x, ep.support_y)
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in before.items())


def test_warm_start_needs_a_memory_of_the_same_model():
    memory = TaskMemory()
    memory.add(torch.ones(3), {k: v.detach() for k, v in maml(hidden=(8,)).backbone.named_parameters()})
    with pytest.raises(ValueError, match="different model.*build_memory"):
        WarmStartAdapter(maml(hidden=(16,)), memory, lambda sx, sy: torch.ones(3))


def test_warm_starts_from_similar_tasks_beat_the_shared_start():
    """Two families (lines and quadratics) from one untrained start: after the same single step,
    starting from the retrieved similar tasks gives a lower query error."""
    learner = maml(hidden=(32,))
    forward = make_forward(learner.backbone)
    meta = {k: v.detach() for k, v in learner.backbone.named_parameters()}

    def embed(sx, sy):
        return gradient_embedding(forward, meta, sx, sy)

    family = MixtureTasks(families=(LinearTasks(), QuadraticTasks()))
    stored = family.sample_batch(300, 10, 10, torch.Generator().manual_seed(5))
    memory = build_memory(learner, stored, embed, 300, sgd(0.02), TaskMemory(temperature=0.05))
    test = list(family.sample_batch(40, 10, 20, torch.Generator().manual_seed(6)))
    plain = evaluate(learner, test)
    warm = evaluate(WarmStartAdapter(learner, memory, embed, k=5), test)
    assert warm.mean < 0.8 * plain.mean, (warm.mean, plain.mean)  # 2.6 vs 3.9 at this seed


# ----------------------------------------------------------------- task families


def test_mixture_records_the_family_and_follows_it():
    mix = MixtureTasks(families=(SinusoidTasks(), LinearTasks(), QuadraticTasks()), weights=(1, 1, 2))
    batch = mix.sample_batch(200, 5, 5, torch.Generator().manual_seed(7))
    fam = batch.task_params[:, 0].long()
    counts = torch.bincount(fam, minlength=3)
    assert counts.sum() == 200 and counts[2] > counts[0] and counts[2] > counts[1]
    for i, f in enumerate(mix.families):
        m = fam == i
        p = batch.task_params[m, 1 : 1 + len(f.param_names)]
        torch.testing.assert_close(batch.query_y[m], f.function(p, batch.query_x[m]))
    again = mix.sample_batch(200, 5, 5, torch.Generator().manual_seed(7))
    assert torch.equal(again.query_y, batch.query_y)


def test_mixture_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="by keyword"):
        MixtureTasks((SinusoidTasks(), LinearTasks()))
    with pytest.raises(ValueError, match="at least one family"):
        MixtureTasks()
    with pytest.raises(ValueError, match="one per family"):
        MixtureTasks(families=(SinusoidTasks(),), weights=(1.0, 2.0))
