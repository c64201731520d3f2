"""Seeding helpers: every random draw in metalearn comes from an explicit ``torch.Generator``."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *streams: int | str) -> int:
    """Derive an independent 63-bit seed from ``seed`` and stream ids (rank, epoch, a name...).

    Different stream ids give unrelated seeds, so rank 1 never replays rank 0's tasks.

    Examples:
        >>> derive_seed(0, 1) == derive_seed(0, 1), derive_seed(0, 1) == derive_seed(0, 2)
        (True, False)
    """
    text = ":".join(str(s) for s in (seed, *streams)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, *streams: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``seed`` and optional stream ids (rank, epoch).

    With no stream ids the generator is seeded with ``seed`` itself.
    """
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *streams) if streams else int(seed))
    return g
