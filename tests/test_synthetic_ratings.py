"""The MovieLens-format generator: deterministic per seed, read back unchanged by the ML-100K
reader, ML-100K-like statistics, and the attribute signal it states (age group x film decade)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from metalearn.data.ratings import AGE_GROUPS, read_movielens_100k
from metalearn.data.synthetic_ratings import WINDOW, SyntheticRatings, write_synthetic_movielens

FILES = ("u.data", "u.item", "u.user", "u.genre", "u.occupation", "README.txt")
SMALL = SyntheticRatings(n_users=60, n_items=120, max_ratings=80)


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    start = time.perf_counter()
    folder = write_synthetic_movielens(tmp_path_factory.mktemp("synthetic") / "ml-100k")
    elapsed = time.perf_counter() - start
    return folder, read_movielens_100k(folder), elapsed


def test_deterministic_per_seed(tmp_path):
    a = write_synthetic_movielens(tmp_path / "a", SMALL, seed=3)
    b = write_synthetic_movielens(tmp_path / "b", SMALL, seed=3)
    c = write_synthetic_movielens(tmp_path / "c", SMALL, seed=4)
    assert sorted(p.name for p in a.iterdir()) == sorted(FILES)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in FILES)
    assert (a / "u.data").read_bytes() != (c / "u.data").read_bytes()
    assert (a / "u.user").read_bytes() != (c / "u.user").read_bytes()


def test_readme_says_synthetic_and_lists_parameters(tmp_path):
    text = (write_synthetic_movielens(tmp_path, SMALL, seed=5) / "README.txt").read_text()
    assert "SYNTHETIC" in text and "NOT MovieLens" in text and "seed 5" in text
    assert "n_users = 60" in text and "age_decade = 0.8" in text


def test_default_size_reads_back_like_ml_100k(default):
    folder, t, elapsed = default
    assert elapsed < 10  # vectorised: well under a second on a laptop
    assert (t.n_users, t.n_items) == (943, 1682)
    assert 90_000 <= t.n_ratings <= 110_000
    assert t.user_ids == tuple(str(i) for i in range(1, 944))
    assert set(np.unique(t.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    counts = np.bincount(t.user, minlength=t.n_users)
    assert counts.min() >= 20 and counts.max() <= 700 + 5
    assert counts.max() > 5 * np.median(counts)  # long-tailed per user
    per_item = np.bincount(t.item, minlength=t.n_items)
    assert per_item.min() >= 1 and (per_item == 1).sum() >= 20 and per_item.max() > 20 * np.median(per_item)
    assert 3.3 <= t.rating.mean() <= 3.7
    share = np.bincount(t.rating.astype(int), minlength=6)[1:] / t.n_ratings
    assert share[2] + share[3] > 0.55 and share[0] < 0.08  # most mass on 3-4, few 1s
    assert WINDOW[0] <= t.timestamp.min() and t.timestamp.max() <= WINDOW[1]
    genres = {a.name: a for a in t.item_attrs}["genre"].codes
    assert 1 <= (genres > 0).sum(axis=1).min() and (genres > 0).sum(axis=1).max() <= 3
    ages = {a.name: a for a in t.user_attrs}["age"]
    assert ages.vocab == AGE_GROUPS and (ages.codes > 0).all()
    assert (folder / "u.item").read_text("latin-1").startswith("1|Synthetic Movie 1 (")


def test_each_user_rates_after_joining_over_months(default):
    _, t, _ = default
    first = np.full(t.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first, t.user, t.timestamp)
    assert np.ptp(first) > 150 * 86400  # joins spread over ~7 months: a time split is meaningful
    order = np.lexsort((t.timestamp, t.user))
    assert (np.diff(t.timestamp[order])[np.diff(t.user[order]) == 0] >= 0).all()


def test_age_group_by_decade_interaction(default):
    _, t, _ = default
    group = {a.name: a for a in t.user_attrs}["age"].codes[t.user, 0] - 1
    year = {a.name: a for a in t.item_attrs}["year"]
    decade = np.array([int(v[:4]) for v in year.vocab])[year.codes[t.item, 0] - 1]
    young, old = group <= 1, group >= 5  # under 25 / 50 and over

    def gap(films):
        return t.rating[films & old].mean() - t.rating[films & young].mean()

    old_films, new_films = decade < 1970, decade >= 1990
    assert gap(old_films) > 0.5  # older users like older films
    assert gap(old_films) - gap(new_films) > 0.5


def test_interaction_off(tmp_path):
    config = SyntheticRatings(n_users=400, n_items=300, age_decade=0.0)
    t = read_movielens_100k(write_synthetic_movielens(tmp_path, config, seed=1))
    group = {a.name: a for a in t.user_attrs}["age"].codes[t.user, 0] - 1
    year = {a.name: a for a in t.item_attrs}["year"]
    decade = np.array([int(v[:4]) for v in year.vocab])[year.codes[t.item, 0] - 1]
    films = decade < 1970
    assert abs(t.rating[films & (group >= 5)].mean() - t.rating[films & (group <= 1)].mean()) < 0.4


def test_min_ratings_respected_and_parameters_checked(tmp_path):
    config = SyntheticRatings(n_users=50, n_items=80, min_ratings=30, max_ratings=40)
    t = read_movielens_100k(write_synthetic_movielens(tmp_path, config))
    counts = np.bincount(t.user)
    assert counts.min() >= 30
    with pytest.raises(ValueError, match="min_ratings"):
        SyntheticRatings(min_ratings=50, max_ratings=40)
    with pytest.raises(ValueError, match="share"):
        SyntheticRatings(genre_share=1.5)
