"""Text runs end to end (issue 18): `metalearn train` on the user's own file of sentences, then
`eval` and `adapt` on a CSV of sentences; the run keeps its tokenizer, checks it on resume and
eval, and adaptation never changes the meta-parameters."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from metalearn.cli import main
from metalearn.train.checkpoint import CheckpointError
from metalearn.train.loop import load_classifier, load_run

CLASSES = 10
WORDS = {c: [f"topic{c}word{j}" for j in range(4)] for c in range(CLASSES)}
NOISE = ["please", "can", "you", "my", "the", "a", "i", "want", "to", "now", "help"]


def sentence(c: int, rng: random.Random) -> str:
    """A sentence of class ``c``: two of its own words among shared filler words."""
    words = rng.sample(WORDS[c], 2) + rng.sample(NOISE, 4)
    rng.shuffle(words)
    return " ".join(words)


def write_corpus(path: Path, per_class: int = 14, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["utterance", "intent"])
        for c in range(CLASSES):
            for _ in range(per_class):
                w.writerow([sentence(c, rng), f"intent_{c}"])
    return path


TINY = ["--set", "data.dataset=text-file", "--set", "data.text_column=utterance",
        "--set", "data.label_column=intent", "--set", "data.split_fractions=[0.6,0.2,0.2]",
        "--set", "data.vocab_size=200", "--set", "data.max_length=12",
        "--set", "model.backbone=text-cnn", "--set", "model.vocab_size=200",
        "--set", "model.embed_dim=16", "--set", "model.channels=8", "--set", "model.kernel_sizes=[2,3]",
        "--set", "data.n_way=2", "--set", "data.eval_n_way=2", "--set", "data.k_shot=2",
        "--set", "data.n_query=2",
        "--set", "data.val_episodes=4", "--set", "data.test_episodes=6",
        "--set", "train.steps=6", "--set", "train.val_every=3", "--set", "train.checkpoint_every=3",
        "--set", "train.tensorboard=false", "--set", "train.device=cpu"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A tiny ProtoNet text run on a synthetic CSV of 10 intents."""
    folder = tmp_path_factory.mktemp("textrun")
    data = write_corpus(folder / "intents.csv")
    run = folder / "run"
    code = main(["train", "--preset", "protonet-banking77-5w1s", "--data-root", str(data), *TINY,
                 "--out", str(run), "--quiet"])
    assert code == 0
    return run, data


def test_a_text_run_keeps_its_tokenizer_and_class_split(text_run):
    run, _ = text_run
    meta = json.loads((run / "tokenizer" / "tokenizer_meta.json").read_text())
    assert meta["max_length"] == 12 and (run / "tokenizer" / "tokenizer.json").is_file()
    split = json.loads((run / "splits.json").read_text())
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(f"intent_{c}" for c in range(CLASSES))
    # the vocabulary was trained on the meta-training intents only
    vocab = json.loads((run / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    held_out = [int(name.split("_")[1]) for name in split["val"] + split["test"]]
    assert not any(w in vocab for c in held_out for w in WORDS[c])
    assert any(w in vocab for name in split["train"] for w in WORDS[int(name.split("_")[1])])


def test_eval_and_adapt_on_sentences(text_run, tmp_path, capsys):
    run, _ = text_run
    code, out, _ = cli(capsys, "eval", run, "--quiet")
    assert code == 0 and "accuracy" in out
    rng = random.Random(5)
    support = tmp_path / "support.csv"
    with open(support, "w", newline="") as f:  # three intents the run never saw in training
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for c in (7, 8, 9):
            for _ in range(3):
                w.writerow([sentence(c, rng), f"new_{c}"])
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(sentence(c, rng) for c in (7, 8, 9, 9)) + "\n")
    algo, _, _ = load_run(run)
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    out_csv = tmp_path / "pred.csv"
    code, out, _ = cli(capsys, "adapt", run, "--support", support, "--query", queries, "--out", out_csv,
                       "--reject", "0.1")
    assert code == 0 and "out-of-scope threshold" in out
    rows = list(csv.DictReader(open(out_csv, newline="")))
    assert len(rows) == 4 and set(rows[0]) == {"text", "predicted", "out_of_scope", "p_new_7",
                                               "p_new_8", "p_new_9"}
    assert all(r["predicted"] in {"new_7", "new_8", "new_9", "out_of_scope"} for r in rows)
    assert all(r["out_of_scope"] == str(r["predicted"] == "out_of_scope").lower() for r in rows)
    after, _, _ = load_run(run)
    assert all(torch.equal(before[k], v) for k, v in after.state_dict().items())


def test_classifier_of_a_text_run_takes_sentences_and_leaves_the_model_unchanged(text_run):
    run, _ = text_run
    clf = load_classifier(run)
    rng = random.Random(1)
    texts = [sentence(c, rng) for c in (1, 1, 2, 2)]
    before = {k: v.clone() for k, v in clf.algorithm.state_dict().items()}
    clf.fit(texts, ["x", "x", "y", "y"]).calibrate_rejection(0.1)
    assert clf.predict([sentence(1, rng), sentence(2, rng)]).shape == (2,)
    assert clf.predict_proba(texts).shape == (4, 2)
    assert all(torch.equal(before[k], v) for k, v in clf.algorithm.state_dict().items())


def test_bad_adapt_input_is_named(text_run, tmp_path, capsys):
    run, _ = text_run
    one = tmp_path / "one.csv"
    one.write_text("text,label\ntopic1word0 please,a\ntopic1word1 now,a\n")
    queries = tmp_path / "q.txt"
    queries.write_text("topic1word0\n\ntopic1word1\n")
    code, _, err = cli(capsys, "adapt", run, "--support", one, "--query", queries, "--out", tmp_path / "p.csv")
    assert code != 0 and "line 2 is empty" in err
    queries.write_text("topic1word0\n")
    code, _, err = cli(capsys, "adapt", run, "--support", one, "--query", queries, "--out", tmp_path / "p.csv")
    assert code != 0 and "single class" in err
    nolabel = tmp_path / "nolabel.csv"
    nolabel.write_text("sentence,label\nhello,a\n")
    code, _, err = cli(capsys, "adapt", run, "--support", nolabel, "--query", queries, "--out", tmp_path / "p.csv")
    assert code != 0 and "no column 'text'" in err and "'sentence'" in err


def test_a_tokenizer_that_does_not_match_the_run_is_refused(text_run, tmp_path, capsys):
    import shutil

    run, data = text_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    # the data changed since training: the vocabulary rebuilt from it differs from the run's
    changed = write_corpus(tmp_path / "changed.csv", seed=3)
    code, _, err = cli(capsys, "eval", copy, "--data-root", changed)
    assert code != 0 and "differs from the one built now" in err
    # the run's tokenizer folder replaced by one with more tokens than the model embeds
    from metalearn.data.text import TextTokenizer

    words = [f"w{i}x{j}" for i in range(300) for j in range(2)]
    big = TextTokenizer.train([" ".join(words[i:i + 5]) for i in range(0, 600, 5)], vocab_size=400,
                              max_length=12, cache=False)
    assert big.vocab_size > 200
    shutil.rmtree(copy / "tokenizer")
    big.save(copy / "tokenizer")
    with pytest.raises(CheckpointError, match="embeds only 200"):
        load_classifier(copy)
    shutil.rmtree(copy / "tokenizer")  # and a text run without its tokenizer
    code, _, err = cli(capsys, "eval", copy)
    assert code != 0 and "has no tokenizer/ folder" in err
