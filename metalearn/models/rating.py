"""MeLU's rating network: an embedding per user and item attribute, concatenated, then fully
connected decision layers to a rating.

Lee, Im, Jang, Cho and Chung, "MeLU: Meta-Learned User Preference Estimator for Cold-Start
Recommendation", KDD 2019 (arXiv:1908.00413), section 3: each attribute (the item's genres,
release decade, ..., the user's age, gender, occupation, ...) has its own embedding table
(32-d in the paper); the embeddings are concatenated and passed through two 64-unit ReLU layers
("decision-making layers") to one output, the predicted rating. MeLU's local update adapts the
decision layers only (:class:`metalearn.algorithms.MeLU`).

Inputs are int64 rows of attribute codes laid out field by field (``fields``); a code of 0 is
"missing" (an unknown item, an empty genre slot) and contributes nothing. A multi-valued field
(genres) spans several columns and is embedded as the mean of its non-zero codes. Everything is
plain tensor code (masked sums, no ``nn.EmbeddingBag``), so ``functional_call``, second-order
``grad`` and ``vmap`` over tasks work on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.models.heads import Backbone


def _check_fields(fields) -> list[tuple[str, int, int]]:
    if fields is None:
        raise ValueError("RatingNet needs fields=[[name, cardinality, width], ...], one per input "
                         "attribute; a recommendation run fills it from its data (leave model.fields "
                         "unset), in Python take UserTasks.fields")
    out = []
    for f in fields:
        if len(f) != 3:
            raise ValueError(f"each field is [name, cardinality, width], got {f!r}")
        name, card, width = str(f[0]), int(f[1]), int(f[2])
        if card < 2 or width < 1:
            raise ValueError(f"field {name!r}: cardinality must be >= 2 (code 0 is 'missing') and "
                             f"width >= 1, got cardinality={card}, width={width}")
        out.append((name, card, width))
    if not out:
        raise ValueError("RatingNet needs at least one field")
    return out


class RatingNet(Backbone):
    """Attribute embeddings -> concatenation -> ReLU decision layers -> rating (MeLU's network).

    Args:
        fields: ``[[name, cardinality, width], ...]`` in column order: field ``name`` occupies
            ``width`` columns of ``x`` holding codes in ``0 .. cardinality - 1`` (0: missing).
            A recommendation run sets it from its data (:attr:`metalearn.data.UserTasks.fields`).
        embed_dim: Size of each attribute embedding (32 in MeLU).
        hidden: Sizes of the decision layers (``(64, 64)`` in MeLU).
        out_features: Outputs of the final linear layer (1: a rating), or ``None`` to return the
            last decision layer's activations (features for a CNP).

    Shapes:
        ``x``: ``(N, sum of widths)`` int64 -> ``(N, out_features)``, or ``(N, hidden[-1])``
        with ``out_features=None``.

    Raises:
        ValueError: malformed ``fields``; at call time, inputs of the wrong dtype or width, or
            codes outside a field's range (naming the field).

    Examples:
        >>> net = RatingNet([["item", 10, 1], ["genre", 5, 3]], embed_dim=4, hidden=(8,))
        >>> x = torch.tensor([[3, 1, 2, 0], [0, 4, 0, 0]])
        >>> net(x).shape
        torch.Size([2, 1])
        >>> [n for n, _ in net.named_parameters()][:2]
        ['embeddings.0.weight', 'embeddings.1.weight']
    """

    def __init__(self, fields: Sequence[Sequence] | None = None, embed_dim: int = 32,
                 hidden: Sequence[int] = (64, 64), out_features: int | None = 1):
        super().__init__()
        self.fields = _check_fields(fields)
        if embed_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"embed_dim and hidden sizes must be >= 1, got {embed_dim}, {tuple(hidden)}")
        self.embed_dim = embed_dim
        self.width = sum(w for _, _, w in self.fields)
        self.embeddings = nn.ModuleList(nn.Embedding(card, embed_dim) for _, card, _ in self.fields)
        for emb in self.embeddings:
            nn.init.normal_(emb.weight, std=0.1)
        sizes = [embed_dim * len(self.fields), *hidden]
        self.decision = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out_dim = sizes[-1]
        self._init_head(out_features)

    def embed(self, x: Tensor) -> Tensor:
        """The concatenated attribute embeddings ``(N, embed_dim * n_fields)`` of ``x`` ``(N, width)``."""
        if x.dim() != 2 or x.shape[1] != self.width or x.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"RatingNet takes int64 attribute codes of shape (N, {self.width}) "
                             f"(fields {[n for n, _, _ in self.fields]}), got {tuple(x.shape)} {x.dtype}")
        parts, col = [], 0
        for (_, card, width), emb in zip(self.fields, self.embeddings):
            codes = x[:, col:col + width]
            col += width
            present = (codes > 0).unsqueeze(-1).to(emb.weight.dtype)  # (N, w, 1): 0 is "missing"
            vectors = F.embedding(codes.clamp(0, card - 1), emb.weight) * present
            parts.append(vectors.sum(1) / present.sum(1).clamp(min=1.0))
        return torch.cat(parts, -1)

    def features(self, x: Tensor, n_support: int | None = None) -> Tensor:
        h = self.embed(x)
        for layer in self.decision:
            h = F.relu(layer(h))
        return h

    def check_codes(self, x: Tensor) -> None:
        """Raise if a code of ``x`` lies outside its field (the data and the model disagree)."""
        col = 0
        for name, card, width in self.fields:
            codes = x[:, col:col + width]
            col += width
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= card):
                raise ValueError(f"field {name!r} has codes up to {int(codes.max())} but the model "
                                 f"embeds {card} (model.fields): the data is not the one this model "
                                 "was built for")
