"""Intent-detection datasets (BANKING77, CLINC150, HWU64), the five ProtAugment class folds, and
the user's own sentences (a CSV / TSV / JSONL file, or a Hugging Face ``datasets.Dataset``).

Every file is read as its MANIFEST documents it (``<data root>/<dataset>/MANIFEST.txt``):
BANKING77's CSVs with a real CSV reader (their quoted texts hold line feeds; texts are stripped),
CLINC150's ``data_full.json`` as JSON, HWU64's ``full.jsonl`` line by line. The episodic protocol
of ProtAugment (Dopierre et al., ACL 2021) splits each dataset's intents into five folds of
meta-train / meta-val / meta-test classes; episodes draw from every utterance of a class
(BANKING77: train.csv and test.csv together; CLINC150: its in-scope train, val and test). The
vocabulary of every split of a fold is trained on that fold's meta-train classes only.
CLINC150's out-of-scope utterances (label ``oos``) are never a class; :meth:`Clinc150.oos_texts`
gives them for out-of-scope evaluation.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

from metalearn.data.cache import data_root, sha256_file
from metalearn.data.download import download
from metalearn.data.text import KINDS, TextDataset, TextTokenizer

PROTAUGMENT_COMMIT = "4233bbae0d7544e632692c4d2c185b2ed2a19eef"
PROTAUGMENT_URL = f"https://raw.githubusercontent.com/tdopierre/ProtAugment/{PROTAUGMENT_COMMIT}/data"
FOLDS = (1, 2, 3, 4, 5)
FOLD_SPLITS = {"train": "train", "val": "valid", "test": "test"}
"""Split name -> the ``labels.<name>.txt`` of a ProtAugment fold."""
TEXT_FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


# ----------------------------------------------------------------------------------- readers


def _read_utf8(path: Path) -> str:
    """The text of ``path``, refusing bytes that are not UTF-8 (the line named)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} holds bytes that are not UTF-8 ({data[start:start + 4]!r}): "
                         "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from e


def _records(path: Path, fmt: str) -> Iterator[tuple[str, dict, list[str]]]:
    """``(where, record, the file's columns)`` of a CSV / TSV (header row) or JSONL file; ``where``
    names the file and line for error messages."""
    text = _read_utf8(path)
    if fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n} is not JSON ({e.msg}): one JSON object per line") from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {n} is a JSON {type(record).__name__}, not an object "
                                 "with named fields")
            yield f"{path}: line {n}", record, list(record)
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    columns = list(reader.fieldnames or [])
    for record in reader:
        yield f"{path}: line {reader.line_num}", record, columns


def _column_rows(records: Iterator[tuple[str, dict, list[str]]], source: object, text_column: str,
                 label_column: str) -> tuple[list[str], list[str]]:
    """Texts (stripped) and labels of ``records``, refusing a missing column or an empty value."""
    texts, labels = [], []
    for where, record, columns in records:
        for column, what in ((text_column, "text"), (label_column, "label")):
            if column not in record:
                raise ValueError(f"{where} has no column {column!r}; its columns: "
                                 f"{', '.join(map(repr, columns))}. Name the {what} column "
                                 f"(data.{what}_column=... / {what}_column=)")
        text, label = record[text_column], record[label_column]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: the text ({text_column!r}) is empty or only "
                             f"whitespace ({text!r}): fill it in or remove the row")
        if label is None or not str(label).strip():
            raise ValueError(f"{where}: the label ({label_column!r}) is empty: "
                             "fill it in or remove the row")
        texts.append(text.strip())
        labels.append(str(label).strip())
    if not texts:
        raise ValueError(f"{source} holds no rows: it needs one row per text (and a header row in CSV/TSV)")
    return texts, labels


def read_text_file(path: str | os.PathLike, text_column: str = "text", label_column: str = "label"
                   ) -> tuple[list[str], list[str]]:
    """Texts and labels of a CSV, TSV (header row) or JSONL file with named columns.

    Texts and labels are stripped of surrounding whitespace.

    Args:
        path: A ``.csv``, ``.tsv`` / ``.tab`` or ``.jsonl`` / ``.ndjson`` file (UTF-8).
        text_column: The column (header name, JSON key) of the texts.
        label_column: The column of the class names.

    Returns:
        ``(texts, labels)``, two lists of ``N`` strings, in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another extension, a missing column (the file's columns listed), an empty
            text or label, or bytes that are not UTF-8 (the line named).

    Examples:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "intents.csv"
        >>> _ = f.write_text('text,label\\n"hello, there",greet\\n bye ,leave\\n')
        >>> read_text_file(f)
        (['hello, there', 'bye'], ['greet', 'leave'])
    """
    path = Path(path).expanduser()
    fmt = TEXT_FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: read as CSV, TSV or JSONL by its extension, one of "
                         f"{', '.join(TEXT_FILE_FORMATS)}; rename it accordingly")
    if not path.is_file():
        raise FileNotFoundError(f"no text file {path}: pass a CSV / TSV / JSONL file of texts and labels")
    return _column_rows(_records(path, fmt), path, text_column, label_column)


def read_queries(path: str | os.PathLike, text_column: str = "text", label_column: str = "label"
                 ) -> tuple[list[str], list[str] | None]:
    """Sentences to classify: a ``.txt`` file (one per line) or a CSV / TSV / JSONL file with a
    text column, and labels when that file also has the label column (to score the answers).

    Blank lines at the end of a ``.txt`` file are ignored; a blank line before them is an error
    (each line is one query, so a gap would shift which answer belongs to which line).

    Returns:
        ``(texts, labels)``; ``labels`` is ``None`` without a label column.

    Raises:
        FileNotFoundError: no such file.
        ValueError: as :func:`read_text_file`, or an empty line / file.

    Examples:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "queries.txt"
        >>> _ = f.write_text("where is my card\\n  block it  \\n\\n")
        >>> read_queries(f)
        (['where is my card', 'block it'], None)
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no query file {path}: pass a .txt file of sentences (one per line) "
                                "or a CSV / TSV / JSONL file with a text column")
    if path.suffix.lower() == ".txt":
        lines = _read_utf8(path).splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                raise ValueError(f"{path}: line {n} is empty: one sentence per line, remove the blank line")
        if not lines:
            raise ValueError(f"{path} holds no sentences: write one per line")
        return [line.strip() for line in lines], None
    fmt = TEXT_FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: queries are read by extension: .txt (one sentence per line) or "
                         f"{', '.join(TEXT_FILE_FORMATS)}; rename it accordingly")
    records = list(_records(path, fmt))
    if records and label_column in records[0][1]:
        return _column_rows(iter(records), path, text_column, label_column)
    unlabelled = ((where, {**record, label_column: "?"}, columns) for where, record, columns in records)
    return _column_rows(unlabelled, path, text_column, label_column)[0], None


def read_hf_dataset(dataset, text_column: str = "text", label_column: str = "label"
                    ) -> tuple[list[str], list[str]]:
    """Texts and labels of a Hugging Face ``datasets.Dataset`` with named columns.

    A ``ClassLabel`` label column gives its class names; other labels are turned into strings.

    Raises:
        ValueError: a column is missing (the dataset's columns listed) or a text is empty.
        ImportError: ``datasets`` is not installed (``pip install 'metalearn[hf-datasets]'``).
    """
    from metalearn._lazy import require

    datasets = require("datasets", "hf-datasets")
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset, got {type(dataset).__name__} (for a DatasetDict "
                        "pick a split: dataset['train'])")
    feature = dataset.features.get(label_column)
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    columns = list(dataset.column_names)

    def records():
        for i, row in enumerate(dataset.select_columns([c for c in (text_column, label_column) if c in columns])):
            if names is not None and label_column in row:
                row[label_column] = names[row[label_column]]
            yield f"datasets.Dataset row {i}", row, columns

    return _column_rows(records(), "the datasets.Dataset", text_column, label_column)


def _read_clinc(path: Path) -> list[tuple[str, str, str]]:
    """``(text, label, part)`` rows of CLINC150's ``data_full.json`` (six parts of [text, label])."""
    try:
        parts = json.loads(_read_utf8(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e}): download it again") from e
    rows = []
    for part, pairs in parts.items():
        records = ((f"{path}: {part!r} entry {i}", {"text": p[0], "label": p[1]}, ["text", "label"])
                   for i, p in enumerate(pairs, 1))
        texts, labels = _column_rows(records, f"{path} [{part!r}]", "text", "label")
        rows += [(t, label, part) for t, label in zip(texts, labels)]
    return rows


def _read_table(path: Path, fmt: str, text_column: str, label_column: str, part: str
                ) -> list[tuple[str, str, str]]:
    texts, labels = _column_rows(_records(path, fmt), path, text_column, label_column)
    return [(t, label, part) for t, label in zip(texts, labels)]


# ------------------------------------------------------------------------------ the datasets


@dataclass(frozen=True)
class IntentSource:
    """Where one intent dataset comes from and how its files are read.

    Attributes:
        folder: Its folder under the data root.
        url: Raw-file URL of the official release at the pinned commit (``/<file>`` appended).
        files: Data file -> SHA-256 (from the MANIFEST).
        protaugment: The dataset's folder in ProtAugment's ``data/`` (for the fold files).
        read: ``read(folder) -> [(text, label, part)]``, every utterance.
        full_splits: Extra split names -> the part they are (all intents, BANKING77's files).
        out_of_scope: The label kept out of every class (CLINC150's ``oos``).
    """

    folder: str
    url: str
    files: dict[str, str]
    protaugment: str
    read: Callable[[Path], list[tuple[str, str, str]]]
    full_splits: dict[str, str]
    out_of_scope: str | None = None


SOURCES: dict[str, IntentSource] = {
    "banking77": IntentSource(
        "banking77",
        "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/"
        "57ec275d8078af65b7731c2a98be812d844a6d6b/banking_data",
        {"train.csv": "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
         "test.csv": "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d"},
        "BANKING77",
        lambda d: (_read_table(d / "train.csv", "csv", "text", "category", "train")
                   + _read_table(d / "test.csv", "csv", "text", "category", "test")),
        {"full-train": "train", "full-test": "test"}),
    "clinc150": IntentSource(
        "clinc150",
        "https://raw.githubusercontent.com/clinc/oos-eval/828f8093932c8fe6ca7936c3d2e52903b1c523de/data",
        {"data_full.json": "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0"},
        "OOS", lambda d: _read_clinc(d / "data_full.json"), {}, out_of_scope="oos"),
    "hwu64": IntentSource(
        "hwu64", f"{PROTAUGMENT_URL}/HWU64",
        {"full.jsonl": "a4c337fc8d12a5b62715d80e6df3b51bea20d137da0a833e8eb584e90c429d13"},
        "HWU64", lambda d: _read_table(d / "full.jsonl", "jsonl", "sentence", "label", "full"), {}),
}
"""The reader table: dataset name -> :class:`IntentSource`."""


@functools.cache
def _fold_checksums() -> dict[str, str]:
    """``"<dataset>/0N/labels.<split>.txt"`` -> SHA-256 of ProtAugment's fold files."""
    text = resources.files("metalearn.data").joinpath("splits/protaugment/SHA256SUMS.txt").read_text()
    return {name: digest for digest, name in (line.split() for line in text.splitlines()
                                              if line.strip() and not line.startswith("#"))}


def _fold_file(name: str, fold: int, split: str) -> str:
    return f"{fold:02d}/labels.{FOLD_SPLITS[split]}.txt"


def _expected_files(name: str) -> dict[str, tuple[str, str]]:
    """Every file of a dataset folder -> ``(url, sha256)``."""
    source = SOURCES[name]
    files = {f: (f"{source.url}/{f}", digest) for f, digest in source.files.items()}
    for fold in FOLDS:
        for split in FOLD_SPLITS:
            rel = _fold_file(name, fold, split)
            files[f"splits/protaugment/{rel}"] = (f"{PROTAUGMENT_URL}/{source.protaugment}/few_shot/{rel}",
                                                  _fold_checksums()[f"{name}/{rel}"])
    return files


def download_intents(name: str, root: str | os.PathLike | None = None, *, quiet: bool = False) -> Path:
    """Download the files of ``name`` that ``<root>/<name>/`` lacks, from the official releases at
    the commits the MANIFESTs pin, each checked against its SHA-256 and written atomically.

    Returns:
        The dataset folder.

    Raises:
        ChecksumError: a download has another digest (it is removed).
        urllib.error.URLError: no network (the files can be copied there by hand instead).
    """
    if name not in SOURCES:
        raise ValueError(f"unknown intent dataset {name!r}; choose {', '.join(SOURCES)}")
    folder = data_root(root) / SOURCES[name].folder
    for rel, (url, digest) in _expected_files(name).items():
        if not (folder / rel).is_file():
            download(url, folder / rel, digest, quiet=quiet, algorithm="sha256")
    return folder


def locate_intents(name: str, root: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The folder holding dataset ``name``: ``<root>/<name>/``, or ``root`` itself.

    Raises:
        FileNotFoundError: neither holds the dataset's files (and ``download`` is False).
    """
    base = data_root(root)
    data_files = list(SOURCES[name].files)
    for folder in (base / SOURCES[name].folder, base):
        if all((folder / f).is_file() for f in data_files):
            return folder
    if download:
        return download_intents(name, root)
    raise FileNotFoundError(
        f"{name} not found: neither {base / SOURCES[name].folder} nor {base} holds "
        f"{', '.join(data_files)}. Pass download=True, run `metalearn prepare-data {name}`, or set "
        f"data.root (--data-root, METALEARN_DATA) to the folder that holds {SOURCES[name].folder}/")


@functools.lru_cache(maxsize=8)
def _read_corpus(name: str, folder: Path, stamp: tuple) -> list[tuple[str, str, str]]:
    """Every ``(text, label, part)`` of a dataset folder (``stamp``: file sizes and times, so an
    edited file is read again)."""
    for f, digest in SOURCES[name].files.items():
        if sha256_file(folder / f) != digest:
            warnings.warn(f"{folder / f} differs from the official {name} file (sha256 {digest[:12]}...): "
                          "read as it is; download it again for the published figures", stacklevel=4)
    return SOURCES[name].read(folder)


def _stamp(folder: Path, files: Sequence[str]) -> tuple:
    return tuple((f, (folder / f).stat().st_size, (folder / f).stat().st_mtime_ns) for f in files)


def read_fold(folder: str | os.PathLike, fold: int, classes: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The classes of ProtAugment fold ``fold`` under ``<folder>/splits/protaugment/``.

    Args:
        folder: The dataset folder.
        fold: 1 to 5.
        classes: The dataset's classes: each must be in exactly one list.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` in file order.

    Raises:
        ValueError: another fold, lists that overlap or do not cover ``classes``.
        FileNotFoundError: a fold file is missing.
    """
    if fold not in FOLDS:
        raise ValueError(f"fold must be one of {', '.join(map(str, FOLDS))} (data.fold), got {fold!r}")
    folder = Path(folder)
    out = {}
    for split in FOLD_SPLITS:
        path = folder / "splits" / "protaugment" / _fold_file("", fold, split)
        if not path.is_file():
            raise FileNotFoundError(f"fold file {path} is missing: download_intents() fetches the "
                                    "ProtAugment folds, or copy splits/protaugment/ from the release")
        out[split] = [line.strip() for line in _read_utf8(path).splitlines() if line.strip()]
    seen: dict[str, str] = {}
    for split, names in out.items():
        for c in names:
            if c in seen:
                raise ValueError(f"fold {fold}: class {c!r} is in both {seen[c]} and {split}: the fold "
                                 "files are damaged; download them again")
            seen[c] = split
    if classes is not None and set(seen) != set(classes):
        extra, missing = sorted(set(seen) - set(classes)), sorted(set(classes) - set(seen))
        raise ValueError(f"fold {fold} of {folder} does not match the data: listed but absent {extra[:3]}, "
                         f"present but unlisted {missing[:3]}; use the fold files of the same release")
    return out


def text_tokenizer(tokenizer: TextTokenizer | str, train_texts: Sequence[str], *, vocab_size: int = 8000,
                   max_length: int = 64, lowercase: bool = True,
                   cache: str | os.PathLike | None | bool = None) -> TextTokenizer:
    """``tokenizer`` itself, a vocabulary (``wordpiece`` / ``bpe``) trained on ``train_texts``, or
    the pretrained tokenizer at a path (``data.tokenizer``)."""
    if isinstance(tokenizer, TextTokenizer):
        return tokenizer
    if tokenizer in KINDS:
        return TextTokenizer.train(train_texts, tokenizer, vocab_size, max_length, lowercase, cache=cache)
    return TextTokenizer.from_pretrained(tokenizer, max_length)


def _rows_of(texts: Sequence[str], labels: Sequence[str], classes: Sequence[str]) -> tuple[list[str], list[str]]:
    chosen = set(classes)
    rows = [(t, c) for t, c in zip(texts, labels) if c in chosen]
    return [t for t, _ in rows], [c for _, c in rows]


def split_text_dataset(texts: Sequence[str], labels: Sequence[str], classes: dict[str, Sequence[str]],
                       split: str, tokenizer: TextTokenizer | str = "wordpiece", *, vocab_size: int = 8000,
                       max_length: int = 64, lowercase: bool = True,
                       cache: str | os.PathLike | None | bool = None, name: str = "text") -> TextDataset:
    """The :class:`TextDataset` of one class split, its vocabulary trained on the ``train`` classes.

    Args:
        texts, labels: Every example.
        classes: Split name -> its classes, with a ``train`` entry (e.g. :func:`read_fold`,
            :func:`~metalearn.data.folders.split_classes`).
        split: The split to build.
        tokenizer: A :class:`TextTokenizer`; ``wordpiece`` or ``bpe`` (trained on the texts of the
            ``train`` classes only, whatever ``split`` is); or a pretrained model folder /
            ``tokenizer.json`` path.
        vocab_size, max_length, lowercase: Settings of a trained vocabulary (``max_length`` also
            of a pretrained one).
        cache: Cache folder (``None``: the default cache dir, ``False``: none).
        name: Prefix of the cache files.

    Raises:
        ValueError: ``split`` is not in ``classes`` (the valid names listed).

    Examples:
        >>> texts = ["book a flight", "fly me there", "my card broke", "card declined", "hi", "hello"]
        >>> labels = ["fly", "fly", "card", "card", "greet", "greet"]
        >>> classes = {"train": ["fly", "card"], "test": ["greet"]}
        >>> ds = split_text_dataset(texts, labels, classes, "test", vocab_size=40, cache=False)
        >>> ds.texts, ds.class_names, "hello" in ds.tokenizer.backend.get_vocab()
        (['hi', 'hello'], ['greet'], False)
    """
    if split not in classes:
        raise ValueError(f"unknown split {split!r}; choose {', '.join(classes)}")
    tokenizer = text_tokenizer(tokenizer, _rows_of(texts, labels, classes["train"])[0], vocab_size=vocab_size,
                               max_length=max_length, lowercase=lowercase, cache=cache)
    return TextDataset(*_rows_of(texts, labels, classes[split]), tokenizer, list(classes[split]),
                       cache=cache, name=f"{name}-{split}")


class IntentDataset(TextDataset):
    """One split of an intent dataset of :data:`SOURCES` (the base of :class:`Banking77`,
    :class:`Clinc150`, :class:`Hwu64`).

    Args:
        split: ``train``, ``val`` or ``test``: the meta-train / meta-val / meta-test intents of
            the ProtAugment fold, with every utterance of each. BANKING77 also has
            ``full-train`` / ``full-test``: its original train.csv / test.csv, all 77 intents.
        fold: ProtAugment fold, 1 to 5.
        root: Data root holding ``<dataset>/`` (or that folder itself); ``None``:
            ``$METALEARN_DATA``, else ``~/.cache/metalearn``.
        tokenizer: A :class:`TextTokenizer`; ``wordpiece`` or ``bpe`` (trained on the fold's
            ``train`` intents, for ``full-*`` on train.csv); or a pretrained tokenizer's path.
        vocab_size, max_length, lowercase: Settings of the tokenizer.
        download: Download missing files (:func:`download_intents`).
        cache: Cache folder for the vocabulary and the ids.

    Attributes:
        split, fold, folder: What was read, from where.

    Raises:
        ValueError: an unknown split (the valid ones listed) or fold.
        FileNotFoundError: the dataset is not under ``root`` and ``download`` is False.
    """

    source: ClassVar[str]

    def __init__(self, split: str = "train", fold: int = 1, root: str | os.PathLike | None = None,
                 tokenizer: TextTokenizer | str = "wordpiece", *, vocab_size: int = 8000,
                 max_length: int = 64, lowercase: bool = True, download: bool = False,
                 cache: str | os.PathLike | None | bool = None):
        src = SOURCES[self.source]
        valid = [*FOLD_SPLITS, *src.full_splits]
        if split not in valid:
            raise ValueError(f"unknown {self.source} split {split!r}; choose {', '.join(valid)}")
        folder = locate_intents(self.source, root, download)
        rows = _read_corpus(self.source, folder, _stamp(folder, list(src.files)))
        self._oos = {part: t for part in ("train", "val", "test")
                     if (t := [t for t, c, p in rows if c == src.out_of_scope and p == f"oos_{part}"])}
        rows = [r for r in rows if r[1] != src.out_of_scope]
        if split in src.full_splits:  # all intents; the vocabulary from the training file only
            train_texts = [t for t, _, p in rows if p == src.full_splits["full-train"]]
            texts, labels = [t for t, _, p in rows if p == src.full_splits[split]], \
                [c for _, c, p in rows if p == src.full_splits[split]]
            class_names = sorted(set(labels))
        else:
            texts, labels = [t for t, _, _ in rows], [c for _, c, _ in rows]
            classes = read_fold(folder, fold, sorted(set(labels)))
            train_texts = _rows_of(texts, labels, classes["train"])[0]
            texts, labels = _rows_of(texts, labels, classes[split])
            class_names = classes[split]
        tokenizer = text_tokenizer(tokenizer, train_texts, vocab_size=vocab_size, max_length=max_length,
                                   lowercase=lowercase, cache=cache)
        super().__init__(texts, labels, tokenizer, class_names, cache=cache, name=f"{self.source}-{split}")
        self.split, self.fold, self.folder = split, fold, folder


class Banking77(IntentDataset):
    """BANKING77 (Casanueva et al., 2020): 13,083 online-banking queries, 77 intents
    (train.csv 10,003 + test.csv 3,080). See :class:`IntentDataset` for the arguments."""

    source = "banking77"


class Clinc150(IntentDataset):
    """CLINC150 (Larson et al., EMNLP 2019): 150 in-scope intents x 150 queries, plus 1,200
    out-of-scope queries kept apart (:meth:`oos_texts`). See :class:`IntentDataset`."""

    source = "clinc150"

    def oos_texts(self, part: str = "test") -> list[str]:
        """The out-of-scope queries of CLINC150's ``train`` (100), ``val`` (100) or ``test`` (1,000)
        part; encode them with ``self.tokenizer.encode``."""
        if part not in self._oos:
            raise ValueError(f"unknown out-of-scope part {part!r}; choose {', '.join(self._oos)}")
        return list(self._oos[part])


class Hwu64(IntentDataset):
    """HWU64 (Liu et al., IWSDS 2019): 11,036 home-assistant utterances, 64 ``scenario/intent``
    classes (ProtAugment's full.jsonl). See :class:`IntentDataset`."""

    source = "hwu64"


INTENT_DATASETS: dict[str, type[IntentDataset]] = {"banking77": Banking77, "clinc150": Clinc150,
                                                   "hwu64": Hwu64}
