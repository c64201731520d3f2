"""Ratings tables and their readers: MovieLens 100K / 1M files, a generic CSV, zip archives, the
bad inputs each named with file and line, and the checksum-verified download (from a local file)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from metalearn.data import ratings as R
from metalearn.data.download import ChecksumError, UnsafeArchiveError
from metalearn.data.ratings import (
    AGE_GROUPS,
    GENRES_1M,
    GENRES_100K,
    Attribute,
    RatingsError,
    RatingsTable,
    UnknownItemError,
    download_movielens,
    locate_movielens,
    read_movielens,
    read_movielens_1m,
    read_movielens_100k,
    read_ratings_csv,
)

# ------------------------------------------------------------------------------ fixtures


def flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in GENRES_100K)


def write_100k(folder: Path, data: str | None = None, item: str | None = None, user: str | None = None,
               extras: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(data if data is not None else
                                   "2\t10\t4\t881250949\n1\t10\t3\t891717742\n1\t7\t5\t878887116\n")
    (folder / "u.item").write_bytes((item if item is not None else
                                     f"7|Café Noir (1931)|||http://x|{flags('Drama', 'Film-Noir')}\n"
                                     f"10|Heat (1995)|15-Dec-1995||http://y|{flags('Action')}\n"
                                     f"99|Never Rated (1990)|01-Jan-1990||http://z|{flags('Comedy')}\n"
                                     ).encode("latin-1"))
    (folder / "u.user").write_text(user if user is not None else
                                   "1|24|M|technician|85711\n2|53|F|other|T8H1N\n3|40|M|writer|12345\n")
    if extras:
        (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES_100K)) + "\n")
        (folder / "u.occupation").write_text("other\ntechnician\nwriter\n")
    return folder


def write_1m(folder: Path, ratings: str | None = None, movies: str | None = None, users: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(ratings if ratings is not None else
                                        "1::1193::5::978300760\n2::1193::2::978298413\n2::661::3::978302109\n")
    (folder / "movies.dat").write_bytes((movies if movies is not None else
                                         "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                                         "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n").encode("latin-1"))
    (folder / "users.dat").write_text(users if users is not None else
                                      "1::F::1::10::48067\n2::M::56::16::70072-1234\n")
    return folder


def zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, prefix + f.name)
    return archive


def attr(table: RatingsTable, group: str, name: str) -> Attribute:
    return {a.name: a for a in getattr(table, f"{group}_attrs")}[name]


def values(a: Attribute) -> list[tuple[str, ...]]:
    return [a.values(r) for r in range(a.codes.shape[0])]


# ------------------------------------------------------------------------------ readers


def test_movielens_100k_every_field(tmp_path):
    t = read_movielens_100k(write_100k(tmp_path / "ml-100k"))
    assert (t.n_users, t.n_items, t.n_ratings, t.scale, t.name) == (2, 2, 3, (1.0, 5.0), "movielens-100k")
    assert t.user_ids == ("1", "2") and t.item_ids == ("7", "10")  # numeric order; item 99 was never rated
    assert t.item_titles == ("Café Noir (1931)", "Heat (1995)")  # latin-1 decoded
    rows = sorted(zip(t.user.tolist(), t.item.tolist(), t.rating.tolist(), t.timestamp.tolist()))
    assert rows == [(0, 0, 5.0, 878887116), (0, 1, 3.0, 891717742), (1, 1, 4.0, 881250949)]
    assert t.user.dtype == t.item.dtype == t.timestamp.dtype == np.int64 and t.rating.dtype == np.float32
    genre = attr(t, "item", "genre")
    assert genre.vocab == GENRES_100K and genre.codes.shape == (2, 2) and genre.cardinality == 20
    assert values(genre) == [("Drama", "Film-Noir"), ("Action",)]
    assert values(attr(t, "item", "year")) == [("1930s",), ("1990s",)]  # title year, release date
    assert values(attr(t, "user", "age")) == [("18-24",), ("50-55",)]
    assert values(attr(t, "user", "gender")) == [("M",), ("F",)]
    occupation = attr(t, "user", "occupation")
    assert occupation.vocab == ("other", "technician", "writer")  # from u.occupation
    assert values(occupation) == [("technician",), ("other",)]
    zips = attr(t, "user", "zip")
    assert values(zips) == [("8",), ("other",)] and zips.vocab == R.ZIP_REGIONS
    assert [a.name for a in t.item_attrs] == ["genre", "year"]
    assert [a.name for a in t.user_attrs] == ["age", "gender", "occupation", "zip"]
    with pytest.raises(ValueError, match="read-only"):
        t.rating[0] = 1.0


def test_movielens_100k_without_the_optional_lists(tmp_path):
    t = read_movielens_100k(write_100k(tmp_path, extras=False))
    assert attr(t, "item", "genre").vocab == GENRES_100K
    assert attr(t, "user", "occupation").vocab == ("other", "technician")  # the values seen


def test_movielens_1m_every_field(tmp_path):
    t = read_movielens_1m(write_1m(tmp_path))
    assert (t.n_users, t.n_items, t.n_ratings, t.name) == (2, 2, 3, "movielens-1m")
    assert t.item_ids == ("661", "1193") and t.user_ids == ("1", "2")
    assert t.item_titles == ("James and the Giant Peach (1996)", "One Flew Over the Cuckoo's Nest (1975)")
    rows = sorted(zip(t.user.tolist(), t.item.tolist(), t.rating.tolist(), t.timestamp.tolist()))
    assert rows == [(0, 1, 5.0, 978300760), (1, 0, 3.0, 978302109), (1, 1, 2.0, 978298413)]
    genre = attr(t, "item", "genre")
    assert genre.vocab == GENRES_1M and genre.codes.shape == (2, 3)
    assert values(genre) == [("Animation", "Children's", "Musical"), ("Drama",)]
    assert values(attr(t, "item", "year")) == [("1990s",), ("1970s",)]
    age = attr(t, "user", "age")
    assert age.vocab == AGE_GROUPS and values(age) == [("Under 18",), ("56+",)]
    assert values(attr(t, "user", "occupation")) == [("K-12 student",), ("self-employed",)]
    assert values(attr(t, "user", "gender")) == [("F",), ("M",)]
    assert values(attr(t, "user", "zip")) == [("4",), ("7",)]


def test_csv_with_attribute_tables(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,rating,timestamp\nbob,m2,4.5,20\nann,m1,1,10\nann,m2,3,30\n")
    (tmp_path / "i.csv").write_text("item,title,genre,country\nm1,Heat,Action|Crime,US\nm2,Up,Animation,\n"
                                    "m9,Unrated,Drama,FR\n")
    (tmp_path / "u.csv").write_text("user,age\nann,30\nbob,\n")
    t = read_ratings_csv(tmp_path / "r.csv", tmp_path / "i.csv", tmp_path / "u.csv", scale=(0.5, 5))
    assert t.user_ids == ("ann", "bob") and t.item_ids == ("m1", "m2") and t.scale == (0.5, 5.0)
    rows = sorted(zip(t.user.tolist(), t.item.tolist(), t.rating.tolist(), t.timestamp.tolist()))
    assert rows == [(0, 0, 1.0, 10), (0, 1, 3.0, 30), (1, 1, 4.5, 20)]
    assert t.item_titles == ("Heat", "Up")
    assert [a.name for a in t.item_attrs] == ["genre", "country"]
    assert values(attr(t, "item", "genre")) == [("Action", "Crime"), ("Animation",)]
    assert values(attr(t, "item", "country")) == [("US",), ()]  # empty -> code 0
    assert attr(t, "item", "country").codes[:, 0].tolist() == [1, 0]
    assert values(attr(t, "user", "age")) == [("30",), ()]
    plain = read_ratings_csv(tmp_path / "r.csv", scale=(0.5, 5))
    assert plain.item_titles is None and plain.item_attrs == () and plain.user_attrs == ()


def test_csv_custom_columns_and_no_timestamp(tmp_path):
    (tmp_path / "r.csv").write_text("uid,movie,stars\n1,a,5\n2,a,4\n")
    t = read_ratings_csv(tmp_path / "r.csv", user_column="uid", item_column="movie", rating_column="stars")
    assert t.timestamp.tolist() == [0, 0] and t.user_ids == ("1", "2")


def test_zip_archives_and_nested_folders_read_the_same(tmp_path):
    folder = write_100k(tmp_path / "data" / "ml-100k")
    direct = read_movielens_100k(folder)
    archive = zip_folder(folder, tmp_path / "ml-100k.zip", "ml-100k/")
    assert read_movielens(archive).fingerprint == direct.fingerprint
    assert read_movielens(tmp_path / "data").fingerprint == direct.fingerprint  # holds ml-100k/
    zipped_root = tmp_path / "zipped"
    zipped_root.mkdir()
    shutil.copy(archive, zipped_root / "ml-100k.zip")
    assert read_movielens(zipped_root).fingerprint == direct.fingerprint  # holds ml-100k.zip
    one_m = write_1m(tmp_path / "one" / "ml-1m")
    flat = zip_folder(one_m, tmp_path / "flat.zip", "")
    assert read_movielens(flat).fingerprint == read_movielens_1m(one_m).fingerprint
    assert read_movielens(tmp_path / "one", "movielens-1m").name == "movielens-1m"
    with pytest.raises(RatingsError, match=r"ratings\.dat, movies\.dat, users\.dat \(movielens-1m\)"):
        read_movielens(tmp_path / "data", "movielens-1m")


def test_unsafe_archive_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../u.data", "1\t1\t5\t0\n")
    with pytest.raises(UnsafeArchiveError, match=r"\.\./u\.data"):
        read_movielens(archive)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("data, message", [
    ("1\t10\t3\t891717742\n\n1\t7\t5\n", r"u\.data: line 3 has 3 fields.*expected 4"),
    ("1\t10\tgood\t891717742\n", r"u\.data: line 1: the rating 'good' is not a number"),
    ("1\t10\t3\tnoon\n", r"u\.data: line 1: the timestamp 'noon' is not an integer"),
    ("1\t10\t3\t1\n1\t7\t6\t2\n", r"u\.data: line 2: rating 6 is outside the scale 1\.\.5"),
    ("1\t10\t3\t1\n2\t10\t3\t1\n1\t10\t4\t2\n1\t7\t4\t2\n1\t7\t4\t3\n",
     r"u\.data: 2 duplicate \(user, item\) rows; the first is line 3 \(user 1, item 10, already rated on line 1\)"),
])
def test_bad_ratings_lines_are_named(tmp_path, data, message):
    with pytest.raises(RatingsError, match=message):
        read_movielens_100k(write_100k(tmp_path, data=data))


def test_attribute_tables_that_miss_rated_entries(tmp_path):
    with pytest.raises(RatingsError, match=r"u\.item misses 1 rated items \(e\.g\. 10\)"):
        read_movielens_100k(write_100k(tmp_path / "a", item=f"7|A (1990)|||u|{flags('Drama')}\n"))
    with pytest.raises(RatingsError, match=r"users\.dat misses 1 rated users \(e\.g\. 2\)"):
        read_movielens_1m(write_1m(tmp_path / "b", users="1::F::1::10::48067\n"))
    (tmp_path / "r.csv").write_text("user,item,rating\na,x,3\nb,y,4\nc,z,5\n")
    (tmp_path / "i.csv").write_text("item,genre\nx,Drama\n")
    with pytest.raises(RatingsError, match=r"i\.csv misses 2 rated items \(e\.g\. y, z\)"):
        read_ratings_csv(tmp_path / "r.csv", tmp_path / "i.csv")


def test_other_malformed_attribute_lines(tmp_path):
    with pytest.raises(RatingsError, match=r"u\.item: line 1 has 6 fields.*expected 24"):
        read_movielens_100k(write_100k(tmp_path / "a", item="7|A|||u|0\n"))
    with pytest.raises(RatingsError, match=r"users\.dat: line 2: age code '30'"):
        read_movielens_1m(write_1m(tmp_path / "b", users="1::F::1::10::48067\n2::M::30::16::70072\n"))
    with pytest.raises(RatingsError, match=r"movies\.dat: line 1: unknown genre 'Cooking'"):
        read_movielens_1m(write_1m(tmp_path / "c", movies="661::A (1996)::Cooking\n1193::B (1975)::Drama\n"))
    with pytest.raises(RatingsError, match=r"u\.user: line 2: id 1 is listed twice \(first on line 1\)"):
        read_movielens_100k(write_100k(tmp_path / "d", user="1|24|M|other|1\n1|30|F|other|2\n2|5|M|other|3\n"))


@pytest.mark.parametrize("text, message", [
    ("user,item,rating\na,x,3\na,y\n", r"r\.csv: line 3 does not have the header's 3 fields"),
    ("user,item,score\na,x,3\n", r"no column 'rating'; its columns: 'user', 'item', 'score'.*rating_column="),
    ("user,item,rating\na,x,3\na,y,9\n", r"line 3: rating 9 is outside the scale 1\.\.5.*scale="),
    ("user,item,rating\na,x,3\nb,x,n/a\n", r"line 3: the rating 'n/a' is not a number"),
    ("user,item,rating\na,x,3\na,x,4\n", r"1 duplicate \(user, item\) rows; the first is line 3 \(user a, item x"),
    ("user,item,rating\n,x,3\n", r"line 2: the user or item id is empty"),
])
def test_csv_bad_input(tmp_path, text, message):
    (tmp_path / "r.csv").write_text(text)
    with pytest.raises(RatingsError, match=message):
        read_ratings_csv(tmp_path / "r.csv")


def test_folder_in_neither_layout_lists_the_expected_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(RatingsError) as e:
        read_movielens(tmp_path)
    for expected in ("u.data, u.item, u.user (movielens-100k)", "ratings.dat, movies.dat, users.dat (movielens-1m)",
                     "ml-100k/ or ml-1m/", "read_ratings_csv"):
        assert expected in str(e.value)
    with pytest.raises(RatingsError, match=r"lacks u\.item, u\.user"):
        (tmp_path / "u.data").write_text("1\t1\t5\t0\n")
        read_movielens_100k(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        read_movielens(tmp_path / "absent")


# ------------------------------------------------------------------------------ the table


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    a = read_movielens_100k(write_100k(tmp_path / "a"))
    assert a.fingerprint == read_movielens_100k(write_100k(tmp_path / "b")).fingerprint
    assert len(a.fingerprint) == 64
    changed_rating = write_100k(tmp_path / "c", data="2\t10\t4\t881250949\n1\t10\t2\t891717742\n1\t7\t5\t878887116\n")
    changed_user = write_100k(tmp_path / "d", user="1|24|F|technician|85711\n2|53|F|other|T8H1N\n")
    changed_time = write_100k(tmp_path / "e", data="2\t10\t4\t881250949\n1\t10\t3\t891717743\n1\t7\t5\t878887116\n")
    prints = {read_movielens_100k(f).fingerprint for f in (changed_rating, changed_user, changed_time)}
    assert len(prints) == 3 and a.fingerprint not in prints


def test_table_checks_its_fields():
    ok = dict(user=np.array([0, 1]), item=np.array([0, 0]), rating=np.array([3, 4], np.float32),
              timestamp=np.zeros(2, np.int64), user_ids=("a", "b"), item_ids=("x",), item_titles=None,
              item_attrs=(), user_attrs=())
    assert RatingsTable(**ok).n_ratings == 2
    with pytest.raises(RatingsError, match=r"rating must be a 1-d float32 array.*np\.asarray\(rating, dtype=np\.float32\)"):
        RatingsTable(**{**ok, "rating": np.array([3.0, 4.0])})
    with pytest.raises(RatingsError, match=r"user indices must lie in 0\.\.1"):
        RatingsTable(**{**ok, "user": np.array([0, 2])})
    with pytest.raises(RatingsError, match=r"1 duplicate \(user, item\) rows, the first \(user a, item x\)"):
        RatingsTable(**{**ok, "user": np.array([0, 0])})
    with pytest.raises(RatingsError, match=r"outside the scale 1\.\.5"):
        RatingsTable(**{**ok, "rating": np.array([3, 7], np.float32)})
    with pytest.raises(RatingsError, match=r"user attribute 'age' must be an Attribute with one row per user \(2\)"):
        RatingsTable(**{**ok, "user_attrs": (Attribute("age", np.ones((3, 1), np.int64), ("30",)),)})
    with pytest.raises(RatingsError, match=r"codes must lie in 0\.\.1"):
        Attribute("age", np.array([[2]]), ("30",))
    with pytest.raises(RatingsError, match="int64 array"):
        Attribute("age", np.array([1, 0]), ("30",))


def test_item_lookup_by_id_or_title_with_suggestions(tmp_path):
    t = read_movielens_1m(write_1m(tmp_path))
    assert t.item_index("1193") == 1 and t.item_index(661) == 0
    assert t.item_index("one flew over the cuckoo's nest (1975)") == 1
    assert t.find_items("cuckoo's nest") == [1] and t.find_items("James and the Giant Peach") == [0]
    with pytest.raises(UnknownItemError, match=r"unknown item 'Jmes and the Giant Peech'.*did you mean "
                                               r"'James and the Giant Peach \(1996\)' \(id 661\)"):
        t.item_index("Jmes and the Giant Peech")
    with pytest.raises(UnknownItemError, match=r"unknown item 'zzzz' \(neither an item id nor a title\)$"):
        t.item_index("zzzz")


# ------------------------------------------------------------------------------ download, locate


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    archive = zip_folder(write_100k(tmp_path / "src"), tmp_path / "ml-100k.zip", "ml-100k/")
    url = archive.as_uri()
    monkeypatch.setitem(R.MOVIELENS_SOURCES, "movielens-100k", (url, "0" * 32))
    with pytest.raises(ChecksumError, match="checksum mismatch.*Download it again"):
        download_movielens("movielens-100k", tmp_path / "root", quiet=True)
    assert not list((tmp_path / "root" / "movielens-100k").iterdir())  # nothing half-written is left
    good = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(R.MOVIELENS_SOURCES, "movielens-100k", (url, good))
    folder = download_movielens("movielens-100k", tmp_path / "root", quiet=True)
    assert folder == tmp_path / "root" / "movielens-100k" and (folder / "ml-100k.zip").is_file()
    assert read_movielens(locate_movielens("movielens-100k", tmp_path / "root")).n_ratings == 3
    archive.unlink()  # already there: no second download
    assert download_movielens("movielens-100k", tmp_path / "root", quiet=True) == folder
    with pytest.raises(ValueError, match="choose movielens-100k, movielens-1m"):
        download_movielens("movielens-20m", tmp_path)


def test_published_checksums_are_recorded():
    assert R.MOVIELENS_SOURCES["movielens-100k"] == (
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip", "0e33842e24a9c977be4e0107933c0723")
    assert R.MOVIELENS_SOURCES["movielens-1m"][1] == "c4d9eecfca2ab87c1945afe126590906"


def test_locate(tmp_path, monkeypatch):
    folder = write_1m(tmp_path / "data" / "movielens-1m" / "ml-1m")
    assert locate_movielens("movielens-1m", tmp_path / "data") == tmp_path / "data" / "movielens-1m"
    assert locate_movielens("movielens-1m", folder) == folder
    archive = zip_folder(folder, tmp_path / "ml-1m.zip", "ml-1m/")
    assert locate_movielens("movielens-1m", archive) == archive
    monkeypatch.setenv("METALEARN_DATA", str(tmp_path / "data"))
    assert read_movielens(locate_movielens("movielens-1m")).n_ratings == 3
    with pytest.raises(FileNotFoundError, match=r"metalearn prepare-data movielens-100k.*--data-root"):
        locate_movielens("movielens-100k")
    with pytest.raises(ValueError, match="unknown MovieLens dataset"):
        locate_movielens("netflix")
