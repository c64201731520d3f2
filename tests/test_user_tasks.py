"""Users as tasks: the MeLU and MAMO protocols, the user splits, item-cold, the samplers, and the
recommendation learners on them (MeLU's local update, adapt leaves the meta-parameters alone)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metalearn.algorithms import CNP, MAML, CNPConfig, ItemMean, MAMLConfig, MeLU, MeLUConfig
from metalearn.algorithms.functional import autograd_grad
from metalearn.algorithms.maml import MetaParams
from metalearn.data.ratings import Attribute, RatingsTable
from metalearn.data.user_tasks import (
    PROTOCOLS,
    UserEpisodes,
    UserTasks,
    UserTaskSampler,
    split_users,
)
from metalearn.eval import evaluate
from metalearn.models import RatingNet
from metalearn.types import EpisodeBatch, EpisodeList


def make_table(n_users=120, n_items=60, seed=0, low=8, high=120) -> RatingsTable:
    """Ratings from a planted model: user taste by gender x item genre, plus item quality."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(low, high, n_users)
    item = np.concatenate([rng.choice(n_items, min(c, n_items), replace=False) for c in counts])
    user = np.repeat(np.arange(n_users), np.minimum(counts, n_items))
    gender = rng.integers(1, 3, n_users)
    genre = rng.integers(1, 4, n_items)
    quality = rng.normal(0, 0.7, n_items)
    taste = np.where((gender[user] == 1) == (genre[item] == 1), 1.0, -1.0)
    rating = np.clip(np.round(3.2 + quality[item] + taste + rng.normal(0, 0.3, len(user))), 1, 5)
    start = rng.integers(0, 10_000, n_users)
    timestamp = start[user] + rng.integers(0, 5_000, len(user))
    return RatingsTable(
        user=user.astype(np.int64), item=item.astype(np.int64), rating=rating.astype(np.float32),
        timestamp=timestamp.astype(np.int64), user_ids=tuple(f"u{i}" for i in range(n_users)),
        item_ids=tuple(f"i{i}" for i in range(n_items)),
        item_titles=tuple(f"Item {i} (1995)" for i in range(n_items)),
        item_attrs=(Attribute("genre", genre[:, None].astype(np.int64), ("a", "b", "c")),),
        user_attrs=(Attribute("gender", gender[:, None].astype(np.int64), ("M", "F")),),
        name="planted")


@pytest.fixture(scope="module")
def table():
    return make_table()


def _rows(tasks: UserTasks, i: int):
    return tasks.support_query(i)


@pytest.mark.parametrize("protocol", ["melu", "mamo"])
def test_support_and_query_never_share_a_rating_and_sizes_follow_the_protocol(table, protocol):
    p = PROTOCOLS[protocol]
    for split in ("train", "val", "test"):
        tasks = UserTasks(table, split, protocol, quiet=True)
        for i in range(len(tasks)):
            s, q = _rows(tasks, i)
            assert len(np.intersect1d(s, q)) == 0
            assert len(q) == p.n_query
            assert set(table.user[s]) == set(table.user[q]) == {tasks.users[i]}
            n = int((table.user == tasks.users[i]).sum())
            assert p.min_ratings <= n and (p.max_ratings is None or n <= p.max_ratings)
            if protocol == "melu":
                assert len(s) == n - p.n_query
            else:
                assert len(s) == p.n_support


def test_splits_are_disjoint_cover_the_eligible_users_and_count_the_skipped(table, capsys):
    parts = {s: set(UserTasks(table, s, "melu").users) for s in ("train", "val", "test")}
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    assert not (parts["val"] & parts["test"])
    counts = np.bincount(table.user, minlength=table.n_users)
    eligible = set(np.flatnonzero((counts >= 13) & (counts <= 100)))
    assert parts["train"] | parts["val"] | parts["test"] == eligible
    tasks = UserTasks(table, "train", "melu", quiet=True)
    assert tasks.skipped == {"fewer than 13 ratings": int((counts < 13).sum()),
                             "more than 100 ratings": int((counts > 100).sum())}
    assert "skipped" in capsys.readouterr().err


def test_mamo_is_split_by_time_within_and_across_users(table):
    tasks = UserTasks(table, "test", "mamo", user_split="time", quiet=True)
    train = UserTasks(table, "train", "mamo", user_split="time", quiet=True)
    for i in range(len(tasks)):
        s, q = _rows(tasks, i)
        assert table.timestamp[s].max() <= table.timestamp[q].min()  # the query is the future
        rows = np.flatnonzero(table.user == tasks.users[i])
        first20 = np.sort(table.timestamp[rows])[:20]
        assert np.array_equal(np.sort(table.timestamp[np.concatenate([s, q])]), first20)

    def first(u):
        return table.timestamp[table.user == u].min()

    assert max(first(u) for u in train.users) <= min(first(u) for u in tasks.users)


def test_split_users_random_is_seeded_and_fractions_are_checked():
    a = split_users(np.zeros(50), np.arange(50), "random", [0.8, 0.1, 0.1], seed=3)
    b = split_users(np.zeros(50), np.arange(50), "random", [0.8, 0.1, 0.1], seed=3)
    c = split_users(np.zeros(50), np.arange(50), "random", [0.8, 0.1, 0.1], seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["test"], c["test"])
    assert [len(a[k]) for k in ("train", "val", "test")] == [40, 5, 5]
    with pytest.raises(ValueError, match="summing to 1"):
        split_users(np.zeros(5), np.arange(5), "random", [0.5, 0.1, 0.1], seed=0)


def test_item_cold_queries_only_unseen_items_and_meta_training_never_sees_them(table):
    train = UserTasks(table, "train", "melu", item_cold=True, quiet=True)
    test = UserTasks(table, "test", "melu", item_cold=True, quiet=True)
    cold = train.cold
    assert cold.sum() == round(0.2 * table.n_items)
    _, items, _ = train.train_ratings()
    assert (items > 0).all()  # every meta-training item has a code ...
    assert not cold[(items - 1).numpy()].any()  # ... and none of them is cold
    assert (train.item_codes[cold] == 0).all()
    for i in range(len(test)):
        ep = test.episode(i)
        assert (ep.query_x[:, 0] == 0).all()  # unseen: no item embedding to lean on
        s, q = _rows(test, i)
        assert cold[table.item[q]].all() and not cold[table.item[s]].any()


def test_features_follow_the_fields_and_unseen_items_get_code_zero(table):
    tasks = UserTasks(table, "train", "melu", quiet=True)
    assert tasks.fields == [["item", table.n_items + 1, 1], ["item.genre", 4, 1], ["user.gender", 3, 1]]
    x = tasks.features(np.array([0, 1]), np.array([5, 6]))
    assert x.dtype == torch.int64 and x.shape == (2, tasks.width)
    assert x[:, 0].tolist() == tasks.item_codes[[5, 6]].tolist()
    assert x[:, 1].tolist() == table.item_attrs[0].codes[[5, 6], 0].tolist()
    assert x[:, 2].tolist() == table.user_attrs[0].codes[[0, 1], 0].tolist()
    new_user = tasks.features_of(np.array([2]), np.array([5, 6]))
    assert new_user[:, 2].tolist() == [2, 2] and torch.equal(new_user[:, :2], x[:, :2])


def test_sampler_batches_are_lists_under_melu_stacks_under_mamo_and_resume(table):
    melu = UserTaskSampler(UserTasks(table, "train", "melu", quiet=True), seed=0)
    batch = melu.sample_batch(8)
    assert isinstance(batch, EpisodeList) and len(batch) == 8
    assert len({len(ep.support_x) for ep in batch}) > 1
    assert isinstance(UserTaskSampler(UserTasks(table, "train", "mamo", quiet=True)).sample_batch(4), EpisodeBatch)
    state = melu.state_dict()
    a = melu.sample_batch(4)
    melu.load_state_dict(state)
    b = melu.sample_batch(4)
    assert all(torch.equal(x.support_x, y.support_x) and torch.equal(x.query_y, y.query_y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="train.meta_batch"):
        melu.sample_batch(10_000)


def test_grouped_batches_stack_share_one_support_size_and_weigh_every_user_alike(table):
    tasks = UserTasks(table, "train", "melu", quiet=True)
    grouped = UserTaskSampler(tasks, seed=0, group_sizes=True)
    for _ in range(20):
        batch = grouped.sample_batch(4)
        assert isinstance(batch, EpisodeBatch) and 1 <= len(batch) <= 4
    state = grouped.state_dict()
    a = grouped.sample_batch(4)
    grouped.load_state_dict(state)
    assert torch.equal(a.support_x, grouped.sample_batch(4).support_x)
    # each user's weight in the mean loss of a batch is 1 / len(batch); its expectation per batch
    # must be 1 / len(tasks) for every user, as with mixed batches (no size is favoured)
    sizes = grouped._size_of
    assert len(np.unique(sizes)) > 5 and min(np.bincount(sizes)[np.unique(sizes)]) < 4  # small groups too
    weight, draws = np.zeros(len(tasks)), 20_000
    for _ in range(draws):
        picks = grouped.draw_users(4)
        assert len(set(picks)) == len(picks) and len({sizes[i] for i in picks}) == 1
        weight[picks] += 1 / len(picks)
    # a user's count of draws is about binomial: per-user relative spread ~ sqrt(N / draws) ~ 0.07
    np.testing.assert_allclose(weight / draws * len(tasks), 1.0, atol=0.3)
    assert abs(weight.sum() / draws - 1) < 1e-9
    with pytest.raises(ValueError, match="train.meta_batch"):
        grouped.draw_users(10_000)


def test_fixed_user_episodes_are_the_same_every_time_and_record_the_protocol(table):
    tasks = UserTasks(table, "test", "melu", quiet=True)
    a, b, c = UserEpisodes(tasks, seed=2), UserEpisodes(tasks, seed=2), UserEpisodes(tasks, seed=3)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(a) == len(tasks) and torch.equal(a[0].query_x, b[0].query_x)
    d = a.describe()
    assert d["protocol"] == "melu" and d["n_episodes"] == len(tasks) and d["users"] == len(tasks)
    assert len(UserEpisodes(tasks, seed=2, n_episodes=3)) == 3


def test_a_protocol_without_users_says_what_to_change():
    small = make_table(n_users=10, low=3, high=6)
    with pytest.raises(ValueError, match="data.protocol"):
        UserTasks(small, "train", "melu", quiet=True)
    with pytest.raises(ValueError, match="train, val and test"):
        UserTasks(small, "vinyals-train", "melu", quiet=True)


def _net(tasks, **kw):
    return RatingNet(tasks.fields, embed_dim=8, hidden=(16, 16), **kw)


def test_melu_local_update_adapts_only_the_decision_layers_and_adapt_leaves_the_meta_parameters(table):
    torch.manual_seed(0)
    tasks = UserTasks(table, "train", "melu", quiet=True)
    melu = MeLU(_net(tasks), MeLUConfig(inner_lr=0.1, inner_steps=2))
    ep = tasks.episode(0)
    before = {k: v.clone() for k, v in melu.state_dict().items()}
    meta = {n: p.detach() for n, p in melu.backbone.named_parameters()}
    adapted, _ = melu._adapt(MetaParams(meta, {}), ep.support_x, ep.support_y, 2, True, autograd_grad)
    for name, value in adapted.items():
        changed = not torch.equal(value, meta[name])
        assert changed == (not name.startswith("embeddings.")), name
    melu.adapt(ep.support_x, ep.support_y)(ep.query_x)
    assert all(torch.equal(before[k], v) for k, v in melu.state_dict().items())


def test_meta_loss_takes_a_list_of_users_of_different_sizes(table):
    tasks = UserTasks(table, "train", "melu", quiet=True)
    batch = UserTaskSampler(tasks, seed=1).sample_batch(5)
    for algo in (MeLU(_net(tasks)), MAML(_net(tasks), MAMLConfig(inner_lr=0.05)),
                 CNP(_net(tasks, out_features=None), CNPConfig(hidden=16))):
        loss, metrics = algo.meta_loss(batch)
        loss.backward()
        assert torch.isfinite(loss) and "mse" in metrics
        assert all(p.grad is not None for p in algo.parameters() if p.requires_grad)


def test_a_tiny_melu_learns_the_planted_ratings_better_than_the_item_mean_in_seconds(table):
    torch.manual_seed(0)
    train = UserTasks(table, "train", "melu", quiet=True)
    test = UserEpisodes(UserTasks(table, "test", "melu", quiet=True), seed=2)
    melu = MeLU(_net(train), MeLUConfig(inner_lr=0.1, inner_steps=3))
    opt = torch.optim.Adam(melu.parameters(), lr=3e-3)
    sampler = UserTaskSampler(train, seed=0)
    for _ in range(150):
        loss, _ = melu.meta_loss(sampler.sample_batch(16))
        opt.zero_grad()
        loss.backward()
        opt.step()
    baseline = ItemMean().fit(*train.train_ratings())
    ours, theirs = evaluate(melu, test, progress=False), evaluate(baseline, test, progress=False)
    assert ours.mean < theirs.mean - ours.ci95 - theirs.ci95, (ours, theirs)


def test_group_sizes_on_a_dataset_without_users_names_the_fix():
    from metalearn.errors import ConfigError
    from metalearn.presets import get_preset
    from metalearn.train.config import apply_overrides, validate

    with pytest.raises(ConfigError, match="drop data.group_sizes"):
        validate(apply_overrides(get_preset("maml-sinusoid-5shot"), ["data.group_sizes=true"]))
    validate(apply_overrides(get_preset("melu-movielens-synthetic"), ["data.group_sizes=true"]))  # accepted
