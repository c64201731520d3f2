"""A seeded generator of ratings in the MovieLens-100K file format: the development data.

MovieLens may not be redistributed, so tests, presets and benchmarks run on data written by
:func:`write_synthetic_movielens`: the files ``u.data``, ``u.item``, ``u.user``, ``u.genre`` and
``u.occupation`` of ML-100K (latin-1, the same fields), which
:func:`~metalearn.data.ratings.read_movielens_100k` reads unchanged, plus a ``README.txt`` that
says the data are synthetic and lists the parameters. It is a stand-in with known structure, not a
result about real users.

The model (defaults sized like ML-100K: 943 users, 1,682 items, 19 genres, 21 occupations):

- users: age (7..73, right-skewed like ML-100K's), gender (71% M), an occupation (skewed, and
  consistent with age: students young, retirees 50+), a 5-digit zip code;
- items: 1-3 genres (skewed popularity), a release year (mostly the 1990s, a tail back to the
  1930s), a title ``"Synthetic Movie 12 (1995)"``;
- latent factors of dimension ``dim``: ``p_u = sqrt(s) * A onehot(user attributes) + sqrt(1 - s) * eps_u``
  with ``s = user_attribute_share`` (each part standardised, so ``s`` is the share of the variance
  the attributes explain), ``q_i = sqrt(g) * B genres_i + sqrt(1 - g) * eps_i`` (``g = genre_share``);
- ``rating = clip(round(mu + b_u + b_i + dot_std / sqrt(dim) * p_u . q_i + age_decade * a_u * o_i + noise), 1, 5)``
  with user biases ``b_u``, item biases ``b_i`` (half from genres, half item-specific), and the
  **age x decade interaction**: ``a_u`` in ``[-1, 1]`` is the user's age group (Under 18 = -1,
  56+ = +1) and ``o_i`` in ``[0, 1]`` the film's age (0 for 1990 and later, 1 for 1960 and
  earlier), so older users like older films and younger users dislike them. A model that reads
  the user's age group gets this for free; matrix factorisation must infer the user's
  coefficient from the few old films in that user's ratings;
- ratings per user: ``min_ratings`` plus a lognormal tail, capped at ``max_ratings``; items drawn
  without replacement with Zipf-like popularity (successive sampling by Gumbel top-k), every
  item rated at least once (an unrated item goes to a random user below the cap);
- timestamps: users join uniformly over 1997-09-19 .. 1998-04-22 (ML-100K's window) and rate
  in a burst after joining (most within days, some over weeks), never after the window ends.

With the defaults the ratings have mean ~3.5 and most mass on 3 and 4 with few 1s, like ML-100K.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.data.ratings import AGE_GROUPS, GENRES_100K, age_group

OCCUPATIONS_100K = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment",
                    "executive", "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none",
                    "other", "programmer", "retired", "salesman", "scientist", "student", "technician",
                    "writer")
"""ML-100K's ``u.occupation``."""
_OCCUPATION_RANK = ("student", "other", "educator", "administrator", "engineer", "programmer", "librarian",
                    "writer", "executive", "scientist", "artist", "technician", "marketing", "entertainment",
                    "healthcare", "retired", "lawyer", "salesman", "none", "homemaker", "doctor")
# Relative genre popularity (Drama and Comedy most common, "unknown" nearly never), in GENRES_100K order.
_GENRE_WEIGHTS = (0.002, 0.10, 0.05, 0.015, 0.05, 0.18, 0.045, 0.02, 0.25, 0.01, 0.01, 0.035, 0.02,
                  0.025, 0.10, 0.04, 0.10, 0.03, 0.01)
_ZIP_DIGIT_WEIGHTS = (0.06, 0.10, 0.10, 0.08, 0.09, 0.12, 0.07, 0.08, 0.10, 0.20)
WINDOW = (calendar.timegm((1997, 9, 19, 0, 0, 0)), calendar.timegm((1998, 4, 22, 23, 59, 59)))
"""The seven months of ML-100K (its README: 19 September 1997 to 22 April 1998), UTC seconds."""


@dataclass(frozen=True)
class SyntheticRatings:
    """Parameters of the generator (see the module docstring for the model)."""

    n_users: int = 943
    """Users (ML-100K: 943)."""
    n_items: int = 1682
    """Items (ML-100K: 1,682); each is rated at least once."""
    dim: int = 8
    """Dimension of the user and item latent factors."""
    user_attribute_share: float = 0.5
    """Share of the variance of the user factors explained by the user attributes (age group,
    gender, occupation, zip region), 0..1."""
    genre_share: float = 0.5
    """Share of the variance of the item factors (and of the item biases) explained by the genres, 0..1."""
    mu: float = 3.6
    """Global offset of the ratings before rounding."""
    user_bias_std: float = 0.45
    """Standard deviation of the user biases."""
    item_bias_std: float = 0.5
    """Standard deviation of the item biases."""
    dot_std: float = 0.6
    """Standard deviation of the dot-product term ``p_u . q_i`` after scaling."""
    age_decade: float = 0.8
    """Strength of the age-group x film-age interaction, in rating points at the extremes (a
    56+ user on a 1960 film: +age_decade; an under-18 user: -age_decade); 0 turns it off."""
    noise_std: float = 0.65
    """Standard deviation of the per-rating noise."""
    min_ratings: int = 20
    """Fewest ratings per user (ML-100K: 20)."""
    max_ratings: int = 700
    """Most ratings per user (ML-100K's heaviest user: 737)."""
    tail_median: float = 50.0
    """Median of the lognormal number of ratings beyond ``min_ratings``."""
    tail_sigma: float = 1.1
    """Log-scale spread of that tail (larger: heavier users)."""
    popularity_exponent: float = 1.0
    """Zipf exponent of item popularity: an item of popularity rank ``r`` (0 = most popular) has
    the weight ``(r + popularity_offset) ** -popularity_exponent * exp(-r / popularity_cutoff)``."""
    popularity_offset: float = 40.0
    """Flattens the head of the popularity curve (ML-100K's most rated film: 583 of 943 users)."""
    popularity_cutoff: float = 500.0
    """Ranks beyond a few cutoffs are rarely drawn, so the tail has films with one rating."""

    def __post_init__(self):
        checks = [
            (self.n_users >= 1 and self.n_items >= 1, "n_users and n_items must be at least 1"),
            (self.dim >= 1, "dim must be at least 1"),
            (0.0 <= self.user_attribute_share <= 1.0 and 0.0 <= self.genre_share <= 1.0,
             "user_attribute_share and genre_share must lie in 0..1"),
            (min(self.user_bias_std, self.item_bias_std, self.dot_std, self.noise_std) >= 0,
             "the standard deviations must be >= 0"),
            (1 <= self.min_ratings <= self.max_ratings, "need 1 <= min_ratings <= max_ratings"),
            (self.min_ratings <= self.n_items, f"min_ratings ({self.min_ratings}) exceeds n_items ({self.n_items})"),
            (self.tail_median > 0 and self.tail_sigma >= 0, "tail_median must be > 0 and tail_sigma >= 0"),
            (self.popularity_exponent >= 0 and self.popularity_offset > 0 and self.popularity_cutoff > 0,
             "popularity_exponent must be >= 0, popularity_offset and popularity_cutoff > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SyntheticRatings: {message}")


def _standardize(x: np.ndarray) -> np.ndarray:
    """Columns scaled to mean 0 and variance 1 (a constant column stays 0)."""
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    return x / np.where(std > 0, std, 1.0)


def _mix(attribute_part: np.ndarray, own: np.ndarray, share: float) -> np.ndarray:
    return np.sqrt(share) * _standardize(attribute_part) + np.sqrt(1.0 - share) * _standardize(own)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of ``probs`` (rows sum to 1)."""
    cum = np.cumsum(probs, axis=-1)
    return np.minimum((rng.random((len(probs), 1)) > cum).sum(axis=1), probs.shape[1] - 1)


def _users(config: SyntheticRatings, rng: np.random.Generator):
    n = config.n_users
    age = np.clip(np.rint(7 + rng.gamma(4.9, 5.5, n)), 7, 73).astype(np.int64)
    male = rng.random(n) < 0.71
    rank = {o: r for r, o in enumerate(_OCCUPATION_RANK)}
    base = np.array([(rank[o] + 1.0) ** -0.8 for o in OCCUPATIONS_100K])
    weights = np.tile(base, (n, 1))
    student, retired = OCCUPATIONS_100K.index("student"), OCCUPATIONS_100K.index("retired")
    weights[:, student] *= np.where(age < 23, 3.0, np.where(age >= 30, 0.15, 1.0))
    weights[:, retired] *= np.where(age < 50, 0.0, np.where(age >= 60, 8.0, 1.0))
    occupation = _categorical(rng, weights / weights.sum(axis=1, keepdims=True))
    digit = rng.choice(10, n, p=np.array(_ZIP_DIGIT_WEIGHTS))
    zips = digit * 10000 + rng.integers(0, 10000, n)
    return age, male, occupation, digit, zips


def _items(config: SyntheticRatings, rng: np.random.Generator):
    n, n_genres = config.n_items, len(GENRES_100K)
    count = rng.choice([1, 2, 3], n, p=[0.5, 0.35, 0.15])
    keys = np.log(np.array(_GENRE_WEIGHTS)) + rng.gumbel(size=(n, n_genres))
    order = np.argsort(-keys, axis=1)
    genres = np.zeros((n, n_genres), bool)
    chosen = np.arange(n_genres)[None, :] < count[:, None]
    genres[np.repeat(np.arange(n), n_genres)[chosen.ravel()], order[chosen]] = True
    recent = rng.random(n) < 0.75
    year_90s = 1990 + rng.choice(9, n, p=np.array([1, 1, 1.2, 1.5, 2, 2.5, 3.5, 3.5, 1.5]) / 17.7)
    decade = 1930 + 10 * rng.choice(6, n, p=np.array([0.05, 0.08, 0.10, 0.14, 0.23, 0.40]))
    year = np.where(recent, year_90s, decade + rng.integers(0, 10, n))
    return genres, year


def _counts(config: SyntheticRatings, rng: np.random.Generator) -> np.ndarray:
    tail = np.floor(rng.lognormal(np.log(config.tail_median), config.tail_sigma, config.n_users))
    return np.minimum(config.min_ratings + tail, min(config.max_ratings, config.n_items)).astype(np.int64)


def _pairs(config: SyntheticRatings, counts: np.ndarray, rng: np.random.Generator):
    """``(user, item)`` pairs: each user's items without replacement by Zipf popularity."""
    rank = rng.permutation(config.n_items)
    log_w = -config.popularity_exponent * np.log(rank + config.popularity_offset) - rank / config.popularity_cutoff
    keys = log_w[None, :] + rng.gumbel(size=(config.n_users, config.n_items))
    order = np.argsort(-keys, axis=1)
    chosen = np.arange(config.n_items)[None, :] < counts[:, None]
    user = np.repeat(np.arange(config.n_users), config.n_items)[chosen.ravel()]
    item = order[chosen]
    unrated = np.setdiff1d(np.arange(config.n_items), item)
    if len(unrated):  # every item is rated at least once, by users below the cap
        room = np.flatnonzero(counts < config.max_ratings)
        room = room if len(room) else np.arange(config.n_users)
        user = np.concatenate([user, rng.choice(room, len(unrated))])
        item = np.concatenate([item, unrated])
    return user, item


def _timestamps(config: SyntheticRatings, user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    start, end = WINDOW
    join = start + rng.random(config.n_users) * (end - start - 3600)
    span = np.minimum(end - join, rng.exponential(15 * 86400.0, config.n_users))
    return (join[user] + span[user] * rng.random(len(user)) ** 3).astype(np.int64)


@dataclass(frozen=True)
class _Latent:
    """The terms of the noiseless score that the generator draws (0-based users and items)."""

    p: np.ndarray  # (n_users, dim) user factors
    q: np.ndarray  # (n_items, dim) item factors
    b_u: np.ndarray  # (n_users,)
    b_i: np.ndarray  # (n_items,)
    a_u: np.ndarray  # (n_users,) age group in [-1, 1]
    o_i: np.ndarray  # (n_items,) film age in [0, 1]
    p_attr: np.ndarray  # (n_users, dim) the part of p that the user attributes explain


def _score(config: SyntheticRatings, z: _Latent, user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """The noiseless score of 0-based ``(user, item)`` pairs ``(n,)``, summed in the order that
    :func:`generate` adds the noise to (so ``rating = clip(rint(score + noise), 1, 5)`` exactly)."""
    return (config.mu + z.b_u[user] + z.b_i[item]
            + config.dot_std / np.sqrt(config.dim) * np.einsum("nd,nd->n", z.p[user], z.q[item])
            + config.age_decade * z.a_u[user] * z.o_i[item])


def _draw(config: SyntheticRatings, seed: int) -> tuple[dict[str, np.ndarray], _Latent]:
    """Every random draw of the generator, in one fixed order: :func:`generate`'s arrays and the
    latent terms of the score. Changing the order or the draws changes every dataset."""
    rng = np.random.default_rng(seed)
    age, male, occupation, digit, zips = _users(config, rng)
    genres, year = _items(config, rng)
    groups = np.array([age_group(a) for a in age])
    onehot = np.concatenate([np.eye(len(AGE_GROUPS))[groups], np.eye(2)[male.astype(int)],
                             np.eye(len(OCCUPATIONS_100K))[occupation], np.eye(10)[digit]], axis=1)
    d = config.dim
    attribute_part = onehot @ rng.normal(size=(onehot.shape[1], d))
    own_part = rng.normal(size=(config.n_users, d))
    p = _mix(attribute_part, own_part, config.user_attribute_share)
    genre_mean = genres / genres.sum(axis=1, keepdims=True)
    q = _mix(genre_mean @ rng.normal(size=(genres.shape[1], d)), rng.normal(size=(config.n_items, d)),
             config.genre_share)
    b_u = config.user_bias_std * rng.normal(size=config.n_users)
    b_i = config.item_bias_std * _mix(genre_mean @ rng.normal(size=(genres.shape[1], 1)),
                                      rng.normal(size=(config.n_items, 1)), config.genre_share)[:, 0]
    counts = _counts(config, rng)
    user, item = _pairs(config, counts, rng)
    latent = _Latent(p=p, q=q, b_u=b_u, b_i=b_i, a_u=(groups - 3) / 3.0,
                     o_i=np.clip((1990 - year) / 30.0, 0.0, 1.0),
                     p_attr=np.sqrt(config.user_attribute_share) * _standardize(attribute_part))
    value = _score(config, latent, user, item) + config.noise_std * rng.normal(size=len(user))
    rating = np.clip(np.rint(value), 1, 5).astype(np.int64)
    timestamp = _timestamps(config, user, rng)
    order = rng.permutation(len(user))  # u.data is randomly ordered, as ML-100K's
    arrays = {"user": user[order], "item": item[order], "rating": rating[order], "timestamp": timestamp[order],
              "age": age, "male": male, "occupation": occupation, "zip": zips, "genres": genres, "year": year}
    return arrays, latent


def generate(config: SyntheticRatings = SyntheticRatings(), seed: int = 0) -> dict[str, np.ndarray]:
    """The generator's arrays (0-based users and items), before they are written as files.

    Returns:
        ``user``, ``item``, ``rating`` (int64 1..5), ``timestamp`` ``(n,)``; ``age``, ``male``,
        ``occupation`` (index into :data:`OCCUPATIONS_100K`), ``zip`` ``(n_users,)``; ``genres``
        (bool ``(n_items, 19)``), ``year`` ``(n_items,)``.

    Examples:
        >>> g = generate(SyntheticRatings(n_users=40, n_items=60), seed=1)
        >>> int(g["rating"].min()) >= 1, int(g["rating"].max()) <= 5, g["genres"].shape
        (True, True, (60, 19))
    """
    return _draw(config, seed)[0]


def _u_data(g: dict[str, np.ndarray]) -> str:
    """``u.data``: raw ids are the 0-based indices plus 1."""
    return "".join(f"{u + 1}\t{i + 1}\t{r}\t{t}\n" for u, i, r, t in
                   zip(g["user"].tolist(), g["item"].tolist(), g["rating"].tolist(), g["timestamp"].tolist()))


def _readme(config: SyntheticRatings, seed: int, g: dict[str, np.ndarray]) -> str:
    lines = [
        "SYNTHETIC ratings in the MovieLens-100K file format (metalearn.data.synthetic_ratings).",
        "",
        "These are NOT MovieLens ratings and NOT real people: every user, film, title and rating was",
        "drawn from a latent-factor model by write_synthetic_movielens. Use them to develop and test;",
        "figures measured on them say nothing about real users.",
        "",
        f"{config.n_users} users, {config.n_items} items, {len(g['rating'])} ratings; seed {seed}.",
        "Files: u.data (user id, item id, rating, timestamp; tab-separated), u.item, u.user, u.genre,",
        "u.occupation (|-separated, latin-1), as in ML-100K.",
        "",
        "Parameters (SyntheticRatings):",
        *(f"  {k} = {v!r}" for k, v in asdict(config).items()),
        "",
    ]
    return "\n".join(lines)


def write_synthetic_movielens(folder: str | os.PathLike, config: SyntheticRatings = SyntheticRatings(),
                              seed: int = 0) -> Path:
    """Write the ML-100K files of a synthetic data set (and ``README.txt``) into ``folder``.

    The files are byte-identical for the same ``(config, seed)``.

    Args:
        folder: Created if missing; existing files of the same names are replaced.
        config: The generator's parameters.
        seed: Seed of every random draw.

    Returns:
        ``folder``, for :func:`~metalearn.data.ratings.read_movielens_100k`.

    Examples:
        >>> import tempfile
        >>> from metalearn.data.ratings import read_movielens_100k
        >>> folder = write_synthetic_movielens(tempfile.mkdtemp(), SyntheticRatings(n_users=30, n_items=50))
        >>> t = read_movielens_100k(folder)
        >>> t.n_users, t.n_items, bool(t.rating.min() >= 1 and t.rating.max() <= 5)
        (30, 50, True)
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    g = generate(config, seed)
    data = _u_data(g)
    flags = np.where(g["genres"], "1", "0")
    items = "".join(f"{i + 1}|Synthetic Movie {i + 1} ({y})|01-Jan-{y}|||{'|'.join(f)}\n"
                    for i, (y, f) in enumerate(zip(g["year"].tolist(), flags.tolist())))
    users = "".join(f"{u + 1}|{a}|{'M' if m else 'F'}|{OCCUPATIONS_100K[o]}|{z:05d}\n" for u, (a, m, o, z) in
                    enumerate(zip(g["age"].tolist(), g["male"].tolist(), g["occupation"].tolist(), g["zip"].tolist())))
    files = {
        "u.data": data, "u.item": items, "u.user": users,
        "u.genre": "".join(f"{name}|{k}\n" for k, name in enumerate(GENRES_100K)) + "\n",
        "u.occupation": "".join(f"{o}\n" for o in OCCUPATIONS_100K),
        "README.txt": _readme(config, seed, g),
    }
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("latin-1"))
    return folder


# ---------------------------------------------------------------------------------------------
# The generator's true model: the ceiling of any recommender on its data
# ---------------------------------------------------------------------------------------------

RATING_SCALE = (1, 2, 3, 4, 5)
"""The ratings the generator writes: ``clip(rint(score + noise), 1, 5)``."""


def rating_probabilities(score: np.ndarray, noise_std: float) -> np.ndarray:
    """The distribution of the written rating given the noiseless score, exactly.

    The rating is ``clip(rint(score + noise), 1, 5)`` with ``noise ~ N(0, noise_std^2)``, so it is
    ``k`` when ``score + noise`` falls in ``[k - 0.5, k + 0.5)`` (1 takes everything below 1.5,
    5 everything from 4.5): ``P(k) = Phi((k + 0.5 - score) / noise_std) - Phi((k - 0.5 - score) / noise_std)``
    with the normal CDF ``Phi``.

    Args:
        score: Noiseless scores, any shape ``S``.
        noise_std: The generator's ``noise_std`` (0: the rating is ``clip(rint(score), 1, 5)``),
            or one positive value per score (an array broadcastable to ``S``).

    Returns:
        ``S + (5,)`` float64 probabilities of the ratings 1..5 (:data:`RATING_SCALE`), summing to 1.

    Examples:
        >>> rating_probabilities(np.array([3.0, 9.0]), 0.25).round(3)  # +-0.5 is 2 sigma
        array([[0.   , 0.023, 0.954, 0.023, 0.   ],
               [0.   , 0.   , 0.   , 0.   , 1.   ]])
    """
    import torch

    score = np.asarray(score, dtype=np.float64)
    std = np.asarray(noise_std, dtype=np.float64)
    if (std < 0).any():
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if (std == 0).all():  # the generator's own rounding (half to even)
        rating = np.clip(np.rint(score), 1, 5).astype(np.int64)
        return (rating[..., None] == np.array(RATING_SCALE)).astype(np.float64)
    if (std == 0).any():
        raise ValueError("noise_std of one score per entry must be all positive or all 0")
    cuts = np.array(RATING_SCALE[:-1]) + 0.5
    z = torch.from_numpy((cuts - score[..., None]) / std[..., None])
    cdf = torch.special.ndtr(z).numpy()  # P(rating <= k), k = 1..4
    edges = np.concatenate([np.zeros(score.shape + (1,)), cdf, np.ones(score.shape + (1,))], axis=-1)
    return np.diff(edges, axis=-1)


def expected_rating(score: np.ndarray, noise_std: float) -> np.ndarray:
    """``E[clip(rint(score + noise), 1, 5)]``: the prediction of least expected squared error.

    Examples:
        >>> expected_rating(np.array([3.0, 0.0]), 0.0).tolist()
        [3.0, 1.0]
    """
    return rating_probabilities(score, noise_std) @ np.array(RATING_SCALE, dtype=np.float64)


def median_rating(score: np.ndarray, noise_std: float) -> np.ndarray:
    """The median written rating (the smallest with ``P(rating <= k) >= 1/2``): the prediction of
    least expected absolute error.

    Examples:
        >>> median_rating(np.array([2.4, 4.6, 3.5]), 0.65).tolist()
        [2.0, 5.0, 3.0]
    """
    cdf = np.cumsum(rating_probabilities(score, noise_std), axis=-1)
    return np.array(RATING_SCALE, dtype=np.float64)[np.argmax(cdf >= 0.5 - 1e-12, axis=-1)]


def read_generator_record(folder: str | os.PathLike) -> tuple[SyntheticRatings, int]:
    """The parameters and seed that :func:`write_synthetic_movielens` recorded in ``folder``.

    They are in ``README.txt`` (the line ``... ratings; seed N.`` and one ``name = value`` line per
    :class:`SyntheticRatings` field, values as Python literals).

    Raises:
        ValueError: ``folder`` has no such ``README.txt`` (it was not written by
            :func:`write_synthetic_movielens`), or it names an unknown parameter.

    Examples:
        >>> import tempfile
        >>> folder = write_synthetic_movielens(tempfile.mkdtemp(), SyntheticRatings(n_users=30, n_items=50), seed=4)
        >>> config, seed = read_generator_record(folder)
        >>> config.n_users, config.noise_std, seed
        (30, 0.65, 4)
    """
    import ast
    import re

    readme = Path(folder).expanduser() / "README.txt"
    fix = ("only a folder written by metalearn.data.synthetic_ratings.write_synthetic_movielens records "
           "the generator's parameters and seed (in its README.txt); write one with "
           "write_synthetic_movielens(folder, SyntheticRatings(...), seed)")
    if not readme.is_file():
        raise ValueError(f"{folder} has no README.txt: {fix}")
    text = readme.read_text(encoding="latin-1")
    seed = re.search(r"ratings; seed (-?\d+)\.\s*$", text, re.MULTILINE)
    if not text.startswith("SYNTHETIC ratings") or seed is None or "Parameters (SyntheticRatings):" not in text:
        raise ValueError(f"{readme} does not record the generator's parameters and seed: {fix}")
    fields = set(SyntheticRatings.__dataclass_fields__)
    params = {}
    for line in text.split("Parameters (SyntheticRatings):", 1)[1].splitlines():
        if not line.strip():
            continue
        name, _, value = line.strip().partition(" = ")
        if name not in fields:
            raise ValueError(f"{readme} names the parameter {name!r}, which SyntheticRatings does not have "
                             "(written by another version of metalearn?): regenerate the folder")
        params[name] = ast.literal_eval(value)
    return SyntheticRatings(**params), int(seed.group(1))


def _indices(ids, n: int, what: str) -> np.ndarray:
    """0-based indices of raw ids as written to the files (``"1"`` .. ``str(n)``)."""
    raw = np.asarray(ids)
    try:
        index = raw.astype(np.int64) - 1
    except ValueError:
        bad = next(i for i in raw.ravel().tolist() if not str(i).strip().lstrip("-").isdigit())
        raise ValueError(f"{what} id {bad!r} is not one the generator wrote (ids 1..{n})") from None
    wrong = (index < 0) | (index >= n)
    if wrong.any():
        raise ValueError(f"{what} id {raw[wrong].ravel().tolist()[0]!r} is not one the generator wrote (ids 1..{n})")
    return index


class TrueRatingModel:
    """The generator's own model of a dataset: the noiseless score of any (user, item) pair and
    the best predictions of its ratings, keyed by the raw ids written to the files (those of a
    :class:`~metalearn.data.ratings.RatingsTable` read back from the folder).

    ``score = mu + b_u + b_i + dot_std / sqrt(dim) * p_u . q_i + age_decade * a_u * o_i`` with the
    terms :func:`generate` drew for ``(config, seed)``; the written rating is
    ``clip(rint(score + noise), 1, 5)``. No recommender can do better in expectation than
    :meth:`expected` (squared error) or :meth:`median` (absolute error): it is a ceiling, not a
    method.

    Args:
        config: The generator's parameters.
        seed: Its seed.

    Examples:
        >>> import tempfile
        >>> from metalearn.data.ratings import read_movielens_100k
        >>> folder = write_synthetic_movielens(tempfile.mkdtemp(), SyntheticRatings(n_users=30, n_items=50, noise_std=0.0))
        >>> model, table = TrueRatingModel.from_folder(folder), read_movielens_100k(folder)
        >>> users, items = np.array(table.user_ids)[table.user], np.array(table.item_ids)[table.item]
        >>> bool((model.expected(users, items) == table.rating).all())  # no noise: the ratings exactly
        True
    """

    def __init__(self, config: SyntheticRatings, seed: int):
        self.config, self.seed = config, seed
        self._latent = _draw(config, seed)[1]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, check: bool = True) -> TrueRatingModel:
        """The model of a folder written by :func:`write_synthetic_movielens` (its recorded
        parameters and seed, :func:`read_generator_record`).

        Args:
            folder: The folder.
            check: Regenerate ``u.data`` and require it byte-identical to the folder's, so the
                model is that of these very ratings (a few seconds at ML-1M's size).

        Raises:
            ValueError: no record of the parameters (see :func:`read_generator_record`), or
                ``u.data`` differs from what they generate.
        """
        config, seed = read_generator_record(folder)
        arrays, latent = _draw(config, seed)
        if check:
            data = Path(folder).expanduser() / "u.data"
            if not data.is_file() or data.read_bytes() != _u_data(arrays).encode("latin-1"):
                raise ValueError(f"{data} is not what the generator writes for the parameters and seed recorded in "
                                 "its README.txt (edited, or written by another version of metalearn): its true "
                                 "model is unknown; regenerate the folder with write_synthetic_movielens")
        model = cls.__new__(cls)
        model.config, model.seed, model._latent = config, seed, latent
        return model

    def score(self, users, items) -> np.ndarray:
        """The noiseless scores ``(n,)`` of pairs of raw ids ``(n,)`` (strings as in the files, or ints).

        Raises:
            ValueError: an id the generator did not write.
        """
        u = _indices(users, self.config.n_users, "user")
        i = _indices(items, self.config.n_items, "item")
        if u.shape != i.shape:
            raise ValueError(f"users {u.shape} and items {i.shape} must pair up one to one")
        return _score(self.config, self._latent, u.ravel(), i.ravel()).reshape(u.shape)

    def probabilities(self, users, items) -> np.ndarray:
        """``(n, 5)``: the distribution of each pair's rating (:func:`rating_probabilities`)."""
        return rating_probabilities(self.score(users, items), self.config.noise_std)

    def expected(self, users, items) -> np.ndarray:
        """``(n,)``: each pair's expected rating, the least-squared-error prediction."""
        return expected_rating(self.score(users, items), self.config.noise_std)

    def median(self, users, items) -> np.ndarray:
        """``(n,)``: each pair's median rating, the least-absolute-error prediction."""
        return median_rating(self.score(users, items), self.config.noise_std)

    def learner(self, user, items, ratings) -> Callable[[Any], np.ndarray]:
        """The best learner of a user from the support, when everything else is known.

        It knows what no recommender can learn exactly: every item's terms (``b_i``, ``q_i``,
        ``o_i``), the part of ``p_u`` the user's attributes explain, the age x decade term and
        the priors. It learns the rest of the user, the bias ``b_u`` and the own part of ``p_u``
        (prior ``N(0, user_bias_std^2)`` and ``N(0, 1 - user_attribute_share)`` per dimension),
        from the user's ratings by the linear-Gaussian posterior, taking the rating's noise and
        rounding as Gaussian noise of variance ``noise_std^2 + 1/12`` (the clipping at 1 and 5
        is ignored, so it is approximately, not exactly, Bayes-optimal). A query's prediction is
        its expected rating under the posterior predictive score, ``E[clip(rint(s + e), 1, 5)]``,
        ``e ~ N(0, noise_std^2 + var(s))``. The gap between it and :meth:`expected` is what
        a user's few ratings cannot tell; the gap between a method and it is what the method
        does not know about the items or fails to learn from the support.

        Args:
            user: The user's raw id.
            items: The raw ids of the items the user rated (the support), ``(n,)``, possibly empty.
            ratings: Their ratings ``(n,)``.

        Returns:
            ``predict(items) -> (m,)`` expected ratings of other items of this user.
        """
        cfg, z = self.config, self._latent
        u = int(_indices(np.atleast_1d(np.asarray(user)), cfg.n_users, "user")[0])
        i = _indices(np.asarray(items).reshape(-1), cfg.n_items, "item")
        y = np.asarray(ratings, dtype=np.float64).reshape(-1)
        if len(y) != len(i):
            raise ValueError(f"{len(i)} items but {len(y)} ratings: give one rating per item")
        c = cfg.dot_std / np.sqrt(cfg.dim)

        def known(i):  # the score without b_u and the own part of p_u
            return (cfg.mu + z.b_i[i] + c * z.q[i] @ z.p_attr[u] + cfg.age_decade * z.a_u[u] * z.o_i[i])

        def design(i):  # the score's derivative by (b_u, own part of p_u)
            return np.concatenate([np.ones((len(i), 1)), c * z.q[i]], axis=1)

        noise = cfg.noise_std ** 2 + 1.0 / 12.0
        own_var = max(1.0 - cfg.user_attribute_share, 1e-12)  # share 1: the attributes explain p_u
        prior = np.diag([max(cfg.user_bias_std, 1e-6) ** -2] + [1.0 / own_var] * cfg.dim)
        x = design(i)
        cov = np.linalg.inv(prior + x.T @ x / noise)
        mean = cov @ x.T @ (y - known(i)) / noise

        def predict(items) -> np.ndarray:
            j = _indices(np.asarray(items).reshape(-1), cfg.n_items, "item")
            xq = design(j)
            var = np.einsum("nd,de,ne->n", xq, cov, xq)
            return expected_rating(known(j) + xq @ mean, np.sqrt(cfg.noise_std ** 2 + var))

        return predict
