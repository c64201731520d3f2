"""The three real intent datasets: counts and fold coverage as their MANIFESTs state them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import shared_data_root

from metalearn.data import EpisodeSampler
from metalearn.data import intents as I

pytestmark = [pytest.mark.data, pytest.mark.filterwarnings("ignore:.*were truncated")]

FOLD_SIZES = {"banking77": [(25, 25, 27)] * 5, "clinc150": [(50, 50, 50)] * 5,
              "hwu64": [(16, 23, 25), (30, 15, 19), (24, 18, 22), (20, 15, 29), (25, 11, 28)]}


@pytest.fixture(scope="module")
def root() -> Path:
    root = shared_data_root()
    missing = [n for n, s in I.SOURCES.items() if not all((root / s.folder / f).is_file() for f in s.files)]
    if missing:
        pytest.skip(f"real intent data not found: {root} lacks {missing} (set METALEARN_TEST_DATA to the "
                    "folder that holds banking77/, clinc150/, hwu64/)")
    return root


def _rows(root: Path, name: str):
    folder = I.locate_intents(name, root)
    return folder, I._read_corpus(name, folder, I._stamp(folder, list(I.SOURCES[name].files)))


def test_files_are_the_official_ones(root):
    for name, source in I.SOURCES.items():
        for f, digest in source.files.items():
            assert I.sha256_file(root / source.folder / f) == digest
        for rel in I._expected_files(name):
            if rel.startswith("splits/"):
                assert I.sha256_file(root / source.folder / rel) == I._fold_checksums()[f"{name}/{rel.removeprefix('splits/protaugment/')}"]


def test_banking77_counts(root):
    _, rows = _rows(root, "banking77")
    parts = Counter(p for _, _, p in rows)
    assert parts == {"train": 10003, "test": 3080}
    assert len({c for _, c, _ in rows}) == 77
    test_sizes = Counter(c for _, c, p in rows if p == "test")
    assert set(test_sizes.values()) == {40}
    train_sizes = Counter(c for _, c, p in rows if p == "train")
    assert min(train_sizes.values()) == 35 and train_sizes["contactless_not_working"] == 35
    assert max(train_sizes.values()) == 187 and train_sizes["card_payment_fee_charged"] == 187
    assert all(t == t.strip() and t for t, _, _ in rows)  # the quoted line feeds are stripped
    assert "Refund_not_showing_up" in train_sizes and "reverted_card_payment?" in train_sizes


def test_clinc150_counts(root):
    _, rows = _rows(root, "clinc150")
    in_scope = Counter(c for _, c, _ in rows if c != "oos")
    assert len(in_scope) == 150 and set(in_scope.values()) == {150}
    assert Counter(p for _, c, p in rows if c == "oos") == {"oos_train": 100, "oos_val": 100, "oos_test": 1000}
    assert Counter(p for _, _, p in rows)["train"] == 15000 and len(rows) == 23700


def test_hwu64_counts(root):
    _, rows = _rows(root, "hwu64")
    sizes = Counter(c for _, c, _ in rows)
    assert len(rows) == 11036 and len(sizes) == 64
    assert min(sizes.values()) == 38 and max(sizes.values()) == 194


@pytest.mark.parametrize("name", list(I.SOURCES))
def test_folds_are_disjoint_and_cover_every_class(root, name):
    folder, rows = _rows(root, name)
    classes = {c for _, c, _ in rows if c != I.SOURCES[name].out_of_scope}
    for fold, sizes in zip(I.FOLDS, FOLD_SIZES[name]):
        split = I.read_fold(folder, fold, sorted(classes))
        assert tuple(len(split[s]) for s in ("train", "val", "test")) == sizes
        assert set(split["train"]).isdisjoint(split["val"]) and set(split["val"]).isdisjoint(split["test"])
        assert set(split["train"]).isdisjoint(split["test"])
        assert set().union(*split.values()) == classes


@pytest.mark.parametrize("cls", [I.Banking77, I.Clinc150, I.Hwu64])
def test_a_real_5_way_5_shot_episode(root, cls, tmp_path):
    sizes = FOLD_SIZES[cls.source][1]
    for split, n_classes in zip(("train", "val", "test"), sizes):
        ds = cls(split, fold=2, root=root, max_length=48)
        assert ds.num_classes == n_classes and len(ds.texts) == len(ds)
        if cls is I.Clinc150:
            assert len(ds) == 150 * n_classes and "oos" not in ds.class_names
    ep = EpisodeSampler(ds, 5, 5, 5, seed=0).sample()
    assert ep.support_x.shape == (25, 48) and ep.query_x.shape == (25, 48)
    assert ep.support_x.dtype == torch.int64 and (ep.support_x != ds.tokenizer.pad_id).any(dim=1).all()
    assert set(ep.class_ids.tolist()) <= set(range(ds.num_classes))


def test_every_utterance_of_a_class_is_in_an_episode_split(root):
    ds = I.Banking77("test", fold=1, root=root)
    _, rows = _rows(root, "banking77")
    per_class = Counter(c for _, c, _ in rows)
    assert len(ds) == sum(per_class[c] for c in ds.class_names)  # train.csv + test.csv together
    full = I.Banking77("full-test", root=root)
    assert len(full) == 3080 and full.num_classes == 77 and set(full.class_sizes().tolist()) == {40}
    oos = I.Clinc150("test", root=root)
    assert [len(oos.oos_texts(p)) for p in ("train", "val", "test")] == [100, 100, 1000]


def test_prepare_data_imports_verifies_and_reports_each_fold(root, tmp_path, capsys, monkeypatch):
    from metalearn.cli import main

    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    code = main(["prepare-data", "hwu64", "--data-root", str(tmp_path / "data"), "--from", str(root)])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "data" / "hwu64" / "full.jsonl").is_file()
    for fold, (tr, va, te) in enumerate([(16, 23, 25), (30, 15, 19), (24, 18, 22), (20, 15, 29), (25, 11, 28)], 1):
        assert f"fold {fold}: train {tr} intents" in out and f"val {va} intents" in out and f"test {te} intents" in out
    code = main(["prepare-data", "hwu64", "--data-root", str(tmp_path / "other"), "--from", str(tmp_path)])
    assert code != 0 and "lacks full.jsonl" in capsys.readouterr().err
