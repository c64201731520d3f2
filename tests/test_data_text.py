"""Text data: tokenizer, TextDataset, the intent readers on tiny synthetic copies, the user's files."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from metalearn.data import EpisodeSampler, FixedEpisodes
from metalearn.data import intents as I
from metalearn.data.cache import sha256_file
from metalearn.data.download import ChecksumError
from metalearn.data.folders import split_classes
from metalearn.data.registry import DATASETS
from metalearn.data.text import TextDataset, TextTokenizer

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = pytest.mark.filterwarnings("ignore:.*differs from the official")

TRAIN_WORDS = ["card", "payment", "transfer", "money", "account", "balance", "fee", "cash"]
HELD_OUT_WORDS = {"val": ["zebraquux", "xylofont"], "test": ["jjwwkk", "vvqqpp", "жук"]}


def _corpus(rng_seed: int = 0):
    """20 classes: 10 meta-train classes spoken in TRAIN_WORDS, 5 val and 5 test classes each
    spoken in their own words (never in a train class)."""
    rng = np.random.default_rng(rng_seed)
    classes = {"train": [f"tr{i}" for i in range(10)], "val": [f"va{i}" for i in range(5)],
               "test": [f"te{i}" for i in range(5)]}
    texts, labels = [], []
    for split, names in classes.items():
        words = TRAIN_WORDS if split == "train" else HELD_OUT_WORDS[split] + ["please"]
        for c in names:
            for _ in range(12):
                texts.append(f"{c} " + " ".join(rng.choice(words, 4)) + "?")
                labels.append(c)
    return texts, labels, classes


@pytest.fixture
def banking_copy(tmp_path):
    """A tiny BANKING77-shaped folder: train.csv / test.csv (text,category; one quoted text with
    line feeds, CRLF records) and five ProtAugment folds."""
    texts, labels, classes = _corpus()
    folder = tmp_path / "banking77"
    (folder / "splits" / "protaugment").mkdir(parents=True)
    for name, part in (("train.csv", slice(0, None, 2)), ("test.csv", slice(1, None, 2))):
        rows = list(zip(texts[part], labels[part]))
        rows[0] = ("\n" + rows[0][0] + "\n", rows[0][1])
        body = "".join('"' + t.replace('"', '""') + f'",{c}\r\n' for t, c in rows)
        (folder / name).write_bytes(("text,category\r\n" + body).encode())
    for fold in range(1, 6):
        d = folder / "splits" / "protaugment" / f"{fold:02d}"
        d.mkdir()
        for split, file in I.FOLD_SPLITS.items():
            (d / f"labels.{file}.txt").write_text("\n".join(classes[split]) + "\n")
    return tmp_path


def _vocab(ds) -> set[str]:
    return set(ds.tokenizer.backend.get_vocab())


# ------------------------------------------------------------------------------ tokenizer


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
@OFFICIAL
def test_the_vocabulary_never_sees_validation_or_test_classes(banking_copy, tmp_path, kind):
    for split in ("train", "val", "test"):
        ds = I.Banking77(split, root=banking_copy, tokenizer=kind, vocab_size=200, cache=tmp_path / "c")
        vocab = _vocab(ds)
        assert "card" in vocab and "payment" in vocab
        for words in HELD_OUT_WORDS.values():
            for w in words:
                assert w not in vocab and "##" + w not in vocab
        assert not any("ж" in t for t in vocab)  # a character of a test class only
        assert all(c.startswith({"train": "tr", "val": "va", "test": "te"}[split]) for c in ds.class_names)
        if split != "train":  # the held-out words are unknown to it
            unk = ds.tokenizer.backend.token_to_id("[UNK]")
            assert (ds.gather(torch.arange(len(ds))) == unk).any()


_DETERMINISM = """
import hashlib, sys
sys.path.insert(0, {repo!r})
from metalearn.data.text import TextTokenizer
texts = [f"word{{i % 37}} sample{{i % 11}} text {{i}} hello, world! {{'abc' * (i % 5)}}" for i in range(600)]
for kind in ("wordpiece", "bpe"):
    tok = TextTokenizer.train(texts, kind, vocab_size=150, max_length=12, cache=False)
    print(kind, tok.fingerprint, hashlib.sha256(tok.encode(texts).numpy().tobytes()).hexdigest())
"""


def test_training_is_byte_identical_across_processes():
    # tokenizers' own WordPiece trainer numbers its tokens by hash-map order: two processes differ
    script = _DETERMINISM.format(repo=str(REPO))
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].splitlines()) == 2


def test_encode_shapes_padding_and_truncation_warned_once():
    tok = TextTokenizer.train(["one two three four five six seven"] * 3, vocab_size=400, max_length=4, cache=False)
    with pytest.warns(UserWarning, match=r"2 of 3 texts are longer than max_length=4 tokens"):
        ids = tok.encode(["one two three four five six", "one", "two three four five six"])
    assert ids.shape == (3, 4) and ids.dtype == torch.int64
    assert ids[1].tolist()[1:] == [tok.pad_id] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per tokenizer
        tok.encode(["one two three four five six"])


def test_save_load_round_trip_and_a_changed_file_is_refused(tmp_path):
    tok = TextTokenizer.train(["book a flight", "cancel my card"] * 4, vocab_size=50, max_length=8, cache=False)
    back = TextTokenizer.load(tok.save(tmp_path / "run"))
    assert back.fingerprint == tok.fingerprint and back.pad_id == tok.pad_id and back.max_length == 8
    assert torch.equal(back.encode(["book my card"]), tok.encode(["book my card"]))
    meta = json.loads((tmp_path / "run" / "tokenizer_meta.json").read_text())
    other = TextTokenizer.train(["something else entirely"] * 4, vocab_size=50, max_length=8, cache=False)
    other.save(tmp_path / "other")
    (tmp_path / "run" / "tokenizer.json").write_text((tmp_path / "other" / "tokenizer.json").read_text())
    with pytest.raises(ValueError, match="does not match tokenizer_meta.json"):
        TextTokenizer.load(tmp_path / "run")
    assert meta["fingerprint"] == tok.fingerprint
    with pytest.raises(FileNotFoundError, match="tokenizer_meta.json"):
        TextTokenizer.load(tmp_path / "other-missing")


def test_from_pretrained_tokenizer_json_and_vocab_txt_folder(tmp_path):
    trained = TextTokenizer.train(["book a flight", "cancel my card"] * 4, vocab_size=50, max_length=8, cache=False)
    trained.backend.no_padding()
    trained.backend.save(str(tmp_path / "tokenizer.json"))
    tok = TextTokenizer.from_pretrained(tmp_path / "tokenizer.json", max_length=6)
    assert tok.pad_id == 0 and tok.encode(["book"]).shape == (1, 6)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\n[MASK]\nbook\na\nflight\n##s\n")
    (bert / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    tok = TextTokenizer.from_pretrained(bert, max_length=8)
    assert tok.pad_id == 1  # the model's own [PAD], not 0
    assert tok.encode(["Book flights"]).tolist() == [[2, 5, 7, 8, 3, 1, 1, 1]]  # [CLS] ... [SEP] pad
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        TextTokenizer.from_pretrained(tmp_path / "nothing")


def test_bad_tokenizer_settings_name_the_fix():
    with pytest.raises(ValueError, match="wordpiece or bpe"):
        TextTokenizer.train(["a"], kind="sentencepiece")
    with pytest.raises(ValueError, match=r"texts\[1\] is empty or only whitespace"):
        TextTokenizer.train(["a b", "  \t"], cache=False)
    with pytest.raises(TypeError, match="wrap it in a list"):
        TextTokenizer.train("a b c", cache=False)


# ------------------------------------------------------------------------------ TextDataset


def _tiny(cache=False):
    texts, labels, _ = _corpus()
    tok = TextTokenizer.train(texts, vocab_size=120, max_length=48, cache=cache)
    return TextDataset(texts, labels, tok, cache=cache)


def test_same_seed_same_episodes_and_tokens():
    a, b = _tiny(), _tiny()
    assert a.tokenizer.fingerprint == b.tokenizer.fingerprint
    ea, eb = FixedEpisodes(a, 5, 2, 3, n_episodes=4, seed=7), FixedEpisodes(b, 5, 2, 3, n_episodes=4, seed=7)
    assert ea.fingerprint == eb.fingerprint
    for x, y in zip(ea, eb):
        assert torch.equal(x.support_x, y.support_x) and torch.equal(x.query_x, y.query_x)
        assert x.support_x.shape == (10, 48) and x.support_x.dtype == torch.int64
    s1, s2 = EpisodeSampler(a, 5, 1, 2, seed=3), EpisodeSampler(b, 5, 1, 2, seed=3)
    assert torch.equal(s1.sample().query_x, s2.sample().query_x)


def test_index_dataset_episodes_are_the_text_episodes():
    ds = _tiny()
    text_eps = FixedEpisodes(ds, 4, 3, 2, n_episodes=3, seed=11)
    index_eps = FixedEpisodes(ds.index_dataset(), 4, 3, 2, n_episodes=3, seed=11)
    for t, i in zip(text_eps, index_eps):
        assert i.support_x.shape == (12, 1) and i.support_x.dtype == torch.int64
        assert torch.equal(t.support_y, i.support_y) and torch.equal(t.class_ids, i.class_ids)
        sentences = [ds.texts[p] for p in i.support_x[:, 0].tolist()]
        assert torch.equal(ds.tokenizer.encode(sentences), t.support_x)
        assert [ds.class_names[c] for c in t.class_ids[t.support_y].tolist()] == [s.split()[0] for s in sentences]


def test_views_stay_text_datasets():
    ds = _tiny()
    view = ds.subset_classes(["tr3", "tr1"])
    assert isinstance(view, TextDataset) and view.class_names == ["tr3", "tr1"]
    assert len(view.texts) == len(view) == 24 and all(t.startswith(("tr3", "tr1")) for t in view.texts)
    assert torch.equal(view.gather(torch.arange(len(view))), view.tokenizer.encode(view.texts))
    inner = view.subset_classes(["tr1"])
    assert all(t.startswith("tr1 ") for t in inner.texts) and isinstance(inner, TextDataset)


def test_cache_is_reused_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    texts, labels, _ = _corpus()
    cache = tmp_path / "cache"
    tok = TextTokenizer.train(texts, vocab_size=120, max_length=48, cache=cache)
    ds = TextDataset(texts, labels, tok, cache=cache)
    import metalearn.data.text as T

    def boom(*a, **k):
        raise AssertionError("not from the cache")

    with monkeypatch.context() as m:  # warm: neither trained nor encoded again
        m.setattr(T, "_train_backend", boom)
        m.setattr(TextTokenizer, "_encode", boom)
        tok2 = TextTokenizer.train(texts, vocab_size=120, max_length=48, cache=cache)
        again = TextDataset(texts, labels, tok2, cache=cache)
    assert tok2.fingerprint == tok.fingerprint
    assert torch.equal(again.gather(torch.arange(len(again))), ds.gather(torch.arange(len(ds))))
    for f in sorted(cache.glob("*.npy")):  # corrupt both the vocabulary and the ids
        data = bytearray(f.read_bytes())
        data[-1] ^= 0xFF
        f.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its checksum: rebuilding"):
        tok3 = TextTokenizer.train(texts, vocab_size=120, max_length=48, cache=cache)
    with pytest.warns(UserWarning, match="does not match its checksum: rebuilding"):
        rebuilt = TextDataset(texts, labels, tok3, cache=cache)
    assert tok3.fingerprint == tok.fingerprint
    assert torch.equal(rebuilt.gather(torch.arange(len(ds))), ds.gather(torch.arange(len(ds))))
    # other texts or another tokenizer: another key, never the stale entry
    other = TextDataset(texts[:-1] + ["tr0 card card"], labels, tok, cache=cache)
    assert other.gather(torch.tensor([len(ds) - 1])).tolist() == tok.encode(["tr0 card card"]).tolist()


def test_truncation_is_said_on_a_cache_hit_too(tmp_path):
    tok = TextTokenizer.train(["a b c d e f"] * 4, vocab_size=30, max_length=3, cache=False)
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        TextDataset(["a b c d e f", "a"], ["x", "y"], tok, cache=tmp_path)
    fresh = TextTokenizer.train(["a b c d e f"] * 4, vocab_size=30, max_length=3, cache=False)
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        TextDataset(["a b c d e f", "a"], ["x", "y"], fresh, cache=tmp_path)


def test_text_dataset_errors():
    tok = TextTokenizer.train(["a b"] * 3, vocab_size=20, max_length=4, cache=False)
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        TextDataset(["a", "b"], ["x"], tok, cache=False)
    with pytest.raises(ValueError, match="not in class_names"):
        TextDataset(["a", "b"], ["x", "z"], tok, class_names=["x"], cache=False)
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        TextDataset([" "], ["x"], tok, cache=False)


def test_too_small_a_class_names_the_largest_feasible_k_shot():
    texts, labels, _ = _corpus()
    ds = TextDataset(texts[:-8], labels[:-8], TextTokenizer.train(texts, vocab_size=60, cache=False), cache=False)
    with pytest.raises(ValueError, match=r"class 'te4' has only 4 examples.*largest feasible k_shot with "
                                         r"n_query=2 is 2"):
        EpisodeSampler(ds, 5, 3, 2)


# ------------------------------------------------------------------------------ readers


def test_read_text_file_csv_tsv_jsonl(tmp_path):
    (tmp_path / "a.csv").write_text('sentence,intent\n"hi,\nthere ",greet\nbye,leave\n', encoding="utf-8")
    assert I.read_text_file(tmp_path / "a.csv", "sentence", "intent") == (["hi,\nthere", "bye"], ["greet", "leave"])
    (tmp_path / "a.tsv").write_text("text\tlabel\nhello, you\tgreet\n")
    assert I.read_text_file(tmp_path / "a.tsv") == (["hello, you"], ["greet"])
    (tmp_path / "a.jsonl").write_text('{"text": "héllo", "label": 3}\n\n{"text": "yo", "label": 3}\n')
    assert I.read_text_file(tmp_path / "a.jsonl") == (["héllo", "yo"], ["3", "3"])


def test_read_text_file_errors_name_the_file_line_and_fix(tmp_path):
    (tmp_path / "e.csv").write_text("text,label\nfine,a\n   ,b\n")
    with pytest.raises(ValueError, match=r"e.csv: line 3: the text \('text'\) is empty or only whitespace"):
        I.read_text_file(tmp_path / "e.csv")
    (tmp_path / "e.jsonl").write_text('{"text": "x", "label": "a"}\n{"text": "", "label": "a"}\n')
    with pytest.raises(ValueError, match="e.jsonl: line 2: the text"):
        I.read_text_file(tmp_path / "e.jsonl")
    (tmp_path / "c.csv").write_text("utterance,intent\nx,a\n")
    with pytest.raises(ValueError, match=r"has no column 'text'; its columns: 'utterance', 'intent'\. "
                                         r"Name the text column \(data.text_column"):
        I.read_text_file(tmp_path / "c.csv")
    with pytest.raises(ValueError, match="has no column 'label'.*data.label_column"):
        I.read_text_file(tmp_path / "c.csv", text_column="utterance")
    (tmp_path / "b.csv").write_bytes(b"text,label\nok,a\ncaf\xe9,b\n")
    with pytest.raises(ValueError, match=r"b.csv: line 3 holds bytes that are not UTF-8.*save the file as UTF-8"):
        I.read_text_file(tmp_path / "b.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(ValueError, match=r"\.csv, \.tsv"):
        I.read_text_file(tmp_path / "x.xlsx")
    with pytest.raises(FileNotFoundError):
        I.read_text_file(tmp_path / "missing.csv")


def test_hugging_face_dataset_with_named_columns():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"utt": ["book a flight", " cancel it "], "intent": ["fly", "cancel"]})
    assert I.read_hf_dataset(ds, "utt", "intent") == (["book a flight", "cancel it"], ["fly", "cancel"])
    cl = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]},
                                    features=datasets.Features({"text": datasets.Value("string"),
                                                                "label": datasets.ClassLabel(names=["no", "yes"])}))
    assert I.read_hf_dataset(cl) == (["a", "b"], ["yes", "no"])
    with pytest.raises(ValueError, match="has no column 'sentence'; its columns: 'text', 'label'"):
        I.read_hf_dataset(cl, text_column="sentence")
    empty = datasets.Dataset.from_dict({"text": ["a", ""], "label": ["x", "y"]})
    with pytest.raises(ValueError, match="datasets.Dataset row 1: the text"):
        I.read_hf_dataset(empty)


@OFFICIAL
def test_banking_reader_folds_full_splits_and_split_errors(banking_copy, tmp_path):
    ds = I.Banking77("test", fold=2, root=banking_copy / "banking77", cache=tmp_path)  # the folder itself
    assert ds.class_names == [f"te{i}" for i in range(5)] and len(ds) == 60  # train.csv + test.csv
    assert not any("\n" in t or t != t.strip() for t in ds.texts)
    full = I.Banking77("full-test", root=banking_copy, cache=tmp_path)
    assert full.num_classes == 20 and len(full) == 120
    with pytest.raises(ValueError, match="choose train, val, test, full-train, full-test"):
        I.Banking77("valid", root=banking_copy, cache=tmp_path)
    with pytest.raises(ValueError, match="fold must be one of 1, 2, 3, 4, 5"):
        I.Banking77("train", fold=6, root=banking_copy, cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="prepare-data banking77"):
        I.Banking77("train", root=tmp_path / "nowhere", cache=tmp_path)


def test_local_copy_that_differs_is_read_with_a_warning(banking_copy, tmp_path):
    I._read_corpus.cache_clear()
    with pytest.warns(UserWarning, match="differs from the official banking77 file"):
        I.Banking77("train", root=banking_copy, cache=tmp_path)


@OFFICIAL
def test_fold_files_that_overlap_or_miss_a_class_are_refused(banking_copy, tmp_path):
    fold = banking_copy / "banking77" / "splits" / "protaugment" / "03"
    (fold / "labels.valid.txt").write_text("va0\nva1\nva2\nva3\ntr0\n")
    with pytest.raises(ValueError, match="'tr0' is in both train and val"):
        I.Banking77("val", fold=3, root=banking_copy, cache=tmp_path)
    (fold / "labels.valid.txt").write_text("va0\nva1\nva2\nva3\n")
    with pytest.raises(ValueError, match=r"present but unlisted \['va4'\]"):
        I.Banking77("val", fold=3, root=banking_copy, cache=tmp_path)


@OFFICIAL
def test_clinc_out_of_scope_is_never_a_class(tmp_path):
    texts, labels, classes = _corpus()
    pairs = [[t, c] for t, c in zip(texts, labels)]
    data = {"train": pairs[0::3], "val": pairs[1::3], "test": pairs[2::3],
            "oos_train": [["what is love", "oos"]], "oos_val": [["tell a joke", "oos"]],
            "oos_test": [["sing", "oos"], ["dance", "oos"]]}
    folder = tmp_path / "clinc150"
    folder.mkdir()
    (folder / "data_full.json").write_text(json.dumps(data))
    for fold in range(1, 6):
        d = folder / "splits" / "protaugment" / f"{fold:02d}"
        d.mkdir(parents=True)
        for split, file in I.FOLD_SPLITS.items():
            (d / f"labels.{file}.txt").write_text("\n".join(classes[split]))
    ds = I.Clinc150("val", root=tmp_path, cache=tmp_path / "c")
    assert "oos" not in ds.class_names and len(ds) == 60
    assert ds.oos_texts("test") == ["sing", "dance"] and ds.oos_texts("train") == ["what is love"]
    with pytest.raises(ValueError, match="choose train, val, test"):
        ds.oos_texts("dev")
    data["val"][0] = ["   ", "va0"]
    (folder / "data_full.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"data_full.json: 'val' entry 1: the text"):
        I.Clinc150("val", root=tmp_path, cache=tmp_path / "c")


def test_download_checks_sha256_and_writes_atomically(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "HWU64" / "few_shot").mkdir(parents=True)
    (src / "HWU64" / "full.jsonl").write_text('{"sentence": "wake me up", "label": "alarm/set"}\n')
    sums = {}
    for fold in range(1, 6):
        for split, file in I.FOLD_SPLITS.items():
            rel = f"{fold:02d}/labels.{file}.txt"
            (src / "HWU64" / "few_shot" / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / "HWU64" / "few_shot" / rel).write_text(f"{split}{fold}\n")
            sums[f"hwu64/{rel}"] = sha256_file(src / "HWU64" / "few_shot" / rel)
    monkeypatch.setattr(I, "PROTAUGMENT_URL", src.as_uri())
    monkeypatch.setattr(I, "_fold_checksums", lambda: sums)
    good = replace(I.SOURCES["hwu64"], url=(src / "HWU64").as_uri(),
                   files={"full.jsonl": sha256_file(src / "HWU64" / "full.jsonl")})
    monkeypatch.setitem(I.SOURCES, "hwu64", good)
    folder = I.download_intents("hwu64", tmp_path / "root", quiet=True)
    assert (folder / "full.jsonl").read_bytes() == (src / "HWU64" / "full.jsonl").read_bytes()
    assert (folder / "splits" / "protaugment" / "05" / "labels.valid.txt").read_text() == "val5\n"
    assert I.locate_intents("hwu64", tmp_path / "root") == folder
    monkeypatch.setitem(I.SOURCES, "hwu64", replace(good, files={"full.jsonl": "0" * 64}))
    with pytest.raises(ChecksumError, match="expected sha256 0000"):
        I.download_intents("hwu64", tmp_path / "other", quiet=True)
    assert not list((tmp_path / "other" / "hwu64").glob("full.jsonl*"))  # nothing half-written left


# ------------------------------------------------------------------------------ registry


def _cfg(**kw):
    base = dict(dataset="text-file", root=None, fold=1, tokenizer="wordpiece", vocab_size=200, max_length=24,
                lowercase=True, text_column="text", label_column="label", split_fractions=[0.6, 0.2, 0.2],
                split_seed=0)
    return SimpleNamespace(**{**base, **kw})


def test_text_file_registry_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    texts, labels, _ = _corpus()
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"utterance": t, "intent": c}) + "\n" for t, c in zip(texts, labels)))
    entry = DATASETS["text-file"]
    assert entry.text and not entry.images
    cfg = _cfg(root=str(path), text_column="utterance", label_column="intent")
    expected = split_classes(sorted(set(labels)), cfg.split_fractions, cfg.split_seed)
    built = {s: entry.build(cfg, s) for s in ("train", "val", "test")}
    for split, ds in built.items():
        assert isinstance(ds, TextDataset) and ds.class_names == expected[split]
    train_words = {w for t in built["train"].texts for w in t.lower().replace("?", " ").split()}
    unseen = {w for s in ("val", "test") for t in built[s].texts for w in t.lower().replace("?", " ").split()} - train_words
    assert unseen and not unseen & set(built["val"].tokenizer.backend.get_vocab())
    assert built["val"].tokenizer.fingerprint == built["train"].tokenizer.fingerprint
    with pytest.raises(ValueError, match="unknown split 'dev'; choose train, val, test"):
        entry.build(cfg, "dev")
    with pytest.raises(ValueError, match="needs data.root"):
        entry.build(_cfg(), "train")
    assert I.read_text_file(path, "utterance", "intent")[0] == texts


@OFFICIAL
@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_intent_registry_entries_read_the_config(banking_copy, monkeypatch, tmp_path):
    monkeypatch.setenv("METALEARN_CACHE", str(tmp_path / "cache"))
    for name in ("banking77", "clinc150", "hwu64"):
        assert DATASETS[name].text and not DATASETS[name].images
    ds = DATASETS["banking77"].build(_cfg(root=str(banking_copy), fold=4, tokenizer="bpe", max_length=7), "val")
    assert ds.fold == 4 and ds.tokenizer.kind == "bpe" and ds.item_shape == (7,)
    with pytest.raises(ValueError, match="unknown banking77 split 'vinyals-train'; choose train, val, test"):
        DATASETS["banking77"].build(_cfg(root=str(banking_copy)), "vinyals-train")
