"""Meta-Dataset episode sampling: each rule against a hand computation, the episodes' shapes over
many seeds, the imbalance of the shots, resume, fingerprints and the multi-source draw."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metalearn.data import ClassDataset
from metalearn.data import metadataset as md
from metalearn.data.metadataset import (
    FlatPool,
    MetaDatasetEpisodes,
    MetaDatasetSampler,
    MultiSourceSampler,
    compute_num_query,
    sample_num_ways,
    sample_shots,
    sample_support_size,
)
from metalearn.data.transforms import Augment
from metalearn.types import EpisodeList


def make_dataset(sizes, item_shape=(2,), dtype=np.float32) -> ClassDataset:
    """Class ``c`` has ``sizes[c]`` examples; example ``i`` stores ``i`` in every feature, so an
    episode's inputs tell which examples were drawn."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n = len(labels)
    data = np.broadcast_to(np.arange(n, dtype=np.float64).reshape(n, *([1] * len(item_shape))),
                           (n, *item_shape)).astype(dtype)
    return ClassDataset(data, labels, [f"class{c}" for c in range(len(sizes))])


# ----------------------------------------------------------------------------- the rules


def test_num_ways_is_uniform_on_its_range():
    g = torch.Generator().manual_seed(0)
    ways = np.array([sample_num_ways(8, g) for _ in range(4000)])
    assert set(ways.tolist()) == {5, 6, 7, 8}
    counts = np.bincount(ways, minlength=9)[5:]
    assert np.abs(counts / 4000 - 0.25).max() < 0.03
    big = np.array([sample_num_ways(1000, g) for _ in range(3000)])
    assert big.min() == 5 and big.max() == 50
    assert sample_num_ways(5, g) == 5  # a single value when n_classes == min_ways
    assert {sample_num_ways(30, g, min_ways=2, max_ways=3) for _ in range(100)} == {2, 3}


def test_num_ways_too_few_classes_names_the_source():
    with pytest.raises(ValueError, match=r"'cub'.*4 classes.*min_ways=5"):
        sample_num_ways(4, torch.Generator(), name="cub")


def test_num_query_hand_computed():
    assert compute_num_query([40, 7, 100]) == 3  # floor(7 / 2)
    assert compute_num_query([40, 30, 22]) == 10  # capped at max_query
    assert compute_num_query([40, 30, 22], max_query=4) == 4
    assert compute_num_query([2, 2]) == 1
    assert compute_num_query(np.array([21, 21])) == 10


def test_num_query_names_the_small_class():
    with pytest.raises(ValueError, match=r"'zebra'.*1 example.*at least 2"):
        compute_num_query([5, 1, 9], class_names=["a", "zebra", "c"], name="src")


def test_support_size_hand_computed():
    # ceil(0.3 * 5) + ceil(0.3 * 100) + ceil(0.3 * 100) = 2 + 30 + 30
    assert sample_support_size([5, 100, 250], beta=0.3) == 62
    assert sample_support_size([5, 100, 250], beta=0.3, max_per_class=10) == 2 + 3 + 3
    assert sample_support_size([400] * 10, beta=1.0) == 500  # capped
    assert sample_support_size([400] * 10, beta=1.0, max_support=700) == 700
    assert sample_support_size([1, 1, 1, 1, 1], beta=1e-9) == 5  # at least one per class


def test_support_size_errors():
    with pytest.raises(ValueError, match="max_support=3.*5 ways"):
        sample_support_size([10] * 5, beta=0.5, max_support=3)
    with pytest.raises(ValueError, match=r"beta must lie in \(0, 1\]"):
        sample_support_size([10] * 5, beta=0.0)
    with pytest.raises(ValueError, match="example left"):
        sample_support_size([10, 0], beta=0.5)


def test_shots_hand_computed():
    # p = [10 * 2, 30 * 0.5] / 35 = [4/7, 3/7]; S - N = 33 -> floor(18.86) + 1, floor(14.14) + 1
    shots = sample_shots([10, 30], [8, 28], 35, [math.log(2), math.log(0.5)])
    assert shots.tolist() == [8, 15]  # the first capped by its 8 remaining examples
    assert sample_shots([10, 30], [8, 28], 2, [0.0, 0.0]).tolist() == [1, 1]
    assert sample_shots([5, 5, 5], [3, 3, 3], 9, [0.0, 0.0, 0.0]).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="smaller than the 3 ways"):
        sample_shots([5, 5, 5], [3, 3, 3], 2, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="shapes"):
        sample_shots([5, 5], [3, 3, 3], 9, [0.0, 0.0, 0.0])


# ----------------------------------------------------------------------------- episodes


def check_episode(ep, ds: ClassDataset, sampler: MetaDatasetSampler):
    """The rules hold for one episode and its examples are the right ones."""
    sizes = ds.class_sizes()[ep.class_ids.numpy()]
    n_way = ep.n_way
    assert len(set(ep.class_ids.tolist())) == n_way
    # labels: class by class, 0..n_way-1, every query class has support
    shots = torch.bincount(ep.support_y, minlength=n_way).numpy()
    assert (shots >= 1).all()
    assert torch.equal(ep.support_y, torch.arange(n_way).repeat_interleave(torch.from_numpy(shots)))
    q = compute_num_query(sizes, sampler.max_query)
    assert torch.equal(ep.query_y, torch.arange(n_way).repeat_interleave(q))
    remaining = sizes - q
    assert (shots <= remaining).all()
    s = len(ep.support_y)
    # S is at most the budget, and at least what the rules give for the smallest beta
    assert n_way <= s <= min(int(np.minimum(sampler.max_support_per_class, remaining).sum()),
                             sampler.max_support)
    # the examples: distinct, of the right class
    idx = torch.cat([ep.support_x[:, 0], ep.query_x[:, 0]]).long().numpy()
    assert len(np.unique(idx)) == len(idx)
    labels = np.concatenate([ep.support_y.numpy(), ep.query_y.numpy()])
    assert (ds.labels[idx] == ep.class_ids.numpy()[labels]).all()
    return n_way, q, s, shots


@pytest.mark.parametrize("n_classes", [6, 80])
def test_many_episodes_follow_the_rules(n_classes):
    rng = np.random.default_rng(n_classes)
    sizes = rng.integers(2, 60, n_classes)
    ds = make_dataset(sizes)
    sampler = MetaDatasetSampler(ds, seed=3)
    ways = []
    for ep in sampler.sample_batch(300):
        n_way, q, s, shots = check_episode(ep, ds, sampler)
        ways.append(n_way)
        assert q <= 10
    assert min(ways) == 5 and max(ways) == min(50, n_classes)


def test_support_size_reaches_its_cap_and_queries_their_cap():
    ds = make_dataset([400] * 12)
    sampler = MetaDatasetSampler(ds, seed=0)
    sizes = [len(ep.support_y) for ep in sampler.sample_batch(200)]
    # S is capped at 500; the shots sum to at most S (each floor loses less than one)
    assert 500 - 12 <= max(sizes) <= 500 and min(sizes) < 100
    assert all(len(ep.query_y) == 10 * ep.n_way for ep in sampler.sample_batch(20))


def test_shot_imbalance_matches_its_distribution():
    """Two classes of equal size, large S: k_1 / k_2 ~ exp(w_1 - w_2), w ~ U[log .5, log 2], so the
    log-ratio of shots is symmetric around 0 and within +-log 4 (plus rounding)."""
    ds = make_dataset([2000, 2000])
    sampler = MetaDatasetSampler(ds, seed=0, min_ways=2, max_support=2000, max_support_per_class=1000)
    ratios = []
    for _ in range(400):
        plan = sampler.draw_plan()
        if plan.shots.sum() >= 200:  # rounding negligible
            ratios.append(math.log(plan.shots[0] / plan.shots[1]))
    ratios = np.array(ratios)
    assert len(ratios) > 300
    assert abs(ratios.mean()) < 0.1
    assert np.abs(ratios).max() <= math.log(4) + 0.05
    # the difference of two uniforms is triangular on [-log 4, log 4]: |r| > log 2 has probability 1/4
    assert abs((np.abs(ratios) > math.log(2)).mean() - 0.25) < 0.07


def test_shots_follow_class_sizes():
    ds = make_dataset([100, 400] * 3)
    sampler = MetaDatasetSampler(ds, seed=1, max_support=500, max_support_per_class=100)
    small, large = 0, 0
    for _ in range(200):
        plan = sampler.draw_plan()
        sizes = ds.class_sizes()[plan.classes]
        small += plan.shots[sizes == 100].sum()
        large += plan.shots[sizes == 400].sum()
    assert 2.5 < large / small < 4.5  # proportions follow n_c (about 4x), capped by remaining


def test_fixed_special_case_shapes():
    ds = make_dataset([12] * 9, item_shape=(1, 3, 3))
    sampler = MetaDatasetSampler(ds, seed=0, fixed=(5, 2, 4))
    batch = sampler.sample_batch(6)
    assert isinstance(batch, EpisodeList) and batch.n_tasks == 6
    for ep in batch:
        assert tuple(ep.support_x.shape) == (10, 1, 3, 3) and tuple(ep.query_x.shape) == (20, 1, 3, 3)
        assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        assert ep.query_y.tolist() == [c for c in range(5) for _ in range(4)]
        idx = torch.cat([ep.support_x[:, 0, 0, 0], ep.query_x[:, 0, 0, 0]]).long().numpy()
        assert len(np.unique(idx)) == 30
        assert (ds.labels[idx] == ep.class_ids.numpy()[np.r_[ep.support_y, ep.query_y]]).all()


def test_large_classes_take_the_rejection_path(monkeypatch):
    monkeypatch.setattr(md, "_SPARSE_MIN_CLASS", 100)
    ds = make_dataset([2000] * 6 + [15] * 3)  # large and small classes in one episode
    sampler = MetaDatasetSampler(ds, seed=0, max_support_per_class=20)
    seen = np.zeros(len(ds), dtype=np.int64)
    for _ in range(300):
        ep = sampler.sample()
        check_episode(ep, ds, sampler)
        seen[torch.cat([ep.support_x[:, 0], ep.query_x[:, 0]]).long().numpy()] += 1
    large = seen[:2000]  # class 0: every example about equally often (counts ~ Poisson)
    assert large.mean() > 2
    assert 0.8 < large.std() / math.sqrt(large.mean()) < 1.2
    assert abs(large[:1000].mean() - large[1000:].mean()) < 0.25 * large.mean()


def test_pool_that_takes_all_and_bad_pools():
    class Node:
        def __init__(self, classes, draw):
            self.classes, self.draw = np.asarray(classes), draw

        def draw_pool(self, generator):
            return self.classes, self.draw

        def describe(self):
            return {"kind": "node"}

    ds = make_dataset([10] * 20)
    ep = MetaDatasetSampler(ds, pool=Node([3, 7, 1, 9, 11, 12], False)).sample()
    assert ep.class_ids.tolist() == [3, 7, 1, 9, 11, 12]
    ep = MetaDatasetSampler(ds, pool=Node([3, 7, 1, 9, 11, 12], True)).sample()
    assert set(ep.class_ids.tolist()) <= {3, 7, 1, 9, 11, 12} and ep.n_way >= 5
    with pytest.raises(ValueError, match=r"'omni'.*gave 3 classes.*min_ways"):
        MetaDatasetSampler(ds, pool=Node([1, 2, 3], False), name="omni").sample()
    with pytest.raises(ValueError, match=r"'omni' offers 3 classes"):
        MetaDatasetSampler(ds, pool=Node([1, 2, 3], True), name="omni").sample()
    with pytest.raises(ValueError, match="outside"):
        MetaDatasetSampler(ds, pool=Node([1, 2, 3, 4, 99], True)).sample()
    with pytest.raises(ValueError, match="FlatPool has 5 classes"):
        MetaDatasetSampler(ds, pool=FlatPool(5))


def test_augment_uses_the_sampler_generator_and_resumes():
    ds = make_dataset([12] * 8, item_shape=(1, 6, 6))
    a = MetaDatasetSampler(ds, seed=2, augment=Augment(["flip", "crop"], padding=1))
    plain = MetaDatasetSampler(ds, seed=2)
    ep = a.sample()
    assert ep.support_x.shape[1:] == (1, 6, 6)
    assert not torch.equal(ep.support_x, plain.sample().support_x)  # crops moved some images
    state = a.state_dict()
    nxt = a.sample_batch(3)
    a.load_state_dict(state)
    assert all(torch.equal(x.support_x, y.support_x) for x, y in zip(nxt, a.sample_batch(3)))


def test_resume_equals_uninterrupted():
    ds = make_dataset(np.random.default_rng(0).integers(4, 40, 30))
    full = MetaDatasetSampler(ds, seed=5, rank=1)
    expected = [full.sample_batch(4) for _ in range(4)]
    part = MetaDatasetSampler(ds, seed=5, rank=1)
    got = [part.sample_batch(4) for _ in range(2)]
    state = part.state_dict()
    resumed = MetaDatasetSampler(ds, seed=5, rank=1)
    resumed.load_state_dict(state)
    got += [resumed.sample_batch(4) for _ in range(2)]
    assert resumed.n_sampled == 16
    for a, b in zip(expected, got):
        for x, y in zip(a, b):
            assert torch.equal(x.support_x, y.support_x) and torch.equal(x.query_y, y.query_y)
            assert torch.equal(x.class_ids, y.class_ids)
    other_rank = MetaDatasetSampler(ds, seed=5, rank=0).sample()
    assert not torch.equal(other_rank.support_x, expected[0][0].support_x)
    with pytest.raises(ValueError, match="seed=5 rank=1"):
        MetaDatasetSampler(ds, seed=6, rank=1).load_state_dict(state)


# ----------------------------------------------------------------------------- fixed episodes


def test_fixed_episodes_fingerprints():
    ds = make_dataset(np.random.default_rng(1).integers(4, 40, 25))
    a = MetaDatasetEpisodes(ds, 50, seed=7, name="src")
    b = MetaDatasetEpisodes(ds, 50, seed=7, name="src")
    c = MetaDatasetEpisodes(ds, 50, seed=8, name="src")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 64
    assert all(torch.equal(x.support_x, y.support_x) for x, y in zip(a, b))
    # episode i is the sampler's i-th episode
    sampler = MetaDatasetSampler(ds, seed=7)
    for i in range(5):
        ep = sampler.sample()
        assert torch.equal(ep.support_x, a[i].support_x) and torch.equal(ep.query_x, a[i].query_x)
    d = a.describe()
    assert d["protocol"] == "meta-dataset" and d["n_episodes"] == 50 and d["seed"] == 7
    assert d["fingerprint"] == a.fingerprint and d["pool"] == {"kind": "flat", "n_classes": 25}
    assert d["max_ways"] == 50 and d["max_support"] == 500 and d["fixed"] is None
    fixed = MetaDatasetEpisodes(ds, 10, seed=7, fixed=(5, 1, 2))
    assert fixed.fingerprint != a.fingerprint and fixed.describe()["fixed"] == [5, 1, 2]
    assert a[-1].n_way == a[49].n_way
    with pytest.raises(IndexError):
        a[50]
    with pytest.raises(ValueError, match="never augmented"):
        MetaDatasetEpisodes(ds, 5, seed=0, augment=Augment(["flip"]))


def test_fingerprint_is_a_known_function_of_the_plan():
    """The fingerprint hashes the plan only (not Python hash seeds or object ids): recompute it."""
    import hashlib

    ds = make_dataset([6] * 7)
    eps = MetaDatasetEpisodes(ds, 3, seed=0)
    h = hashlib.sha256()
    for i in range(3):
        ep = eps[i]
        shots = torch.bincount(ep.support_y).numpy()
        q = len(ep.query_y) // ep.n_way
        h.update(np.array([ep.n_way, q, len(ep.support_y)], np.int64).tobytes())
        for arr in (ep.class_ids.numpy(), shots, ep.support_x[:, 0].numpy(), ep.query_x[:, 0].numpy()):
            h.update(arr.astype(np.int64).tobytes())
    assert h.hexdigest() == eps.fingerprint


# ----------------------------------------------------------------------------- multi-source


def test_multi_source_frequencies_match_the_weights():
    sources = {name: MetaDatasetSampler(make_dataset([4] * n), seed=i, name=name)
               for i, (name, n) in enumerate([("a", 5), ("b", 6), ("c", 7)])}
    weights = [1.0, 2.0, 5.0]
    multi = MultiSourceSampler(sources, weights, seed=0)
    counts = {name: 0 for name in sources}
    n = 0
    for _ in range(150):
        batch = multi.sample_batch(8)
        assert len(multi.last_sources) == 8
        for ep, src in zip(batch, multi.last_sources):
            assert ep.n_way <= {"a": 5, "b": 6, "c": 7}[src]
            counts[src] += 1
        n += 8
    expected = np.array(weights) / sum(weights) * n
    chi2 = (((np.array(list(counts.values())) - expected) ** 2) / expected).sum()
    assert chi2 < 13.8  # 2 degrees of freedom, p = 0.001
    uniform = MultiSourceSampler(sources, None, seed=1)
    uniform.sample_batch(300)
    freq = np.array([uniform.last_sources.count(s) for s in sources]) / 300
    assert np.abs(freq - 1 / 3).max() < 0.1
    uniform.sample()
    assert len(uniform.last_sources) == 1


def test_multi_source_resume_equals_uninterrupted():
    def build():
        return MultiSourceSampler({"a": MetaDatasetSampler(make_dataset([8] * 6), seed=0),
                                   "b": MetaDatasetSampler(make_dataset([9] * 8), seed=1)},
                                  [1, 1], seed=3)

    full = build()
    expected = [(full.sample_batch(3), list(full.last_sources)) for _ in range(4)]
    part = build()
    got = [(part.sample_batch(3), list(part.last_sources)) for _ in range(2)]
    resumed = build()
    resumed.load_state_dict(part.state_dict())
    got += [(resumed.sample_batch(3), list(resumed.last_sources)) for _ in range(2)]
    for (a, sa), (b, sb) in zip(expected, got):
        assert sa == sb
        assert all(torch.equal(x.support_x, y.support_x) for x, y in zip(a, b))


@pytest.mark.parametrize("weights, message", [
    ([1.0], "1 weights for 2 sources"),
    ([1.0, -1.0], "non-negative"),
    ([0.0, 0.0], "all zero"),
    ([float("nan"), 1.0], "finite"),
])
def test_multi_source_bad_weights_name_the_sources(weights, message):
    sources = {"omniglot": MetaDatasetSampler(make_dataset([4] * 5)),
               "folder": MetaDatasetSampler(make_dataset([4] * 5))}
    with pytest.raises(ValueError, match=message) as err:
        MultiSourceSampler(sources, weights)
    assert "omniglot, folder" in str(err.value)


# ----------------------------------------------------------------------------- bad input


def test_construction_errors_name_the_source_and_the_fix():
    with pytest.raises(ValueError, match=r"'tiny' has 4 classes.*at least min_ways=5"):
        MetaDatasetSampler(make_dataset([5] * 4), name="tiny")
    with pytest.raises(ValueError, match=r"'class2' of source 'src' has 1 example.*subset_classes"):
        MetaDatasetSampler(make_dataset([5, 5, 1, 5, 5, 1]), name="src")
    with pytest.raises(ValueError, match=r"n_way=7 but source 'src' has only 6 classes"):
        MetaDatasetSampler(make_dataset([5] * 6), fixed=(7, 1, 1), name="src")
    with pytest.raises(ValueError, match=r"k_shot \+ n_query = 3 \+ 3 but class 'class1'.*only 5"):
        MetaDatasetSampler(make_dataset([9, 5, 9]), fixed=(2, 3, 3), name="src")
    with pytest.raises(ValueError, match="max_support=4 is below the 6 ways"):
        MetaDatasetSampler(make_dataset([5] * 6), max_support=4)
    with pytest.raises(ValueError, match="min_ways=6 is above max_ways=5"):
        MetaDatasetSampler(make_dataset([5] * 6), min_ways=6, max_ways=5)
    with pytest.raises(TypeError, match="ClassDataset"):
        MetaDatasetSampler(np.zeros((10, 2)))


def test_fingerprint_is_identical_in_another_process():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import numpy as np; from metalearn.data import ClassDataset, MetaDatasetEpisodes; "
            "sizes = np.arange(4, 34); labels = np.repeat(np.arange(30), sizes); "
            "ds = ClassDataset(np.zeros((len(labels), 1), np.float32), labels, [str(c) for c in range(30)]); "
            "print(MetaDatasetEpisodes(ds, 40, seed=11).fingerprint)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], env={"PYTHONHASHSEED": "123",
                                                                      "PATH": "/usr/bin:/bin"})
    sizes = np.arange(4, 34)
    labels = np.repeat(np.arange(30), sizes)
    ds = ClassDataset(np.zeros((len(labels), 1), np.float32), labels, [str(c) for c in range(30)])
    assert out.stdout.strip() == MetaDatasetEpisodes(ds, 40, seed=11).fingerprint
