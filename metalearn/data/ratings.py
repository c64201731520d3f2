"""Ratings tables (user, item, rating, timestamp, plus categorical attributes of users and items),
the MovieLens 100K / 1M readers, a generic CSV reader, and the official MovieLens download.

Readers keep the raw ids of the files as strings and number the users and items that have at
least one rating densely (``0..n-1``, in the natural order of the raw ids: numeric when every id is
an integer). Entries of an attribute file that nobody rated are dropped; a rated user or item that
the attribute file misses is an error. MovieLens attributes:

- items: ``genre`` (multi-valued) and ``year`` (the release decade, e.g. ``"1990s"``, from the
  release date or the ``(1995)`` of the title; missing -> code 0);
- users: ``age`` (ML-1M's seven groups; ML-100K's raw ages bucketed the same way), ``gender``,
  ``occupation`` and ``zip`` (the first digit of the zip code, a region; non-digit -> ``"other"``).

Archives are read in place: a ``.zip`` is opened with :func:`~metalearn.data.download.safe_members`
(which refuses members that would escape a folder) and its members are decoded from memory.

MovieLens (Harper & Konstan, ACM TiiS 2015) may not be redistributed: :func:`download_movielens`
fetches it from GroupLens for the user, and :mod:`metalearn.data.synthetic_ratings` writes data in
the same format for tests and development.
"""

from __future__ import annotations

import csv
import difflib
import functools
import hashlib
import io
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metalearn.data.cache import data_root
from metalearn.data.download import download, safe_members

# Published next to the archives as ml-100k.zip.md5 / ml-1m.zip.md5 by GroupLens. The .md5 files
# could not be fetched here (no network); both values were confirmed as the same digests quoted by
# several independent public projects that verify the GroupLens archives (e.g. the MovieLens
# download configs of eli-osherovich/papers_with_code and PaddlePaddle's dataset cache).
MOVIELENS_SOURCES = {
    "movielens-100k": ("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                       "0e33842e24a9c977be4e0107933c0723"),
    "movielens-1m": ("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                     "c4d9eecfca2ab87c1945afe126590906"),
}
FORMATS = {"movielens-100k": ("ml-100k", ("u.data", "u.item", "u.user")),
           "movielens-1m": ("ml-1m", ("ratings.dat", "movies.dat", "users.dat"))}
"""Dataset name -> (the archive's folder, the files that identify its layout)."""

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")
"""The 19 genre flags of ML-100K's ``u.item``, in column order (its README and ``u.genre``)."""
GENRES_1M = GENRES_100K[1:]
"""The 18 genres of ML-1M's ``movies.dat`` (its README)."""
AGE_GROUPS = ("Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
AGE_CODES_1M = {"1": 0, "18": 1, "25": 2, "35": 3, "45": 4, "50": 5, "56": 6}
"""ML-1M's ``users.dat`` age code -> index into :data:`AGE_GROUPS` (its README)."""
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer",
                  "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
                  "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
                  "unemployed", "writer")
"""ML-1M's occupation codes 0..20 (its README; 0 is '"other" or not specified')."""
ZIP_REGIONS = (*"0123456789", "other")
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)")


class RatingsError(ValueError):
    """A ratings or attribute file is malformed, or a table is inconsistent; the message names the
    file, the line and the fix."""


class UnknownItemError(RatingsError):
    """An item id or title is not in the table; the message suggests close matches."""


# ----------------------------------------------------------------------------------- types


def _frozen_array(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Attribute:
    """A categorical attribute of users or of items.

    Attributes:
        name: e.g. ``"genre"``, ``"year"``, ``"age"``, ``"gender"``, ``"occupation"``, ``"zip"``.
        codes: int64 ``(n_entities, width)``: ``0`` is missing / padding, ``c >= 1`` means
            ``vocab[c - 1]``; width 1 for a single-valued attribute, the largest count for a
            multi-valued one (genres), each row's codes first and zeros after.
        vocab: The values, in code order.

    Examples:
        >>> a = Attribute("genre", np.array([[1, 2], [2, 0]]), ("Action", "Comedy"))
        >>> a.cardinality, a.values(0), a.values(1)
        (3, ('Action', 'Comedy'), ('Comedy',))
    """

    name: str
    codes: np.ndarray
    vocab: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise RatingsError(f"an attribute needs a non-empty name, got {self.name!r}")
        codes = self.codes
        if not isinstance(codes, np.ndarray) or codes.dtype != np.int64 or codes.ndim != 2:
            raise RatingsError(
                f"attribute {self.name!r}: codes must be an int64 array (n_entities, width), got "
                f"{getattr(codes, 'dtype', type(codes).__name__)} {getattr(codes, 'shape', '')}: "
                "pass np.asarray(codes, dtype=np.int64).reshape(n, -1)")
        vocab = tuple(self.vocab)
        if not all(isinstance(v, str) for v in vocab):
            raise RatingsError(f"attribute {self.name!r}: vocab must hold strings")
        if codes.size and (codes.min() < 0 or codes.max() > len(vocab)):
            raise RatingsError(f"attribute {self.name!r}: codes must lie in 0..{len(vocab)} (0 = missing, "
                               f"c = vocab[c - 1]), found {codes.min()}..{codes.max()}")
        object.__setattr__(self, "codes", _frozen_array(codes))
        object.__setattr__(self, "vocab", vocab)

    @property
    def cardinality(self) -> int:
        """``len(vocab) + 1``: the size of an embedding table with the 0 (missing) slot."""
        return len(self.vocab) + 1

    def values(self, row: int) -> tuple[str, ...]:
        """The values of entity ``row`` (empty when missing)."""
        return tuple(self.vocab[c - 1] for c in self.codes[row] if c)


@dataclass(frozen=True, eq=False)
class RatingsTable:
    """Explicit ratings with the attributes of users and items.

    Ratings within a user are in no particular order; every ``(user, item)`` pair appears once.

    Attributes:
        user: int64 ``(n,)``, dense user index ``0..n_users-1``.
        item: int64 ``(n,)``, dense item index ``0..n_items-1``.
        rating: float32 ``(n,)``, within ``scale``.
        timestamp: int64 ``(n,)`` seconds (zeros when the source has none).
        user_ids: The raw id (as in the file) of each dense user.
        item_ids: The raw id of each dense item.
        item_titles: The title of each dense item, or ``None``.
        item_attrs: Each ``.codes.shape[0] == n_items``.
        user_attrs: Each ``.codes.shape[0] == n_users``.
        scale: ``(lowest, highest)`` rating.
        name: A label for messages and caches.

    Examples:
        >>> t = RatingsTable(np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([4, 3, 5], np.float32),
        ...                  np.zeros(3, np.int64), ("u1", "u2"), ("i1", "i2"), ("A (1995)", "B (1980)"),
        ...                  (), ())
        >>> t.n_users, t.n_items, t.n_ratings, t.item_index("i2"), t.item_index("a (1995)")
        (2, 2, 3, 1, 0)
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    item_titles: tuple[str, ...] | None
    item_attrs: tuple[Attribute, ...]
    user_attrs: tuple[Attribute, ...]
    scale: tuple[float, float] = (1.0, 5.0)
    name: str = "ratings"

    def __post_init__(self):
        n = None
        for field, dtype in (("user", np.int64), ("item", np.int64), ("rating", np.float32),
                             ("timestamp", np.int64)):
            a = getattr(self, field)
            if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 1:
                raise RatingsError(
                    f"{self.name}: {field} must be a 1-d {np.dtype(dtype).name} array, got "
                    f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}: pass "
                    f"np.asarray({field}, dtype=np.{np.dtype(dtype).name})")
            if n is not None and len(a) != n:
                raise RatingsError(f"{self.name}: user, item, rating and timestamp must have one entry "
                                   f"per rating; {field} has {len(a)}, user has {n}")
            n = len(a)
            object.__setattr__(self, field, _frozen_array(a))
        object.__setattr__(self, "user_ids", tuple(map(str, self.user_ids)))
        object.__setattr__(self, "item_ids", tuple(map(str, self.item_ids)))
        if self.item_titles is not None:
            object.__setattr__(self, "item_titles", tuple(self.item_titles))
            if len(self.item_titles) != len(self.item_ids):
                raise RatingsError(f"{self.name}: {len(self.item_titles)} item titles for "
                                   f"{len(self.item_ids)} items: give one title per item (or None)")
        for ids, what in ((self.user_ids, "user"), (self.item_ids, "item")):
            if len(set(ids)) != len(ids):
                raise RatingsError(f"{self.name}: the raw {what} ids repeat; each dense {what} needs its own id")
        for index, ids, what in ((self.user, self.user_ids, "user"), (self.item, self.item_ids, "item")):
            if n and (index.min() < 0 or index.max() >= len(ids)):
                raise RatingsError(f"{self.name}: {what} indices must lie in 0..{len(ids) - 1} (one per "
                                   f"raw {what} id), found {index.min()}..{index.max()}")
        lo, hi = (float(s) for s in self.scale)
        object.__setattr__(self, "scale", (lo, hi))
        if not lo < hi:
            raise RatingsError(f"{self.name}: scale must be (lowest, highest) with lowest < highest, got {self.scale}")
        if n and not (np.all(self.rating >= lo) and np.all(self.rating <= hi)):
            bad = int(np.flatnonzero(~((self.rating >= lo) & (self.rating <= hi)))[0])
            raise RatingsError(f"{self.name}: rating {self.rating[bad]} (row {bad}) is outside the scale "
                               f"{lo:g}..{hi:g}: fix the rating or declare the scale")
        if n:
            pairs = self.user * len(self.item_ids) + self.item
            uniq, counts = np.unique(pairs, return_counts=True)
            if len(uniq) != n:
                first = uniq[counts > 1][0]
                raise RatingsError(
                    f"{self.name}: {n - len(uniq)} duplicate (user, item) rows, the first (user "
                    f"{self.user_ids[first // len(self.item_ids)]}, item "
                    f"{self.item_ids[first % len(self.item_ids)]}): keep one rating per pair")
        for attrs, count, what in ((self.item_attrs, len(self.item_ids), "item"),
                                   (self.user_attrs, len(self.user_ids), "user")):
            attrs = tuple(attrs)
            object.__setattr__(self, f"{what}_attrs", attrs)
            names = [a.name for a in attrs]
            if len(set(names)) != len(names):
                raise RatingsError(f"{self.name}: {what} attribute names repeat ({names}): name each once")
            for a in attrs:
                if not isinstance(a, Attribute) or a.codes.shape[0] != count:
                    raise RatingsError(f"{self.name}: {what} attribute {getattr(a, 'name', a)!r} must be "
                                       f"an Attribute with one row per {what} ({count}), got "
                                       f"{getattr(getattr(a, 'codes', None), 'shape', None)}")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_ratings(self) -> int:
        return len(self.rating)

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 hex digest of the arrays, the attributes, the ids, the titles and the scale (not
        of ``name``): equal for equal data, different when any rating, id or attribute differs."""
        h = hashlib.sha256()
        for a in (self.user, self.item, self.rating, self.timestamp):
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        for label, strings in (("users", self.user_ids), ("items", self.item_ids),
                               ("titles", self.item_titles or ())):
            h.update(f"{label}:{len(strings)}\n".encode())
            h.update("\x00".join(strings).encode("utf-8"))
        for group, attrs in (("item_attrs", self.item_attrs), ("user_attrs", self.user_attrs)):
            for a in attrs:
                h.update(f"{group}:{a.name}:{a.codes.shape}\n".encode())
                h.update(a.codes.tobytes())
                h.update("\x00".join(a.vocab).encode("utf-8"))
        h.update(repr(self.scale).encode())
        return h.hexdigest()

    @functools.cached_property
    def _item_lookup(self) -> tuple[dict[str, int], dict[str, list[int]], dict[str, list[int]]]:
        titles: dict[str, list[int]] = {}
        bare: dict[str, list[int]] = {}  # titles without their "(year)"
        for i, t in enumerate(self.item_titles or ()):
            titles.setdefault(t.strip().lower(), []).append(i)
            bare.setdefault(_YEAR_IN_TITLE.sub("", t).strip().lower(), []).append(i)
        return {raw: i for i, raw in enumerate(self.item_ids)}, titles, bare

    def item_index(self, key: str | int) -> int:
        """The dense index of an item given its raw id or its title (case-insensitive; without its
        ``(year)`` too, when only one item has that title).

        Raises:
            UnknownItemError: no such id or title (close titles and ids suggested), or a title
                that several items share (their ids listed: pass the id).
        """
        ids, titles, bare = self._item_lookup
        key = str(key).strip()
        if key in ids:
            return ids[key]
        found = titles.get(key.lower(), []) or bare.get(key.lower(), [])
        if len(found) == 1:
            return found[0]
        if found:
            raise UnknownItemError(f"{self.name}: the title {key!r} belongs to items "
                                   f"{', '.join(self.item_ids[i] for i in found)}: give the item id")
        close = self.find_items(key)
        hint = ("; did you mean " + ", ".join(self._describe(i) for i in close) + "?") if close else ""
        raise UnknownItemError(f"{self.name}: unknown item {key!r} (neither an item id nor a title){hint}")

    def _describe(self, i: int) -> str:
        title = self.item_titles[i] if self.item_titles is not None else None
        return f"{title!r} (id {self.item_ids[i]})" if title else f"id {self.item_ids[i]!r}"

    def find_items(self, query: str, n: int = 5) -> list[int]:
        """Dense indices of up to ``n`` items whose title or id is close to ``query``, best first.

        Titles are compared case-insensitively with and without their ``(year)``; a title that
        contains the query as a word sequence counts as close too.

        Examples:
            >>> t = RatingsTable(np.array([0]), np.array([0]), np.array([4], np.float32),
            ...                  np.zeros(1, np.int64), ("u",), ("1", "2"), ("Toy Story (1995)", "Heat (1995)"), (), ())
            >>> t.find_items("toy story"), t.find_items("Hat")
            ([0], [1])
        """
        query = str(query).strip().lower()
        if not query:
            return []
        keys: list[tuple[str, int]] = [(raw.lower(), i) for i, raw in enumerate(self.item_ids)]
        for i, t in enumerate(self.item_titles or ()):
            t = t.strip().lower()
            keys += [(t, i), (_YEAR_IN_TITLE.sub("", t).strip(), i)]
        scored: dict[int, float] = {}
        for text, i in keys:
            score = difflib.SequenceMatcher(None, query, text).ratio()
            if len(query) >= 3 and re.search(rf"\b{re.escape(query)}\b", text):
                score = max(score, 0.9)
            if score >= 0.6 and score > scored.get(i, 0.0):
                scored[i] = score
        return sorted(scored, key=lambda i: (-scored[i], i))[:n]


# ----------------------------------------------------------------------------------- parsing


class _Files:
    """The files of a folder, or of one folder inside a zip archive, by base name."""

    def __init__(self, path: Path, prefix: str = "", archive: zipfile.ZipFile | None = None):
        self.path, self.prefix, self.archive = path, prefix, archive
        self._members = ({m.filename for m in safe_members(archive)} if archive is not None else None)

    def has(self, name: str) -> bool:
        if self.archive is not None:
            return self.prefix + name in self._members
        return (self.path / name).is_file()

    def where(self, name: str) -> str:
        return f"{self.path}:{self.prefix}{name}" if self.archive is not None else str(self.path / name)

    def text(self, name: str, encoding: str) -> str:
        data = self.archive.read(self.prefix + name) if self.archive is not None else (self.path / name).read_bytes()
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            raise RatingsError(f"{self.where(name)}: line {line} is not {encoding} text: save the file as "
                               f"{encoding}") from e


def _split_lines(text: str, sep: str, n_fields: int | None, where: str,
                 min_fields: int | None = None) -> tuple[list[list[str]], list[int]]:
    """Fields of every non-blank line and its 1-based line number, refusing a wrong field count."""
    rows, numbers = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(sep)
        ok = len(fields) == n_fields if n_fields is not None else len(fields) >= (min_fields or 1)
        if not ok:
            expected = n_fields if n_fields is not None else f"at least {min_fields}"
            raise RatingsError(f"{where}: line {number} has {len(fields)} fields separated by {sep!r}, "
                               f"expected {expected}: fix or remove the line ({line[:80]!r})")
        rows.append(fields)
        numbers.append(number)
    if not rows:
        raise RatingsError(f"{where} holds no rows: it needs one line per record")
    return rows, numbers


def _numbers(values: Sequence[str], dtype, what: str, where: str, numbers: Sequence[int]) -> np.ndarray:
    """``values`` parsed as ``dtype`` (vectorised), naming the first line that is not a number."""
    try:
        out = np.asarray([v.strip() for v in values]).astype(dtype)
        if np.issubdtype(out.dtype, np.floating) and not np.all(np.isfinite(out)):
            raise ValueError("not finite")
        return out
    except (ValueError, OverflowError):
        for value, number in zip(values, numbers):
            try:
                if not np.isfinite(np.asarray(value.strip()).astype(dtype)):
                    raise ValueError
            except (ValueError, OverflowError):
                kind = "an integer" if np.issubdtype(np.dtype(dtype), np.integer) else "a number"
                raise RatingsError(f"{where}: line {number}: the {what} {value!r} is not {kind}: "
                                   "fix or remove the line") from None
        raise


def _natural_order(ids: Sequence[str]) -> list[str]:
    unique = set(ids)
    if all(re.fullmatch(r"-?\d+", i) for i in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _check_scale(rating: np.ndarray, scale: tuple[float, float], where: str, numbers: Sequence[int]) -> None:
    lo, hi = scale
    bad = np.flatnonzero((rating < lo) | (rating > hi))
    if len(bad):
        raise RatingsError(f"{where}: line {numbers[bad[0]]}: rating {rating[bad[0]]:g} is outside the "
                           f"scale {lo:g}..{hi:g} ({len(bad)} such rows): fix the ratings or declare the "
                           "scale (scale=(lowest, highest))")


def _ratings_arrays(users: Sequence[str], items: Sequence[str], rating: np.ndarray, timestamp: np.ndarray,
                    where: str, numbers: Sequence[int]):
    """Dense indices of the raw ids, refusing duplicate ``(user, item)`` rows."""
    user_ids, item_ids = _natural_order(users), _natural_order(items)
    uix = {u: i for i, u in enumerate(user_ids)}
    iix = {it: i for i, it in enumerate(item_ids)}
    user = np.fromiter((uix[u] for u in users), np.int64, len(users))
    item = np.fromiter((iix[i] for i in items), np.int64, len(items))
    pairs = user * len(item_ids) + item
    order = np.argsort(pairs, kind="stable")
    dup = np.flatnonzero(pairs[order][1:] == pairs[order][:-1])
    if len(dup):
        first_rows = order[dup + 1]
        row = int(first_rows.min())
        earlier = int(order[dup[np.argmin(first_rows)]])
        raise RatingsError(
            f"{where}: {len(dup)} duplicate (user, item) rows; the first is line {numbers[row]} (user "
            f"{users[row]}, item {items[row]}, already rated on line {numbers[earlier]}): keep one rating "
            "per user and item")
    return user, item, rating.astype(np.float32), timestamp.astype(np.int64), tuple(user_ids), tuple(item_ids)


def _align(rows_by_id: dict[str, int], needed: Sequence[str], what: str, where: str) -> np.ndarray:
    """Row of each needed id in an attribute file, refusing ids the file misses."""
    missing = [i for i in needed if i not in rows_by_id]
    if missing:
        raise RatingsError(f"{where} misses {len(missing)} rated {what}s (e.g. "
                           f"{', '.join(missing[:5])}): add a line for each, or drop their ratings")
    return np.fromiter((rows_by_id[i] for i in needed), np.int64, len(needed))


def _index_rows(ids: Sequence[str], where: str, numbers: Sequence[int]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for r, (i, number) in enumerate(zip(ids, numbers)):
        if i in rows:
            raise RatingsError(f"{where}: line {number}: id {i} is listed twice (first on line "
                               f"{numbers[rows[i]]}): keep one line per id")
        rows[i] = r
    return rows


def _single(name: str, labels: Sequence[str | None], vocab: Sequence[str] | None = None) -> Attribute:
    """A single-valued attribute of ``labels`` (``None`` / ``""``: missing); vocab sorted unless given."""
    vocab = tuple(vocab) if vocab is not None else tuple(sorted({v for v in labels if v}))
    index = {v: c for c, v in enumerate(vocab, 1)}
    return Attribute(name, np.array([[index[v] if v else 0] for v in labels], np.int64).reshape(-1, 1), vocab)


def _multi(name: str, values: Sequence[Sequence[str]], vocab: Sequence[str] | None = None) -> Attribute:
    """A multi-valued attribute (each row's codes ascending, zero-padded)."""
    vocab = tuple(vocab) if vocab is not None else tuple(sorted({v for row in values for v in row}))
    index = {v: c for c, v in enumerate(vocab, 1)}
    width = max(1, max((len(set(row)) for row in values), default=1))
    codes = np.zeros((len(values), width), np.int64)
    for r, row in enumerate(values):
        c = sorted({index[v] for v in row})
        codes[r, :len(c)] = c
    return Attribute(name, codes, vocab)


def _decade(year: int | None) -> str | None:
    return f"{year // 10 * 10}s" if year else None


def _year_attribute(years: Sequence[int | None]) -> Attribute:
    decades = [_decade(y) for y in years]
    return _single("year", decades, sorted({d for d in decades if d}))


def _title_year(title: str) -> int | None:
    found = _YEAR_IN_TITLE.findall(title)
    return int(found[-1]) if found else None


def age_group(age: int) -> int:
    """Index into :data:`AGE_GROUPS` of an age in years (ML-1M's groups).

    Examples:
        >>> [AGE_GROUPS[age_group(a)] for a in (7, 18, 24, 25, 49, 50, 56, 73)]
        ['Under 18', '18-24', '18-24', '25-34', '45-49', '50-55', '56+', '56+']
    """
    return int(np.searchsorted(np.array([18, 25, 35, 45, 50, 56]), age, side="right"))


def zip_region(code: str) -> str:
    """The first digit of a zip code (a US region), or ``"other"`` (e.g. a Canadian postcode).

    Examples:
        >>> zip_region("85711"), zip_region("55117-2345"), zip_region("T8H1N")
        ('8', '5', 'other')
    """
    code = code.strip()
    return code[0] if code[:1].isdigit() else "other"


# ----------------------------------------------------------------------------------- MovieLens


def _movielens_ratings(files: _Files, name: str, sep: str):
    """``(user, item, rating, timestamp, user_ids, item_ids)`` of a MovieLens ratings file
    (``user sep item sep rating sep timestamp``, 1-5 stars)."""
    where = files.where(name)
    rows, numbers = _split_lines(files.text(name, "latin-1"), sep, 4, where)
    rating = _numbers([r[2] for r in rows], np.float64, "rating", where, numbers)
    timestamp = _numbers([r[3] for r in rows], np.int64, "timestamp", where, numbers)
    _check_scale(rating, (1.0, 5.0), where, numbers)
    return _ratings_arrays([r[0].strip() for r in rows], [r[1].strip() for r in rows], rating, timestamp,
                           where, numbers)


def _read_100k(files: _Files, name: str) -> RatingsTable:
    user, item, rating, timestamp, user_ids, item_ids = _movielens_ratings(files, "u.data", "\t")
    genres = GENRES_100K
    if files.has("u.genre"):
        g_rows, _ = _split_lines(files.text("u.genre", "latin-1"), "|", 2, files.where("u.genre"))
        genres = tuple(g[0] for g in sorted(g_rows, key=lambda g: int(g[1])))
    where = files.where("u.item")
    i_rows, i_numbers = _split_lines(files.text("u.item", "latin-1"), "|", 5 + len(genres), where)
    rows_of = _align(_index_rows([r[0].strip() for r in i_rows], where, i_numbers), item_ids, "item", where)
    titles, years, item_genres = [], [], []
    for r in rows_of:
        fields, number = i_rows[r], i_numbers[r]
        flags = [f.strip() for f in fields[5:]]
        if any(f not in ("0", "1") for f in flags):
            raise RatingsError(f"{where}: line {number}: the genre flags must be 0 or 1, got "
                               f"{'|'.join(flags)}: fix the line")
        date = re.search(r"(\d{4})\s*$", fields[2].strip())
        titles.append(fields[1].strip())
        years.append(int(date.group(1)) if date else _title_year(fields[1]))
        item_genres.append([g for g, f in zip(genres, flags) if f == "1"])
    where = files.where("u.user")
    u_rows, u_numbers = _split_lines(files.text("u.user", "latin-1"), "|", 5, where)
    rows_of = _align(_index_rows([r[0].strip() for r in u_rows], where, u_numbers), user_ids, "user", where)
    ages = _numbers([u_rows[r][1] for r in rows_of], np.int64, "age", where, [u_numbers[r] for r in rows_of])
    occupations = None
    if files.has("u.occupation"):
        occupations = [line.strip() for line in files.text("u.occupation", "latin-1").splitlines() if line.strip()]
    occ = [u_rows[r][3].strip() for r in rows_of]
    if occupations is not None and (unknown := sorted(set(occ) - set(occupations))):
        raise RatingsError(f"{where}: occupations {unknown[:5]} are not in {files.where('u.occupation')}: "
                           "add them there or fix u.user")
    user_attrs = (
        _single("age", [AGE_GROUPS[age_group(a)] for a in ages], AGE_GROUPS),
        _single("gender", [u_rows[r][2].strip() for r in rows_of]),
        _single("occupation", occ, occupations),
        _single("zip", [zip_region(u_rows[r][4]) for r in rows_of], ZIP_REGIONS),
    )
    item_attrs = (_multi("genre", item_genres, genres), _year_attribute(years))
    return RatingsTable(user, item, rating, timestamp, user_ids, item_ids, tuple(titles), item_attrs,
                        user_attrs, (1.0, 5.0), name)


def _read_1m(files: _Files, name: str) -> RatingsTable:
    user, item, rating, timestamp, user_ids, item_ids = _movielens_ratings(files, "ratings.dat", "::")
    where = files.where("movies.dat")
    m_rows, m_numbers = _split_lines(files.text("movies.dat", "latin-1"), "::", 3, where)
    rows_of = _align(_index_rows([r[0].strip() for r in m_rows], where, m_numbers), item_ids, "item", where)
    titles = [m_rows[r][1].strip() for r in rows_of]
    item_genres = []
    for r in rows_of:
        genres = [g.strip() for g in m_rows[r][2].split("|") if g.strip()]
        if unknown := [g for g in genres if g not in GENRES_1M]:
            raise RatingsError(f"{where}: line {m_numbers[r]}: unknown genre {unknown[0]!r}; ML-1M's genres "
                               f"are {', '.join(GENRES_1M)}")
        item_genres.append(genres)
    where = files.where("users.dat")
    u_rows, u_numbers = _split_lines(files.text("users.dat", "latin-1"), "::", 5, where)
    rows_of = _align(_index_rows([r[0].strip() for r in u_rows], where, u_numbers), user_ids, "user", where)
    ages, occupations = [], []
    for r in rows_of:
        age, occ = u_rows[r][2].strip(), u_rows[r][3].strip()
        if age not in AGE_CODES_1M:
            raise RatingsError(f"{where}: line {u_numbers[r]}: age code {age!r} is not one of ML-1M's "
                               f"{', '.join(AGE_CODES_1M)}: fix the line")
        if not occ.isdigit() or int(occ) >= len(OCCUPATIONS_1M):
            raise RatingsError(f"{where}: line {u_numbers[r]}: occupation code {occ!r} is not one of "
                               f"ML-1M's 0..{len(OCCUPATIONS_1M) - 1}: fix the line")
        ages.append(AGE_GROUPS[AGE_CODES_1M[age]])
        occupations.append(OCCUPATIONS_1M[int(occ)])
    user_attrs = (
        _single("age", ages, AGE_GROUPS),
        _single("gender", [u_rows[r][1].strip() for r in rows_of]),
        _single("occupation", occupations, OCCUPATIONS_1M),
        _single("zip", [zip_region(u_rows[r][4]) for r in rows_of], ZIP_REGIONS),
    )
    item_attrs = (_multi("genre", item_genres, GENRES_1M), _year_attribute([_title_year(t) for t in titles]))
    return RatingsTable(user, item, rating, timestamp, user_ids, item_ids, tuple(titles), item_attrs,
                        user_attrs, (1.0, 5.0), name)


_READERS = {"movielens-100k": _read_100k, "movielens-1m": _read_1m}


def _need_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: pass the folder that holds the MovieLens files")
    return folder


def _missing_error(files: _Files, fmt: str) -> RatingsError:
    need = FORMATS[fmt][1]
    missing = [f for f in need if not files.has(f)]
    return RatingsError(f"{files.where('')} is not a {fmt} folder: it lacks {', '.join(missing)} "
                        f"(expected {', '.join(need)} there)")


def read_movielens_100k(folder: str | os.PathLike) -> RatingsTable:
    """Read MovieLens 100K: ``u.data``, ``u.item``, ``u.user`` (and ``u.genre``, ``u.occupation``
    when present) in ``folder``.

    Args:
        folder: The extracted ``ml-100k/`` folder (or one in the same format, e.g.
            :func:`~metalearn.data.synthetic_ratings.write_synthetic_movielens`).

    Returns:
        A :class:`RatingsTable` on the 1-5 scale with item attributes ``genre``, ``year`` and user
        attributes ``age``, ``gender``, ``occupation``, ``zip``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        RatingsError: a file is missing or malformed (file and line named), a rating is outside
            1-5, a (user, item) pair repeats, or ``u.item`` / ``u.user`` miss rated items / users.

    Examples:
        >>> import tempfile
        >>> from metalearn.data.synthetic_ratings import SyntheticRatings, write_synthetic_movielens
        >>> folder = write_synthetic_movielens(tempfile.mkdtemp(), SyntheticRatings(n_users=30, n_items=50))
        >>> t = read_movielens_100k(folder)
        >>> t.n_users, t.n_items, [a.name for a in t.item_attrs], [a.name for a in t.user_attrs]
        (30, 50, ['genre', 'year'], ['age', 'gender', 'occupation', 'zip'])
    """
    files = _Files(_need_folder(folder))
    if not all(files.has(f) for f in FORMATS["movielens-100k"][1]):
        raise _missing_error(files, "movielens-100k")
    return _read_100k(files, "movielens-100k")


def read_movielens_1m(folder: str | os.PathLike) -> RatingsTable:
    """Read MovieLens 1M: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated) in
    ``folder``; age and occupation codes become the labels of ML-1M's README.

    Returns:
        A :class:`RatingsTable` as :func:`read_movielens_100k` describes (18 genres).

    Raises:
        FileNotFoundError, RatingsError: as :func:`read_movielens_100k`; also an age, occupation
            or genre that ML-1M does not define.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "ratings.dat").write_text("1::10::5::978300760\\n2::10::3::978302109\\n")
        >>> _ = (d / "movies.dat").write_text("10::GoldenEye (1995)::Action|Adventure|Thriller\\n")
        >>> _ = (d / "users.dat").write_text("1::F::1::10::48067\\n2::M::56::16::70072\\n")
        >>> t = read_movielens_1m(d)
        >>> t.item_attrs[0].values(0), t.item_attrs[1].values(0), t.user_attrs[0].values(1)
        (('Action', 'Adventure', 'Thriller'), ('1990s',), ('56+',))
    """
    files = _Files(_need_folder(folder))
    if not all(files.has(f) for f in FORMATS["movielens-1m"][1]):
        raise _missing_error(files, "movielens-1m")
    return _read_1m(files, "movielens-1m")


def _candidates(path: Path) -> list[_Files]:
    """Places a MovieLens layout may be in: the folder, its ``ml-100k/`` / ``ml-1m/``, and the
    ``ml-100k.zip`` / ``ml-1m.zip`` inside it; or the archive's root and its folders."""
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise RatingsError(f"{path} is neither a folder nor a zip archive: pass the MovieLens folder "
                               "or the ml-100k.zip / ml-1m.zip from GroupLens")
        archive = zipfile.ZipFile(path)
        return [_Files(path, p, archive) for p in ("", "ml-100k/", "ml-1m/")]
    found = [_Files(path), *(_Files(path / sub) for sub in ("ml-100k", "ml-1m") if (path / sub).is_dir())]
    for sub in ("ml-100k.zip", "ml-1m.zip"):
        if (path / sub).is_file():
            found += _candidates(path / sub)
    return found


def _detect(path: Path, want: str | None = None) -> tuple[str, _Files] | None:
    for files in _candidates(path):
        for fmt, (_, need) in FORMATS.items():
            if (want is None or fmt == want) and all(files.has(f) for f in need):
                return fmt, files
    return None


def _layout_error(path: Path, want: str | None = None) -> RatingsError:
    kinds = [want] if want else list(FORMATS)
    expected = "; or ".join(f"{', '.join(FORMATS[k][1])} ({k})" for k in kinds)
    return RatingsError(f"{path} holds no MovieLens data: expected {expected} in the folder itself, in "
                        f"its {' or '.join(FORMATS[k][0] + '/' for k in kinds)} subfolder, or in the "
                        "GroupLens zip archive; for other data use read_ratings_csv")


def read_movielens(path: str | os.PathLike, name: str | None = None) -> RatingsTable:
    """Read MovieLens 100K or 1M from a folder, a folder holding ``ml-100k/`` / ``ml-1m/`` (or their
    zips), or a GroupLens ``.zip`` archive (read in place, each member checked by
    :func:`~metalearn.data.download.safe_members`). The format is detected from the file names.

    Args:
        path: The folder or archive (e.g. from :func:`locate_movielens`).
        name: ``movielens-100k`` or ``movielens-1m`` to read only that format (``None``: either).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RatingsError: neither layout is there (the files expected in each place listed), or a
            file is malformed (as :func:`read_movielens_100k`).
        UnsafeArchiveError: an archive member would escape its folder.

    Examples:
        >>> import tempfile, shutil
        >>> from metalearn.data.synthetic_ratings import SyntheticRatings, write_synthetic_movielens
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = write_synthetic_movielens(root / "ml-100k", SyntheticRatings(n_users=25, n_items=40))
        >>> read_movielens(root).n_users, read_movielens(shutil.make_archive(root / "a", "zip", root)).n_items
        (25, 40)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder {path}: pass the MovieLens folder or zip archive")
    if name is not None and name not in FORMATS:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose {', '.join(FORMATS)}")
    found = _detect(path, name)
    if found is None:
        raise _layout_error(path, name)
    fmt, files = found
    return _READERS[fmt](files, fmt)


def locate_movielens(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder or archive to read for ``name`` (``movielens-100k`` or ``movielens-1m``).

    Looks in ``root`` (a folder or zip) and its ``<name>/`` when given, else in
    ``$METALEARN_DATA/<name>`` (``~/.cache/metalearn/<name>`` without the variable).

    Raises:
        ValueError: an unknown ``name``.
        FileNotFoundError: the data is not there (the fix: ``metalearn prepare-data <name>`` or
            ``--data-root``).

    Examples:
        >>> import tempfile
        >>> from metalearn.data.synthetic_ratings import SyntheticRatings, write_synthetic_movielens
        >>> root = Path(tempfile.mkdtemp())
        >>> folder = write_synthetic_movielens(root / "movielens-100k", SyntheticRatings(n_users=25, n_items=40))
        >>> locate_movielens("movielens-100k", root) == folder
        True
    """
    if name not in FORMATS:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose {', '.join(FORMATS)}")
    places = ([Path(root).expanduser() / name, Path(root).expanduser()] if root is not None
              else [data_root() / name])
    for place in places:
        if place.exists() and _detect(place, name) is not None:
            return place
    raise FileNotFoundError(
        f"{name} not found in {' or '.join(map(str, places))} (expected {', '.join(FORMATS[name][1])}, "
        f"an {FORMATS[name][0]}/ folder or {FORMATS[name][0]}.zip): run `metalearn prepare-data {name}` "
        "to download it, or pass --data-root (METALEARN_DATA) pointing at the folder or zip that holds it")


def download_movielens(name: str, dest: str | os.PathLike | None = None, *, quiet: bool = False) -> Path:
    """Download the official GroupLens archive of ``name`` into ``<dest>/<name>/`` (md5-verified,
    written atomically; kept as a zip and read in place) unless it is already there.

    Args:
        name: ``movielens-100k`` or ``movielens-1m``.
        dest: The data root (default ``$METALEARN_DATA`` or ``~/.cache/metalearn``).
        quiet: No progress line.

    Returns:
        The folder ``<dest>/<name>``, ready for :func:`read_movielens`.

    Raises:
        ValueError: an unknown ``name``.
        ChecksumError: the archive's md5 is not the published one (the file is removed; download
            again or place a good copy there).
        urllib.error.URLError: no network (the message names the URL).

    Examples:
        >>> folder = download_movielens("movielens-100k", "~/data")  # doctest: +SKIP
        >>> read_movielens(folder).n_ratings  # doctest: +SKIP
        100000
    """
    if name not in MOVIELENS_SOURCES:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose {', '.join(MOVIELENS_SOURCES)}")
    url, md5 = MOVIELENS_SOURCES[name]
    folder = data_root(dest) / name
    if folder.is_dir() and _detect(folder, name) is not None:
        return folder
    archive = download(url, folder / url.rsplit("/", 1)[1], md5, quiet=quiet)
    with zipfile.ZipFile(archive) as z:
        safe_members(z)
    return folder


# ----------------------------------------------------------------------------------- CSV


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str], list[int]]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise RatingsError(f"{path}: line {line} is not UTF-8: save the file as UTF-8") from e
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    records, numbers = [], []
    for record in reader:
        if None in record or any(v is None for v in record.values()):
            raise RatingsError(f"{path}: line {reader.line_num} does not have the header's {len(columns)} "
                               "fields: fix or remove the line (quote values that hold commas)")
        if not any(v.strip() for v in record.values()):
            continue
        records.append({k: v.strip() for k, v in record.items()})
        numbers.append(reader.line_num)
    if not records:
        raise RatingsError(f"{path} holds no rows: it needs a header and one row per record")
    return records, columns, numbers


def _need_columns(path: Path, columns: Sequence[str], needed: dict[str, str]) -> None:
    for column, argument in needed.items():
        if column not in columns:
            raise RatingsError(f"{path} has no column {column!r}; its columns: {', '.join(map(repr, columns))}. "
                               f"Name it with {argument}=")


def _attribute_table(path: Path, key: str, needed: Sequence[str], what: str, argument: str,
                     skip: Sequence[str] = ()) -> tuple[list[Attribute], dict[str, list[str]]]:
    """Attributes of every column but ``key`` and ``skip`` (``|`` = several values), rows aligned
    to ``needed``; the ``skip`` columns' values returned raw."""
    records, columns, numbers = _read_csv(path)
    _need_columns(path, columns, {key: argument})
    rows_of = _align(_index_rows([r[key] for r in records], str(path), numbers), needed, what, str(path))
    attrs, raw = [], {}
    for column in columns:
        if column == key:
            continue
        values = [records[r][column] for r in rows_of]
        if column in skip:
            raw[column] = values
        elif any("|" in v for v in values):
            attrs.append(_multi(column, [[p.strip() for p in v.split("|") if p.strip()] for v in values]))
        else:
            attrs.append(_single(column, values))
    return attrs, raw


def read_ratings_csv(ratings: str | os.PathLike, items: str | os.PathLike | None = None,
                     users: str | os.PathLike | None = None, *, user_column: str = "user",
                     item_column: str = "item", rating_column: str = "rating",
                     timestamp_column: str = "timestamp", title_column: str = "title",
                     scale: tuple[float, float] = (1, 5), name: str = "ratings") -> RatingsTable:
    """Read a CSV of ratings (header row, UTF-8) and optional CSVs of item and user attributes.

    Every column of the attribute files other than the id (and the item title) is a categorical
    attribute; a value holding ``|`` makes that column multi-valued (e.g. genres
    ``Action|Comedy``); an empty value is missing (code 0).

    Args:
        ratings: CSV with the user, item and rating columns (a timestamp column optional).
        items: CSV keyed by ``item_column`` (with an optional ``title_column``).
        users: CSV keyed by ``user_column``.
        user_column, item_column, rating_column, timestamp_column, title_column: Column names.
        scale: ``(lowest, highest)`` rating; a rating outside it is an error.
        name: The table's name.

    Raises:
        FileNotFoundError: a file does not exist.
        RatingsError: a missing column (the file's columns listed), a row with a wrong field
            count, a non-numeric or out-of-scale rating, a duplicate (user, item) pair, or an
            attribute file that misses rated items / users (each with file and line).

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "r.csv").write_text("user,item,rating\\nann,m1,4\\nann,m2,2.5\\nbob,m1,5\\n")
        >>> _ = (d / "i.csv").write_text("item,title,genre\\nm1,Heat,Action|Crime\\nm2,Up,Animation\\n")
        >>> t = read_ratings_csv(d / "r.csv", d / "i.csv")
        >>> t.user_ids, t.item_titles, t.item_attrs[0].values(0), t.rating.tolist()
        (('ann', 'bob'), ('Heat', 'Up'), ('Action', 'Crime'), [4.0, 2.5, 5.0])
    """
    path = Path(ratings).expanduser()
    records, columns, numbers = _read_csv(path)
    _need_columns(path, columns, {user_column: "user_column", item_column: "item_column",
                                  rating_column: "rating_column"})
    for r, number in zip(records, numbers):
        if not r[user_column] or not r[item_column]:
            raise RatingsError(f"{path}: line {number}: the user or item id is empty: fill it in or remove the line")
    where = str(path)
    rating = _numbers([r[rating_column] for r in records], np.float64, "rating", where, numbers)
    if timestamp_column in columns:
        timestamp = _numbers([r[timestamp_column] for r in records], np.int64, "timestamp", where, numbers)
    else:
        timestamp = np.zeros(len(records), np.int64)
    scale = (float(scale[0]), float(scale[1]))
    _check_scale(rating, scale, where, numbers)
    user, item, rating, timestamp, user_ids, item_ids = _ratings_arrays(
        [r[user_column] for r in records], [r[item_column] for r in records], rating, timestamp, where, numbers)
    item_attrs, user_attrs, titles = [], [], None
    if items is not None:
        item_attrs, raw = _attribute_table(Path(items).expanduser(), item_column, item_ids, "item",
                                           "item_column", skip=(title_column,))
        titles = tuple(raw[title_column]) if title_column in raw else None
    if users is not None:
        user_attrs, _ = _attribute_table(Path(users).expanduser(), user_column, user_ids, "user", "user_column")
    return RatingsTable(user, item, rating, timestamp, user_ids, item_ids, titles, tuple(item_attrs),
                        tuple(user_attrs), scale, name)
