"""Text as a :class:`ClassDataset`: a tokenizer (Hugging Face ``tokenizers``) and sentences
tokenised once into fixed-length rows of token ids.

A text example is an int64 row of ``max_length`` token ids, padded with the tokenizer's
``pad_id``; an encoder derives its mask as ``ids != pad_id``. So the episode samplers, the fixed
evaluation episodes and :class:`~metalearn.types.Episode` work on text unchanged:
``episode.support_x`` has shape ``(n_way * k_shot, max_length)``.

Both the trained vocabulary and the id arrays are cached in the cache dir
(:mod:`metalearn.data.cache`), keyed by a hash of the texts and the settings: the same texts and
settings give byte-identical tokenizer JSON and ids, and a stale or corrupt entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from metalearn._lazy import require
from metalearn.data.base import ClassDataset
from metalearn.data.cache import ArrayCache, atomic_write, cache_dir

KINDS = ("wordpiece", "bpe")
"""Vocabularies :meth:`TextTokenizer.train` learns."""

PAD, UNK = "[PAD]", "[UNK]"
_PAD_NAMES = (PAD, "<pad>", "<|pad|>", "[pad]")  # what pretrained tokenizers call their padding
_META_FORMAT = 1


def _text_hash(texts: Sequence[str], settings: str) -> str:
    h = hashlib.sha256(settings.encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """``texts`` as a list, after refusing non-strings and empty or whitespace-only texts."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, got one string: wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] is a {type(t).__name__}, not a string: convert or drop it")
        if not t.strip():
            raise ValueError(f"{what}[{i}] is empty or only whitespace: fill it in or remove that example")
    return texts


def _pretokenized(lowercase: bool):
    """The normaliser (NFKC, then lower-casing) and pre-tokeniser (whitespace, then each
    punctuation mark on its own) of a vocabulary trained here."""
    tk = require("tokenizers", "text")
    norm = [tk.normalizers.NFKC()] + ([tk.normalizers.Lowercase()] if lowercase else [])
    return (tk.normalizers.Sequence(norm),
            tk.pre_tokenizers.Sequence([tk.pre_tokenizers.WhitespaceSplit(), tk.pre_tokenizers.Punctuation()]))


def _train_backend(texts: list[str], kind: str, vocab_size: int, lowercase: bool):
    """A ``tokenizers.Tokenizer`` trained on ``texts``, without padding or truncation.

    Both kinds come from ``tokenizers``' BPE trainer without affixes, the one trainer of the
    library whose result does not depend on hash-map order (its WordPiece trainer and BPE with a
    ``##`` prefix number their tokens differently from one process to the next, measured with
    tokenizers 0.23). ``wordpiece`` then offers every learned sub-word both at the start of a
    word and as a ``##`` continuation, and tokenises greedily longest-first (BERT's WordPiece).
    """
    tk = require("tokenizers", "text")
    normalizer, pre_tokenizer = _pretokenized(lowercase)
    # wordpiece doubles each sub-word (word start and ## continuation): half the merges
    target = vocab_size if kind == "bpe" else max(8, (vocab_size + 2) // 2)
    bpe = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
    bpe.normalizer, bpe.pre_tokenizer = normalizer, pre_tokenizer
    bpe.train_from_iterator(texts, tk.trainers.BpeTrainer(vocab_size=target, special_tokens=[PAD, UNK],
                                                          show_progress=False))
    if kind == "bpe":
        return bpe
    pieces = [t for t, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1]) if t not in (PAD, UNK)]
    vocab = {PAD: 0, UNK: 1}
    for piece in pieces:
        for token in (piece, "##" + piece):
            vocab.setdefault(token, len(vocab))
    wp = tk.Tokenizer(tk.models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix="##",
                                          max_input_chars_per_word=100))
    wp.normalizer, wp.pre_tokenizer = normalizer, pre_tokenizer
    wp.decoder = tk.decoders.WordPiece()
    return wp


def _pad_id_of(backend, folder: Path | None) -> int:
    """The padding id a pretrained tokenizer declares: its padding settings, the ``pad_token`` of
    a ``tokenizer_config.json`` beside it, or a token named like padding."""
    if backend.padding is not None:
        return int(backend.padding["pad_id"])
    names = list(_PAD_NAMES)
    config = folder / "tokenizer_config.json" if folder is not None else None
    if config is not None and config.is_file():
        pad = json.loads(config.read_text(encoding="utf-8")).get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        if pad:
            names.insert(0, pad)
    for name in names:
        if (i := backend.token_to_id(name)) is not None:
            return int(i)
    raise ValueError("the pretrained tokenizer has no padding token (looked for padding settings, "
                     f"tokenizer_config.json's pad_token and {', '.join(_PAD_NAMES)}): add a pad "
                     "token to the model's tokenizer, or train one here (data.tokenizer=wordpiece)")


class TextTokenizer:
    """Text -> fixed-length token ids, a Hugging Face ``tokenizers.Tokenizer`` underneath.

    Build one with :meth:`train` (a vocabulary learned here), :meth:`from_pretrained` (the
    tokenizer of a model folder) or :meth:`load` (one saved by :meth:`save`).

    Attributes:
        backend: The ``tokenizers.Tokenizer`` (padding and truncation to ``max_length`` set).
        max_length: Token ids per text; longer texts are truncated, shorter ones padded.
        pad_id: Id of the padding token (``0`` for a trained vocabulary).
        kind: ``wordpiece``, ``bpe`` or ``pretrained``.
        lowercase: Texts are lower-cased before tokenising (trained vocabularies).

    Examples:
        >>> tok = TextTokenizer.train(["book a flight", "cancel my card"] * 5, vocab_size=60,
        ...                           max_length=6, cache=False)
        >>> ids = tok.encode(["Book a CARD"])
        >>> tuple(ids.shape), ids.dtype, tok.pad_id
        ((1, 6), torch.int64, 0)
        >>> tok.backend.encode("Book a CARD").tokens
        ['bo', '##ok', 'a', 'card', '[PAD]', '[PAD]']
    """

    def __init__(self, backend, max_length: int = 64, pad_id: int = 0, kind: str = "pretrained",
                 lowercase: bool = False):
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise ValueError(f"max_length must be a positive int (tokens per text), got {max_length!r}")
        self.backend, self.max_length, self.pad_id = backend, max_length, int(pad_id)
        self.kind, self.lowercase = kind, lowercase
        pad_token = backend.id_to_token(self.pad_id)
        if pad_token is None:
            raise ValueError(f"pad_id {self.pad_id} is not in the vocabulary of {backend.get_vocab_size()} tokens")
        backend.enable_padding(pad_id=self.pad_id, pad_token=pad_token, length=max_length)
        backend.enable_truncation(max_length)
        self._warned = False

    @classmethod
    def train(cls, texts: Sequence[str], kind: str = "wordpiece", vocab_size: int = 8000,
              max_length: int = 64, lowercase: bool = True,
              cache: str | os.PathLike | None | bool = None) -> TextTokenizer:
        """Learn a vocabulary on ``texts`` (the meta-training classes' texts only).

        Args:
            texts: The training sentences.
            kind: ``wordpiece`` or ``bpe``.
            vocab_size: Largest vocabulary, special tokens ``[PAD]`` (id 0) and ``[UNK]`` (id 1)
                included; a small corpus may give fewer (:attr:`vocab_size` says how many).
            max_length: Token ids per encoded text.
            lowercase: Lower-case (after NFKC normalisation) before tokenising.
            cache: Cache folder for the trained vocabulary (``None``: the default cache dir,
                ``False``: train without caching).

        Raises:
            ValueError: an unknown ``kind``, a ``vocab_size`` below 8, or an empty text.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}: choose {' or '.join(KINDS)}, or load a "
                             "pretrained one with TextTokenizer.from_pretrained(path)")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 8:
            raise ValueError(f"vocab_size must be an int of at least 8, got {vocab_size!r}")
        texts = _check_texts(texts)
        if not texts:
            raise ValueError("no texts to train a vocabulary on: pass the meta-training classes' texts")
        tk = require("tokenizers", "text")
        settings = f"{kind}:{vocab_size}:{lowercase}:tokenizers-{tk.__version__}"
        entry = None if cache is False else ArrayCache(
            cache_dir(None if cache is True else cache), f"tokenizer-{kind}", _text_hash(texts, settings))
        hit = entry.load() if entry is not None else None
        if hit is not None:
            backend = tk.Tokenizer.from_str(bytes(hit[0]).decode("utf-8"))
        else:
            backend = _train_backend(texts, kind, vocab_size, lowercase)
            if entry is not None:
                entry.save(np.frombuffer(backend.to_str().encode("utf-8"), dtype=np.uint8),
                           {"kind": kind, "vocab_size": vocab_size, "lowercase": lowercase,
                            "n_texts": len(texts)})
        return cls(backend, max_length, backend.token_to_id(PAD), kind, lowercase)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, max_length: int = 64) -> TextTokenizer:
        """The tokenizer of a pretrained model: a folder with ``tokenizer.json`` (or that file),
        else (e.g. only ``vocab.txt``) the fast tokenizer ``transformers.AutoTokenizer`` builds.

        The padding id is the model's own; the model's special tokens (``[CLS]``, ``[SEP]``) are
        added as its post-processor says.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the tokenizer has no padding token.
            ImportError: ``tokenizers`` (or, for a folder without ``tokenizer.json``,
                ``transformers``) is not installed.
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer at {path}: pass a model folder (with tokenizer.json "
                                    "or vocab.txt) or a tokenizer.json file")
        tk = require("tokenizers", "text")
        file = path if path.is_file() else path / "tokenizer.json"
        folder = path.parent if path.is_file() else path
        if file.is_file():
            backend = tk.Tokenizer.from_file(str(file))
            pad_id = _pad_id_of(backend, folder)
        else:
            transformers = require("transformers", "text")
            hf = transformers.AutoTokenizer.from_pretrained(str(path), use_fast=True)
            backend = hf.backend_tokenizer
            pad_id = hf.pad_token_id if hf.pad_token_id is not None else _pad_id_of(backend, folder)
        backend.no_padding()
        backend.no_truncation()
        return cls(backend, max_length, pad_id, "pretrained", False)

    @property
    def vocab_size(self) -> int:
        """Tokens in the vocabulary (special and added tokens included): the embedding size."""
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex digest of the serialised tokenizer (vocabulary, settings, ``max_length``)."""
        return hashlib.sha256(self.backend.to_str().encode("utf-8")).hexdigest()

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids of ``texts``, padded with :attr:`pad_id` and truncated to :attr:`max_length`.

        Args:
            texts: ``n`` non-empty strings.

        Returns:
            LongTensor of shape ``(n, max_length)``.

        Raises:
            ValueError / TypeError: an empty, whitespace-only or non-string text (its index named).
        """
        ids, truncated = self._encode(texts)
        self._note_truncated(truncated, len(ids))
        return ids

    def _encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, int]:
        """``(ids, number of truncated texts)``, without the warning."""
        texts = _check_texts(texts)
        if not texts:
            return torch.empty(0, self.max_length, dtype=torch.int64), 0
        encodings = self.backend.encode_batch(texts)
        ids = torch.from_numpy(np.array([e.ids for e in encodings], dtype=np.int64))
        return ids, sum(1 for e in encodings if e.overflowing)

    def _note_truncated(self, count: int, total: int) -> None:
        """Warn (once per tokenizer) that ``count`` of ``total`` texts were truncated."""
        if count and not self._warned:
            self._warned = True
            warnings.warn(f"{count} of {total} texts are longer than max_length={self.max_length} tokens "
                          "and were truncated: raise data.max_length (max_length=) to keep them whole",
                          stacklevel=3)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_meta.json`` into ``folder`` (atomically);
        returns the folder."""
        folder = Path(folder)
        meta = {"format": _META_FORMAT, "kind": self.kind, "max_length": self.max_length,
                "pad_id": self.pad_id, "lowercase": self.lowercase, "vocab_size": self.vocab_size,
                "fingerprint": self.fingerprint}
        atomic_write(folder / "tokenizer.json", lambda f: f.write(self.backend.to_str()), mode="w")
        atomic_write(folder / "tokenizer_meta.json", lambda f: f.write(json.dumps(meta, indent=1)), mode="w")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TextTokenizer:
        """The tokenizer :meth:`save` wrote to ``folder``.

        Raises:
            FileNotFoundError: a file is missing.
            ValueError: ``tokenizer.json`` does not match the fingerprint in ``tokenizer_meta.json``
                (the files were changed or mixed up).
        """
        folder = Path(folder)
        missing = [n for n in ("tokenizer.json", "tokenizer_meta.json") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {' and '.join(missing)}: point at the folder "
                                    "TextTokenizer.save wrote (a text run's directory)")
        meta = json.loads((folder / "tokenizer_meta.json").read_text(encoding="utf-8"))
        tk = require("tokenizers", "text")
        backend = tk.Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok = cls(backend, meta["max_length"], meta["pad_id"], meta["kind"], meta["lowercase"])
        if tok.fingerprint != meta["fingerprint"]:
            raise ValueError(f"{folder}/tokenizer.json does not match tokenizer_meta.json (fingerprint "
                             f"{tok.fingerprint[:12]}, recorded {meta['fingerprint'][:12]}): the files "
                             "were changed or come from different runs; restore the run's own files")
        return tok

    def __repr__(self) -> str:
        return (f"TextTokenizer({self.kind}, vocab_size={self.vocab_size}, max_length={self.max_length}, "
                f"pad_id={self.pad_id})")


class TextDataset(ClassDataset):
    """Sentences with string labels, tokenised once into ids: a :class:`ClassDataset` of text.

    Args:
        texts: ``N`` non-empty sentences.
        labels: ``N`` class names (strings).
        tokenizer: The :class:`TextTokenizer` that encodes them.
        class_names: The classes, in label order (default: the sorted distinct labels); a
            label outside them is an error.
        cache: Cache folder for the id array (``None``: the default cache dir, ``False``: none).
        name: Prefix of the cache file.

    Attributes:
        texts: The sentence of each example, ``texts[i]`` for example ``i``.
        tokenizer: The tokenizer.

    Examples ``gather`` into int64 ids of shape ``(*index.shape, max_length)``.

    Examples:
        >>> tok = TextTokenizer.train(["book a flight", "cancel my card"] * 5, vocab_size=60,
        ...                           max_length=6, cache=False)
        >>> ds = TextDataset(["book it", "a flight", "my card", "cancel"], ["fly", "fly", "card", "card"],
        ...                  tok, cache=False)
        >>> ds.class_names, tuple(ds.gather(torch.tensor([0, 2])).shape)
        (['card', 'fly'], (2, 6))
        >>> ds.subset_classes(["fly"]).texts
        ['book it', 'a flight']
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[str], tokenizer: TextTokenizer,
                 class_names: Sequence[str] | None = None, *,
                 cache: str | os.PathLike | None | bool = None, name: str = "text"):
        texts = _check_texts(texts)
        labels = [str(label) for label in labels]
        if len(labels) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels: one label per text")
        if not isinstance(tokenizer, TextTokenizer):
            raise TypeError(f"tokenizer must be a TextTokenizer, got {type(tokenizer).__name__}")
        names = sorted(set(labels)) if class_names is None else [str(c) for c in class_names]
        position = {c: i for i, c in enumerate(names)}
        unknown = sorted(set(labels) - position.keys())
        if unknown:
            raise ValueError(f"{len(unknown)} labels are not in class_names, e.g. {unknown[:3]}: add them "
                             "to class_names or drop those examples")
        int_labels = np.array([position[label] for label in labels], dtype=np.int64)
        super().__init__(self._encode_cached(texts, tokenizer, cache, name), int_labels, names)
        self.texts, self.tokenizer = texts, tokenizer

    @staticmethod
    def _encode_cached(texts: list[str], tokenizer: TextTokenizer, cache, name: str) -> torch.Tensor:
        entry = None if cache is False else ArrayCache(
            cache_dir(None if cache is True else cache), f"{name}-ids-{tokenizer.max_length}",
            _text_hash(texts, tokenizer.fingerprint))
        hit = entry.load() if entry is not None else None
        if hit is not None and hit[0].shape == (len(texts), tokenizer.max_length):
            ids, truncated = torch.from_numpy(np.array(hit[0])), int(hit[1].get("truncated", 0))
        else:
            ids, truncated = tokenizer._encode(texts)
            if entry is not None:
                entry.save(ids.numpy(), {"n": len(texts), "max_length": tokenizer.max_length,
                                         "truncated": truncated})
        tokenizer._note_truncated(truncated, len(texts))  # also on a cache hit: said once per tokenizer
        return ids

    def _view(self, keep: np.ndarray, labels: np.ndarray, class_names: list[str]) -> TextDataset:
        rows = keep if self._item_index is None else self._item_index.numpy()[keep]
        view = TextDataset.__new__(TextDataset)
        ClassDataset.__init__(view, self._data, labels, class_names, item_index=rows)
        view.texts, view.tokenizer = [self.texts[i] for i in keep], self.tokenizer
        return view

    def index_dataset(self) -> ClassDataset:
        """A :class:`ClassDataset` with the same labels whose example ``i`` is the int64 position
        ``[i]``: episodes drawn from it with the same seed are this dataset's episodes, and their
        ``support_x[:, 0]`` index :attr:`texts` (for baselines that read the sentences).

        Examples:
            >>> tok = TextTokenizer.train(["a b", "c d"], vocab_size=20, max_length=4, cache=False)
            >>> ds = TextDataset(["a b", "c d", "a", "d"], ["x", "y", "x", "y"], tok, cache=False)
            >>> ds.index_dataset().gather(torch.tensor([3])).tolist()
            [[3]]
        """
        return ClassDataset(torch.arange(len(self), dtype=torch.int64).reshape(-1, 1), self.labels,
                            self.class_names)
