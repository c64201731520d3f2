"""Self-supervised pretraining of a from-scratch text encoder on unlabelled meta-training texts.

Two objectives, labels unused:

- ``"simcse"``: unsupervised SimCSE (Gao, Yao and Chen, "SimCSE: Simple Contrastive Learning of
  Sentence Embeddings", EMNLP 2021). The same batch is encoded twice with dropout on; the two
  views of a sentence are a positive pair, the other sentences of the batch the negatives
  (InfoNCE over cosine similarities, temperature 0.05).
- ``"mlm"``: masked-token prediction (Devlin et al., "BERT", NAACL 2019): 15% of the non-pad
  tokens are hidden (replaced by ``mask_id``, the pad id by default, so the encoder's mask
  removes them from the context) and predicted from the per-token features by a linear
  decoder that is discarded afterwards.

The encoder (:class:`~metalearn.models.TextCNN` or :class:`~metalearn.models.TextTransformer`) is
changed in place; :func:`save_text_encoder` writes its weights as a ``.safetensors`` file that a
run starts from with ``model.weights=FILE`` (:func:`metalearn.models.weights.load_backbone`).
Dropout is switched on for pretraining only: the encoder's own ``dropout`` is restored after.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn._rng import derive_seed, make_generator
from metalearn.data.cache import atomic_write
from metalearn.models.text import TextBag, TextCNN, TextTransformer


def simcse_loss(z1: Tensor, z2: Tensor, temperature: float = 0.05) -> Tensor:
    """InfoNCE of two views ``(B, d)``: row ``i`` of ``z1`` against every row of ``z2``.

    Examples:
        >>> z = torch.eye(4)
        >>> bool(simcse_loss(z, z) < simcse_loss(z, z.roll(1, 0)))
        True
    """
    sim = F.normalize(z1, dim=-1) @ F.normalize(z2, dim=-1).T / temperature
    return F.cross_entropy(sim, torch.arange(len(z1), device=z1.device))


def mask_tokens(ids: Tensor, pad_id: int, mask_id: int, prob: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Hide a random ``prob`` of the non-pad tokens of ``ids`` ``(B, L)`` (at least one per batch).

    Returns:
        ``(masked_ids, chosen)``: ``ids`` with the chosen tokens set to ``mask_id``, and the
        boolean ``(B, L)`` positions to predict.
    """
    real = ids != pad_id
    chosen = (torch.rand(ids.shape, generator=generator) < prob).to(ids.device) & real
    if not bool(chosen.any()) and bool(real.any()):
        chosen.view(-1)[real.view(-1).nonzero()[0]] = True
    return ids.masked_fill(chosen, mask_id), chosen


def pretrain_text_encoder(encoder: TextCNN | TextTransformer | TextBag, ids: Tensor, *,
                          method: Literal["simcse", "mlm"] = "simcse", steps: int = 500,
                          batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                          device: str | torch.device | None = None, progress: bool | None = True,
                          dropout: float = 0.1, temperature: float = 0.05, mask_prob: float = 0.15,
                          mask_id: int | None = None) -> list[float]:
    """Pretrain ``encoder`` in place on unlabelled token ids with SimCSE or masked-token prediction.

    Deterministic given ``seed`` (the batches, masks, dropout and decoder initialisation draw
    from seeded generators; the global RNG is left as it was).

    Args:
        encoder: A from-scratch text encoder; its head, if any, is left untouched.
        ids: ``(N, L)`` int64 token ids of the meta-training texts, padded with ``encoder.pad_id``.
        method: ``"simcse"`` (two dropout views, in-batch negatives) or ``"mlm"``.
        steps: Adam steps.
        batch_size: Texts per step (SimCSE's negatives are the rest of the batch).
        lr: Adam learning rate.
        seed: Seed of everything random here.
        device: Where to train (default: the encoder's device); the encoder is moved there.
        progress: Show a tqdm bar; ``None`` only when stderr is a terminal.
        dropout: The dropout used while pretraining (SimCSE needs it > 0); the encoder's own is
            restored afterwards.
        temperature: SimCSE's softmax temperature.
        mask_prob: Share of non-pad tokens hidden per batch for ``"mlm"``.
        mask_id: The id that hides a token for ``"mlm"``; default the pad id (the hidden token
            leaves the context, as the encoder masks pads).

    Returns:
        The loss of every step.

    Raises:
        TypeError: for an encoder that is not a TextCNN or TextTransformer.
        ValueError: for an unknown ``method``, ids that are not ``(N, L)`` integers, fewer than
            two texts, or SimCSE without dropout.
    """
    if not isinstance(encoder, (TextCNN, TextTransformer, TextBag)):
        raise TypeError(f"pretrain_text_encoder pretrains a from-scratch TextCNN, TextTransformer or "
                        f"TextBag, got {type(encoder).__name__} (a pretrained Hugging Face encoder is "
                        "already pretrained)")
    if method not in ("simcse", "mlm"):
        raise ValueError(f"unknown method {method!r}; choose 'simcse' or 'mlm'")
    if method == "mlm" and isinstance(encoder, TextBag):
        raise ValueError("masked-token pretraining predicts each token from its context; a TextBag has "
                         "no per-token features: use method='simcse' (word-dropout views)")
    if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32) or len(ids) < 2:
        raise ValueError(f"ids must be (N, L) integer token ids with N >= 2, got {tuple(ids.shape)} {ids.dtype}")
    if method == "simcse" and dropout <= 0:
        raise ValueError("SimCSE makes its two views by dropout: give dropout > 0 (e.g. 0.1)")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    encoder.to(device)
    batch_size = min(batch_size, len(ids))
    pad_id = encoder.pad_id
    mask_id = pad_id if mask_id is None else int(mask_id)
    g = make_generator(seed, "text-pretrain")
    params = [p for n, p in encoder.named_parameters() if not n.startswith("head.") and p.requires_grad]
    decoder = None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, "text-pretrain-dropout"))
        if method == "mlm":
            decoder = nn.Linear(encoder.out_dim, encoder.vocab_size).to(device)  # discarded after
            params += list(decoder.parameters())
        opt = torch.optim.Adam(params, lr=lr)
        own_dropout, was_training = encoder.dropout, encoder.training
        encoder.dropout = float(dropout)
        encoder.train()
        from tqdm.auto import tqdm

        show = sys.stderr.isatty() if progress is None else progress
        losses: list[float] = []
        try:
            with tqdm(total=steps, desc=f"pretrain {method}", unit="step", disable=not show,
                      dynamic_ncols=True) as bar:
                while len(losses) < steps:
                    for idx in torch.randperm(len(ids), generator=g).split(batch_size):
                        if len(idx) < batch_size or len(losses) >= steps:
                            continue
                        x = ids[idx].to(device)
                        if method == "simcse":
                            loss = simcse_loss(encoder.features(x), encoder.features(x), temperature)
                        else:
                            masked, chosen = mask_tokens(x, pad_id, mask_id, mask_prob, g)
                            logits = decoder(encoder.token_features(masked)[chosen])
                            loss = F.cross_entropy(logits, x[chosen])
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        losses.append(float(loss.detach()))
                        bar.update(1)
                        bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        finally:
            encoder.dropout = own_dropout
            encoder.train(was_training)
    return losses


def save_text_encoder(encoder: nn.Module, path: str | Path) -> Path:
    """Write ``encoder.state_dict()`` to a ``.safetensors`` file (atomically) for ``model.weights``.

    Args:
        encoder: The pretrained encoder, built with the options of the run that will load it
            (including its ``out_features``: ``load_backbone`` needs every tensor).
        path: The file to write; the suffix ``.safetensors`` is required.

    Returns:
        ``path``.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: give a .safetensors path (model.weights reads that or .pt/.pth)")
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    data = save(tensors)
    atomic_write(path, lambda f: f.write(data))
    return path
