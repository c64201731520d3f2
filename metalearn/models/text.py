"""Text encoders over int64 token ids: a CNN and a small transformer trained from scratch, and a
pretrained Hugging Face model brought by the user.

A text example is a fixed-length row of token ids ``(L,)`` padded with ``pad_id``; every
encoder derives its mask as ``ids != pad_id``, so padding never changes the features (appending
pads to a row gives the same features, and a row that is all padding gives zeros, never NaN).
All are :class:`~metalearn.models.Backbone` subclasses: with ``out_features=None`` they return
flat features of size ``.out_dim`` (for ProtoNet, Matching, Baseline++ ...), otherwise a linear
``head`` (``head.*`` parameters, for MAML/ANIL/Meta-SGD).

The from-scratch encoders are plain tensor code (no ``nn.TransformerEncoderLayer``, whose eval
mode takes a different fused path), so ``torch.func.functional_call``, second-order
``torch.func.grad`` and ``vmap`` over tasks work on them. Dropout is off by default (``0.0``):
under ``vmap`` a random operation is refused (:mod:`metalearn.algorithms.task_map` maps with
``randomness="error"``), so dropout > 0 needs a task mode other than ``vmap`` for MAML; metric
learners (ProtoNet, ...) never vmap. :mod:`metalearn.train.text_pretrain` switches dropout on
for its self-supervised pretraining only.

References: Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014;
Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (pre-norm blocks as in GPT-2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.models.heads import Backbone


def _check_ids(ids: Tensor, what: str) -> None:
    if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{what} takes token ids of shape (N, L) and dtype int64, got "
                         f"{tuple(ids.shape)} {ids.dtype}: encode texts with the run's tokenizer "
                         "(metalearn.data.text.TextTokenizer.encode)")


def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` when it is on; a clear error when it meets ``vmap``'s refusal of randomness."""
    if p <= 0.0 or not training:
        return x
    try:
        return F.dropout(x, p, True)
    except RuntimeError as e:
        if "randomness" not in str(e):
            raise
        raise RuntimeError(f"dropout={p} under torch.func.vmap (MAML-style task_mode='vmap'): vmap "
                           "refuses random operations. Use dropout=0.0 for meta-training, or "
                           "algorithm.task_mode=loop (or threads).") from e


def masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``h`` ``(N, L, d)`` over the positions where ``mask`` ``(N, L)`` is true.

    A row without any true position gives zeros (the denominator is clamped), never NaN.

    Examples:
        >>> masked_mean(torch.ones(2, 3, 4), torch.tensor([[True, False, False], [False] * 3]))[:, 0]
        tensor([1., 0.])
    """
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(-2) / m.sum(-2).clamp(min=1.0)


class TextCNN(Backbone):
    """Token embeddings, parallel 1-D convolutions and max-over-time pooling (Kim, 2014).

    Each kernel size ``k`` gives ``channels`` ReLU feature maps over every window of ``k``
    tokens that holds at least one real token (pads embed to zeros); each map is max-pooled over
    those windows, and the maps of all kernel sizes are concatenated. Appending pads to a row
    adds only windows of padding, which are excluded, so the features are unchanged.

    Args:
        vocab_size: Number of token ids (the tokenizer's ``vocab_size``).
        embed_dim: Size of the token embeddings.
        channels: Feature maps per kernel size.
        kernel_sizes: Window widths in tokens, one convolution each.
        pad_id: The padding id; positions with ``ids == pad_id`` are masked out.
        out_features: Size of the linear head, or ``None`` to return pooled features.
        dropout: Dropout on the embeddings and the pooled features (0 for meta-training under
            vmap; self-supervised pretraining switches it on).

    Shapes:
        ``ids``: ``(N, L)`` int64 -> ``(N, out_features)``, or ``(N, channels * len(kernel_sizes))``
        when ``out_features`` is None.

    Examples:
        >>> net = TextCNN(vocab_size=100, embed_dim=8, channels=4, kernel_sizes=(2, 3))
        >>> net(torch.randint(1, 100, (5, 12))).shape
        torch.Size([5, 8])
    """

    def __init__(self, vocab_size: int = 8000, embed_dim: int = 128, channels: int = 128,
                 kernel_sizes: Sequence[int] = (3, 4, 5), pad_id: int = 0,
                 out_features: int | None = None, dropout: float = 0.0):
        super().__init__()
        if not kernel_sizes or any(int(k) < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be a non-empty list of widths >= 1, got {kernel_sizes!r}")
        self.vocab_size, self.pad_id, self.dropout = int(vocab_size), int(pad_id), float(dropout)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.embed = nn.Embedding(self.vocab_size, embed_dim)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k, padding=k - 1) for k in self.kernel_sizes)
        self.out_dim = channels * len(self.kernel_sizes)
        self._init_head(out_features)

    def _maps(self, ids: Tensor) -> tuple[list[Tensor], Tensor]:
        """ReLU maps ``(N, channels, L + k - 1)`` per kernel size, and the mask ``(N, L)``."""
        _check_ids(ids, type(self).__name__)
        mask = ids != self.pad_id
        e = self.embed(ids) * mask.unsqueeze(-1).to(self.embed.weight.dtype)
        e = _dropout(e, self.dropout, self.training).transpose(1, 2)  # (N, embed_dim, L)
        return [F.relu(conv(e)) for conv in self.convs], mask

    def features(self, ids: Tensor, n_support: int | None = None) -> Tensor:
        maps, mask = self._maps(ids)
        m = mask.unsqueeze(1).to(maps[0].dtype)  # (N, 1, L)
        pooled = []
        for k, h in zip(self.kernel_sizes, maps):
            # output t covers tokens t-k+1..t: valid when one of them is real. ReLU maps are >= 0,
            # so zeroing the invalid windows and taking the max is the max over the valid ones
            # (and 0 for a row of padding).
            valid = F.max_pool1d(F.pad(m, (k - 1, k - 1)), k, stride=1)
            pooled.append((h * valid).amax(-1))
        return _dropout(torch.cat(pooled, -1), self.dropout, self.training)

    def token_features(self, ids: Tensor) -> Tensor:
        """Per-token features ``(N, L, out_dim)``: for each token, the windows centred on it.

        Used by masked-token pretraining (:func:`metalearn.train.text_pretrain.pretrain_text_encoder`).
        """
        maps, _ = self._maps(ids)
        L = ids.shape[1]
        return torch.cat([h[..., (k - 1) // 2:(k - 1) // 2 + L] for k, h in zip(self.kernel_sizes, maps)],
                         1).transpose(1, 2)


class TextBag(Backbone):
    """A weighted bag of token (and token-bigram) embeddings, L2-normalised (SWEM / fastText).

    Each real token ``t`` contributes ``w[t] * e[t]``; ``w[t] = softplus(v[t])`` is a learned
    per-token weight (IDF-like; every token starts at the same weight) and ``e`` a learned
    embedding. With ``bigram_buckets > 0``, each pair of adjacent real tokens is hashed into one
    of that many buckets with its own embedding and weight. The weighted mean is L2-normalised,
    so ProtoNet's squared distance is ``2 - 2 cos``.

    Why a bag: in few-shot intent detection the words that tell two new intents apart are often
    absent from every meta-training text (36% of BANKING77's fold-1 test-intent word types, 64%
    of HWU64's). Such a token keeps its random initial embedding, and in a wide bag random
    embeddings are nearly orthogonal, so two sentences sharing it still come out close (a
    random projection of the bag of words), while training reshapes the embeddings and weights of
    the tokens it sees.

    Args:
        vocab_size: Number of token ids (the tokenizer's ``vocab_size``).
        embed_dim: Size of the embeddings (and of the features).
        bigram_buckets: Hash buckets of adjacent-token pairs; 0 for tokens only.
        pad_id: The padding id (masked out).
        out_features: Size of a linear head, or ``None`` for the normalised features.
        dropout: Word dropout while training: each token's (and bigram's) contribution is
            dropped with this probability (0 for meta-training under vmap; SimCSE pretraining
            makes its two views of a sentence this way).

    Shapes:
        ``ids``: ``(N, L)`` int64 -> ``(N, embed_dim)``, or ``(N, out_features)``.

    Examples:
        >>> net = TextBag(vocab_size=50, embed_dim=16, bigram_buckets=32)
        >>> f = net(torch.randint(1, 50, (3, 7)))
        >>> tuple(f.shape), bool(torch.allclose(f.norm(dim=1), torch.ones(3)))
        ((3, 16), True)
    """

    def __init__(self, vocab_size: int = 8000, embed_dim: int = 512, bigram_buckets: int = 0,
                 pad_id: int = 0, out_features: int | None = None, dropout: float = 0.0):
        super().__init__()
        if embed_dim < 1 or bigram_buckets < 0:
            raise ValueError(f"embed_dim must be >= 1 and bigram_buckets >= 0, got {embed_dim}, {bigram_buckets}")
        self.vocab_size, self.pad_id, self.dropout = int(vocab_size), int(pad_id), float(dropout)
        self.bigram_buckets = int(bigram_buckets)
        self.embed = nn.Embedding(self.vocab_size, embed_dim)
        self.weight = nn.Embedding(self.vocab_size, 1)
        nn.init.zeros_(self.weight.weight)  # softplus(0) for every token at the start
        if self.bigram_buckets:
            self.bigram_embed = nn.Embedding(self.bigram_buckets, embed_dim)
            self.bigram_weight = nn.Embedding(self.bigram_buckets, 1)
            nn.init.zeros_(self.bigram_weight.weight)
        self.out_dim = embed_dim
        self._init_head(out_features)

    def features(self, ids: Tensor, n_support: int | None = None) -> Tensor:
        _check_ids(ids, type(self).__name__)
        real = (ids != self.pad_id).unsqueeze(-1)
        # word dropout scales the kept contributions by 1/(1-p), which the mean divides out
        mask = _dropout(real.to(self.embed.weight.dtype), self.dropout, self.training)
        w = F.softplus(self.weight(ids)) * mask
        total = (w * self.embed(ids)).sum(1)
        norm = w.sum(1)
        if self.bigram_buckets:
            pair = (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % self.bigram_buckets
            pw = F.softplus(self.bigram_weight(pair)) * (mask[:, :-1] * mask[:, 1:])
            total = total + (pw * self.bigram_embed(pair)).sum(1)
            norm = norm + pw.sum(1)
        return F.normalize(total / norm.clamp(min=1e-6), dim=-1)


class _Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp_ratio * dim), nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: Tensor, key_bias: Tensor, p: float, training: bool) -> Tensor:
        n, L, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # Plain attention ops: they compose with vmap and grad-of-grad everywhere. key_bias is
        # 0 for real keys and the dtype's minimum for pads: exp underflows to exactly 0, and a row
        # of padding gets uniform (finite) weights instead of the NaN of -inf.
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads) + key_bias
        attn = _dropout(scores.softmax(-1), p, training)
        h = (attn @ v).transpose(1, 2).reshape(n, L, d)
        x = x + _dropout(self.proj(h), p, training)
        return x + _dropout(self.fc2(F.gelu(self.fc1(self.norm2(x)))), p, training)


class TextTransformer(Backbone):
    """Token + learned position embeddings, pre-norm transformer blocks, masked mean pooling.

    Pads are masked as attention keys and left out of the mean, so they never change the
    features.

    Args:
        vocab_size: Number of token ids (the tokenizer's ``vocab_size``).
        dim: Width of the embeddings and blocks.
        depth: Number of transformer blocks.
        heads: Attention heads per block (must divide ``dim``).
        max_length: Longest sequence (positions embedded); longer inputs are refused.
        pad_id: The padding id; positions with ``ids == pad_id`` are masked out.
        out_features: Size of the linear head, or ``None`` to return pooled features.
        dropout: Dropout on embeddings, attention weights and residual branches (0 for
            meta-training under vmap; self-supervised pretraining switches it on).

    Shapes:
        ``ids``: ``(N, L)`` int64 with ``L <= max_length`` -> ``(N, out_features)``, or
        ``(N, dim)`` when ``out_features`` is None.

    Examples:
        >>> net = TextTransformer(vocab_size=100, dim=16, depth=1, heads=2, max_length=12)
        >>> net(torch.randint(1, 100, (5, 12))).shape
        torch.Size([5, 16])
    """

    def __init__(self, vocab_size: int = 8000, dim: int = 128, depth: int = 2, heads: int = 4,
                 max_length: int = 64, pad_id: int = 0, out_features: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim}): e.g. dim={heads * max(1, dim // heads)}")
        self.vocab_size, self.pad_id, self.dropout = int(vocab_size), int(pad_id), float(dropout)
        self.max_length = int(max_length)
        self.embed = nn.Embedding(self.vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(self.max_length, dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        self._init_head(out_features)

    def token_features(self, ids: Tensor) -> Tensor:
        """Per-token features ``(N, L, dim)`` after the last block (pads included, unmasked)."""
        _check_ids(ids, type(self).__name__)
        if ids.shape[1] > self.max_length:
            raise ValueError(f"sequences of {ids.shape[1]} tokens exceed max_length={self.max_length} "
                             "of TextTransformer: build it with max_length >= the tokenizer's max_length")
        mask = ids != self.pad_id
        x = _dropout(self.embed(ids) + self.pos[: ids.shape[1]], self.dropout, self.training)
        key_bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~mask, torch.finfo(x.dtype).min)[:, None, None, :]  # (N, 1, 1, L)
        for block in self.blocks:
            x = block(x, key_bias, self.dropout, self.training)
        return self.norm(x)

    def features(self, ids: Tensor, n_support: int | None = None) -> Tensor:
        return masked_mean(self.token_features(ids), ids != self.pad_id)


class PretrainedTextEncoder(Backbone):
    """A pretrained Hugging Face encoder (``transformers.AutoModel``) with mask-aware pooling.

    The attention mask is ``ids != pad_id`` with ``pad_id`` the model config's ``pad_token_id``
    (0 when it has none); encode texts with the model's own tokenizer
    (``TextTokenizer.from_pretrained(path)``). ``.vocab_size`` and ``.pad_id`` are the model's.

    ``freeze=True`` keeps the encoder's weights as buffers (``requires_grad=False``, not
    parameters), so the meta-optimiser and the inner loops of MAML/ANIL/Meta-SGD, which adapt
    ``named_parameters()``, see only the head; the encoder runs without a graph and in eval
    mode (no dropout). Those buffers are not in ``state_dict()`` (the weights are read from
    ``path``; a checkpoint holds the head only). With ``freeze=False`` the encoder is
    fine-tuned and its weights are ordinary parameters in ``state_dict()`` under ``encoder.``.

    Args:
        path: A local model folder (``config.json`` + weights), or a hub name when
            ``local_files_only`` is False.
        pooling: ``"mean"`` over the non-pad tokens, or ``"cls"`` (the first token's state).
        freeze: Keep the pretrained weights fixed: buffers, not parameters, so neither the
            meta-optimiser nor an inner loop changes them (a checkpoint holds the head only).
        out_features: Size of the linear head, or ``None`` to return pooled features.
        local_files_only: Never touch the network (the default); False lets transformers
            download ``path`` from the Hugging Face hub.
        vocab_size: The tokenizer's vocabulary size, checked against the model's (``None``:
            not checked).
        pad_id: The tokenizer's padding id, checked against the model's (``None``: not checked).

    Shapes:
        ``ids``: ``(N, L)`` int64 -> ``(N, out_features)``, or ``(N, hidden_size)`` when
        ``out_features`` is None.

    ``vmap_safe = False``: a Hugging Face forward branches on tensor values, which
    ``torch.func.vmap`` cannot trace, so MAML's ``task_mode="auto"`` maps its tasks by the loop
    (or threads) instead; ``task_mode="vmap"`` fails on it.

    Raises:
        ImportError: transformers is missing (``pip install 'metalearn[text]'``).
        ValueError: an unknown ``pooling``, a folder that does not exist, or a tokenizer that
            does not match the model.
    """

    vmap_safe = False
    """Never map tasks of this encoder with ``torch.func.vmap`` (see the class docstring)."""

    def __init__(self, path: str, pooling: Literal["mean", "cls"] = "mean", freeze: bool = True,
                 out_features: int | None = None, local_files_only: bool = True,
                 vocab_size: int | None = None, pad_id: int | None = None):
        super().__init__()
        from metalearn._lazy import require

        transformers = require("transformers", "text")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"unknown pooling {pooling!r}; choose 'mean' or 'cls'")
        if local_files_only and not Path(path).is_dir():
            raise ValueError(f"no model folder at {path!r}: give the folder holding config.json and the "
                             "weights (model.save_pretrained(folder)), or local_files_only=False to "
                             "download a hub name")
        model = transformers.AutoModel.from_pretrained(path, local_files_only=local_files_only)
        config = model.config
        self.path, self.pooling, self.freeze = str(path), pooling, bool(freeze)
        self.vocab_size = int(config.vocab_size)
        self.pad_id = int(config.pad_token_id) if getattr(config, "pad_token_id", None) is not None else 0
        if vocab_size is not None and int(vocab_size) > self.vocab_size:
            raise ValueError(f"the tokenizer has {vocab_size} ids but the model at {path} only "
                             f"{self.vocab_size}: use the model's tokenizer (data.tokenizer={path})")
        if pad_id is not None and int(pad_id) != self.pad_id:
            raise ValueError(f"the tokenizer pads with id {pad_id} but the model at {path} with "
                             f"{self.pad_id}: use the model's tokenizer (data.tokenizer={path})")
        if self.freeze:
            model.eval()
            _parameters_to_buffers(model)
        self.encoder = model
        self.out_dim = int(config.hidden_size)
        self._init_head(out_features)

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()  # a frozen encoder is used as it was pretrained: no dropout
        return self

    def features(self, ids: Tensor, n_support: int | None = None) -> Tensor:
        _check_ids(ids, type(self).__name__)
        mask = ids != self.pad_id
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            return h[:, 0] if self.pooling == "cls" else masked_mean(h, mask)


def _parameters_to_buffers(module: nn.Module) -> None:
    """Turn every parameter of ``module`` into a non-persistent buffer (a shared one stays shared)."""
    made: dict[int, Tensor] = {}
    for sub in module.modules():
        for name, p in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, made.setdefault(id(p), p.detach().requires_grad_(False)),
                                persistent=False)
