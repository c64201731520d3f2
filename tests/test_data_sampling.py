import numpy as np
import pytest
import torch

from metalearn.data import (
    ArrayDataset,
    EpisodeSampler,
    FixedEpisodes,
    LinearTasks,
    Normalize,
    SinusoidTasks,
    StandardizeBySupport,
)


def labelled_dataset(sizes):
    """Each example is a 2-vector (class, position within class), so episodes can be checked exactly."""
    rows = [(c, j) for c, n in enumerate(sizes) for j in range(n)]
    x = np.array(rows, dtype=np.float32)
    return ArrayDataset(x, x[:, 0].astype(int))


def check_episode(ep, n_way, k, q):
    assert ep.support_x.shape == (n_way * k, 2) and ep.query_x.shape == (n_way * q, 2)
    assert ep.support_y.tolist() == [c for c in range(n_way) for _ in range(k)]
    assert ep.query_y.tolist() == [c for c in range(n_way) for _ in range(q)]
    # every example carries its true class: remapped label -> class_ids must agree
    assert torch.equal(ep.support_x[:, 0].long(), ep.class_ids[ep.support_y])
    assert torch.equal(ep.query_x[:, 0].long(), ep.class_ids[ep.query_y])
    assert len(set(ep.class_ids.tolist())) == n_way
    support = {tuple(r) for r in ep.support_x.tolist()}
    query = {tuple(r) for r in ep.query_x.tolist()}
    assert len(support) == n_way * k and len(query) == n_way * q and not support & query


@pytest.mark.parametrize("sizes", [[10] * 8, [7, 12, 9, 30, 7, 8]])
@pytest.mark.parametrize("n_way", [2, 5])
def test_episode_shapes_labels_and_disjoint_sets(sizes, n_way):
    if n_way > len(sizes):
        pytest.skip("more ways than classes")
    sampler = EpisodeSampler(labelled_dataset(sizes), n_way, k_shot=2, n_query=5, seed=3)
    batch = sampler.sample_batch(16)
    assert batch.class_ids.shape == (16, n_way)
    for ep in batch:
        check_episode(ep, n_way, 2, 5)


def test_all_classes_and_examples_get_drawn():
    sizes = [4, 9, 5, 6, 4]
    sampler = EpisodeSampler(labelled_dataset(sizes), 3, 1, 3, seed=0)
    seen_classes, seen_rows = set(), set()
    for ep in sampler.sample_batch(300):
        seen_classes |= set(ep.class_ids.tolist())
        seen_rows |= {tuple(r) for r in torch.cat([ep.support_x, ep.query_x]).tolist()}
    assert seen_classes == set(range(5))
    assert len(seen_rows) == sum(sizes)  # padding is never sampled and every example is reachable


def test_many_way_path_also_distinct():
    ds = labelled_dataset([5] * 12)
    for ep in EpisodeSampler(ds, 10, 1, 1, seed=0).sample_batch(20):
        check_episode(ep, 10, 1, 1)


def test_same_seed_same_episodes_other_seed_other_episodes():
    ds = labelled_dataset([10] * 20)
    a = EpisodeSampler(ds, 5, 1, 3, seed=7).sample_batch(8)
    b = EpisodeSampler(ds, 5, 1, 3, seed=7).sample_batch(8)
    c = EpisodeSampler(ds, 5, 1, 3, seed=8).sample_batch(8)
    d = EpisodeSampler(ds, 5, 1, 3, seed=7, rank=1).sample_batch(8)
    assert torch.equal(a.query_x, b.query_x) and torch.equal(a.class_ids, b.class_ids)
    assert not torch.equal(a.class_ids, c.class_ids)
    assert not torch.equal(a.class_ids, d.class_ids)


def test_state_dict_round_trip_continues_the_sequence():
    ds = labelled_dataset([10] * 20)
    s = EpisodeSampler(ds, 5, 1, 3, seed=1)
    s.sample_batch(4)
    state = s.state_dict()
    expected = [s.sample_batch(4) for _ in range(3)]
    t = EpisodeSampler(ds, 5, 1, 3, seed=1)
    t.load_state_dict(state)
    assert t.n_sampled == 4
    for e in expected:
        assert torch.equal(t.sample_batch(4).support_x, e.support_x)
    with pytest.raises(ValueError, match="seed"):
        EpisodeSampler(ds, 5, 1, 3, seed=2).load_state_dict(state)


def test_fixed_episodes_identical_across_constructions():
    ds = labelled_dataset([10] * 20)
    a = FixedEpisodes(ds, 5, 1, 3, n_episodes=50, seed=11)
    b = FixedEpisodes(ds, 5, 1, 3, n_episodes=50, seed=11)
    assert a.fingerprint == b.fingerprint and len(a) == 50
    assert all(torch.equal(x.query_x, y.query_x) for x, y in zip(a, b))
    assert torch.equal(a[49].support_x, list(a)[49].support_x) and torch.equal(a[-1].support_x, a[49].support_x)
    batches = list(a.batches(16))
    assert [len(x) for x in batches] == [16, 16, 16, 2]
    assert FixedEpisodes(ds, 5, 1, 3, n_episodes=50, seed=12).fingerprint != a.fingerprint
    assert a.describe()["n_episodes"] == 50
    with pytest.raises(IndexError):
        a[50]


def test_infeasible_settings_name_the_fix():
    ds = labelled_dataset([10, 10, 3, 10])
    with pytest.raises(ValueError, match="only 4 classes"):
        EpisodeSampler(ds, 5, 1, 1)
    with pytest.raises(ValueError, match=r"class '2' has only 3 examples"):
        EpisodeSampler(ds, 2, 2, 2)
    for bad in ({"k_shot": 0}, {"n_query": 0}, {"k_shot": -1}):
        kwargs = {"k_shot": 1, "n_query": 1, **bad}
        with pytest.raises(ValueError, match="at least 1"):
            EpisodeSampler(ds, 2, **kwargs)
    with pytest.raises(ValueError, match="at least 2"):
        EpisodeSampler(ds, 1, 1, 1)
    with pytest.raises(TypeError, match="n_way must be an int"):
        EpisodeSampler(ds, 2.5, 1, 1)
    with pytest.raises(ValueError, match="n_way=None"):
        EpisodeSampler(SinusoidTasks(), 5, 1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        FixedEpisodes(ds, 2, 1, 1, n_episodes=0, seed=0)


@pytest.mark.parametrize("family", [SinusoidTasks(), LinearTasks()])
def test_regression_families(family):
    sampler = EpisodeSampler(family, None, k_shot=5, n_query=10, seed=0)
    batch = sampler.sample_batch(6)
    assert batch.support_x.shape == (6, 5, 1) and batch.query_y.shape == (6, 10, 1)
    assert not batch.is_classification and batch.class_ids is None
    x = torch.cat([batch.support_x, batch.query_x], 1)
    y = torch.cat([batch.support_y, batch.query_y], 1)
    assert torch.allclose(family.function(batch.task_params, x), y)
    assert x.min() >= -5 and x.max() <= 5
    fixed = FixedEpisodes(family, None, 5, 10, n_episodes=7, seed=3)
    assert len(list(fixed.batches(3))) == 3 and fixed[6].query_x.shape == (10, 1)


def test_sinusoid_parameter_ranges_follow_maml():
    params = SinusoidTasks().sample_params(5000, torch.Generator().manual_seed(0))
    amp, phase = params[:, 0], params[:, 1]
    assert 0.1 <= amp.min() < 0.2 and 4.9 < amp.max() <= 5.0
    assert 0 <= phase.min() < 0.05 and np.pi - 0.05 < phase.max() <= np.pi
    with pytest.raises(ValueError, match="low <= high"):
        SinusoidTasks(amplitude_range=(5.0, 0.1))


def test_transforms_use_support_statistics_only():
    ds = ArrayDataset(torch.randn(40, 3) * 4 + 2, np.repeat(np.arange(4), 10))
    plain = EpisodeSampler(ds, 2, 3, 3, seed=0).sample_batch(5)
    std = EpisodeSampler(ds, 2, 3, 3, seed=0, transform=StandardizeBySupport()).sample_batch(5)
    s = std.support_x.reshape(5, -1)
    assert torch.allclose(s.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(s.std(1, unbiased=False), torch.ones(5), atol=1e-4)
    mean = plain.support_x.reshape(5, -1).mean(1)[:, None, None]
    sd = plain.support_x.reshape(5, -1).std(1, unbiased=False)[:, None, None]
    assert torch.allclose(std.query_x, (plain.query_x - mean) / (sd + 1e-6), atol=1e-5)
    norm = EpisodeSampler(ds, 2, 3, 3, seed=0, transform=Normalize([1, 2, 3], [2, 2, 2])).sample_batch(5)
    assert torch.allclose(norm.query_x, (plain.query_x - torch.tensor([1.0, 2, 3])) / 2)
    with pytest.raises(ValueError, match="positive"):
        Normalize([0.0], [0.0])


def test_integer_examples_keep_their_dtype_through_episodes():
    """Token ids (int64, beyond float32's exact range) reach the Episode unchanged."""
    from metalearn.data.base import ClassDataset

    n, length = 60, 5
    labels = np.arange(n) % 6
    # row i holds 2**40 + i*length + j: any float32 cast would round these ids
    ids = (2**40 + np.arange(n * length, dtype=np.int64)).reshape(n, length)
    ds = ClassDataset(ids, labels, [f"c{c}" for c in range(6)])
    ep = EpisodeSampler(ds, n_way=3, k_shot=2, n_query=3, seed=0).sample()
    assert ep.support_x.dtype == ep.query_x.dtype == torch.int64
    for x, y in ((ep.support_x, ep.support_y), (ep.query_x, ep.query_y)):
        rows = (x[:, 0] - 2**40) // length
        assert torch.equal(x, torch.from_numpy(ids)[rows])  # exactly the stored rows
        assert torch.equal(torch.from_numpy(labels)[rows], ep.class_ids[y])
    assert ds.gather(torch.tensor([0])).dtype == torch.int64
    small = ClassDataset(ids.astype(np.int32) % 1000, labels, [f"c{c}" for c in range(6)])
    assert small.gather(torch.tensor([1, 2])).dtype == torch.int32
    # floats and images as before: float64 -> float32, uint8 -> float32 in [0, 1]
    doubles = ClassDataset(np.full((2, 3), 0.5), [0, 1], ["a", "b"])
    assert doubles.gather(torch.tensor([0])).dtype == torch.float32
    pixels = ClassDataset(np.full((2, 3), 255, np.uint8), [0, 1], ["a", "b"])
    assert torch.equal(pixels.gather(torch.tensor([1])), torch.ones(1, 3))
