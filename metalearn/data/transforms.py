"""Per-episode preprocessing, applied by samplers to every batch of episodes.

A transform maps an :class:`EpisodeBatch` to an :class:`EpisodeBatch`. Statistics that depend on
data are taken from the support set only and applied to the query set, so no query information
leaks into adaptation (honest evaluation).

:class:`Augment` is random: it also takes the sampler's generator, and a sampler applies it to
meta-training episodes only (``EpisodeSampler(augment=...)``; :class:`FixedEpisodes` has no
such argument), before its ``transform``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearn.types import EpisodeBatch


class Normalize:
    """``(x - mean) / std`` with fixed per-channel statistics (e.g. those of the meta-train set).

    Args:
        mean, std: One value per channel; the channel axis is the first axis of an item
            (``(C, H, W)`` images or ``(F,)`` features).

    Examples:
        >>> from metalearn.types import Episode
        >>> ep = Episode(torch.ones(2, 1, 2, 2), torch.tensor([0, 1]), torch.ones(2, 1, 2, 2), torch.tensor([0, 1]))
        >>> out = Normalize([0.5], [0.25])(EpisodeBatch.stack([ep]))
        >>> out.support_x.unique().tolist()
        [2.0]
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise ValueError("mean and std need one value per channel each")
        if not (self.std > 0).all():
            raise ValueError(f"std must be positive, got {self.std.tolist()}")

    def __call__(self, batch: EpisodeBatch) -> EpisodeBatch:
        item_rank = batch.support_x.ndim - 2
        shape = (-1,) + (1,) * (item_rank - 1)
        mean, std = self.mean.view(shape), self.std.view(shape)
        return dataclasses.replace(batch, support_x=(batch.support_x - mean) / std,
                                   query_x=(batch.query_x - mean) / std)


class StandardizeBySupport:
    """Standardise each task with its own support statistics: ``(x - m) / s`` for support and query.

    Args:
        per_feature: Statistics per feature (tabular data) instead of one mean and std per task.
        eps: Added to the std to avoid division by zero.
    """

    def __init__(self, per_feature: bool = False, eps: float = 1e-6):
        self.per_feature, self.eps = per_feature, eps

    def __call__(self, batch: EpisodeBatch) -> EpisodeBatch:
        s = batch.support_x
        dims = (1,) if self.per_feature else tuple(range(1, s.ndim))
        mean = s.mean(dim=dims, keepdim=True)
        std = s.std(dim=dims, keepdim=True, unbiased=False) + self.eps
        return dataclasses.replace(batch, support_x=(s - mean) / std,
                                   query_x=(batch.query_x - mean) / std)


AUGMENTATIONS = ("crop", "flip", "rotate")
"""The operations of :class:`Augment`, for ``data.augment``."""


class Augment:
    """Random image augmentation of meta-training episodes, drawn from the sampler's generator.

    Every support and query image gets its own draw of each operation, in the order given:

    * ``crop``: zero-pad by ``padding`` pixels on each side, then crop the original size at a
      random offset (a random shift by up to ``padding`` pixels);
    * ``flip``: mirror left-right with probability 1/2;
    * ``rotate``: rotate by an angle uniform in ``[-degrees, degrees]`` about the centre
      (bilinear, zeros outside the image).

    The random numbers come from the generator the sampler passes in (after it has drawn the
    episode's indices), so a run is reproducible, and the sampler's ``state_dict`` (its
    generator state) resumes the augmentation stream too.

    Args:
        ops: Names from :data:`AUGMENTATIONS`, each at most once.
        padding: Pixels of zero padding of ``crop``.
        degrees: Largest rotation of ``rotate``.

    Raises:
        ValueError: an unknown or repeated operation, a negative padding, degrees outside
            ``[0, 180]``; on call, items that are not float images ``(C, H, W)``.

    Examples:
        >>> from metalearn.types import Episode
        >>> ep = Episode(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), torch.rand(4, 1, 8, 8), torch.tensor([0, 0, 1, 1]))
        >>> out = Augment(["crop", "flip"])(EpisodeBatch.stack([ep]), torch.Generator().manual_seed(0))
        >>> tuple(out.support_x.shape), tuple(out.query_x.shape)
        ((1, 2, 1, 8, 8), (1, 4, 1, 8, 8))
    """

    def __init__(self, ops: Sequence[str], padding: int = 4, degrees: float = 10.0):
        unknown = [op for op in ops if op not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}")
        if len(set(ops)) != len(ops):
            raise ValueError(f"each augmentation at most once, got {list(ops)}")
        if padding < 0:
            raise ValueError(f"crop padding must be 0 or more pixels, got {padding}")
        if not 0 <= degrees <= 180:
            raise ValueError(f"rotation degrees must be in [0, 180], got {degrees}")
        self.ops, self.padding, self.degrees = list(ops), int(padding), float(degrees)

    def __call__(self, batch: EpisodeBatch, generator: torch.Generator) -> EpisodeBatch:
        return dataclasses.replace(batch, support_x=self.images(batch.support_x, generator),
                                   query_x=self.images(batch.query_x, generator))

    def images(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment images of shape ``(..., C, H, W)``, each with its own draw."""
        if x.ndim < 3 or not torch.is_floating_point(x):
            raise ValueError(f"augmentation needs float images (..., C, H, W), got {x.dtype} "
                             f"items of shape {tuple(x.shape)}")
        flat = x.reshape(-1, *x.shape[-3:])
        ops = {"crop": self._crop, "flip": self._flip, "rotate": self._rotate}
        for op in self.ops:
            flat = ops[op](flat, generator)
        return flat.reshape(x.shape)

    def _crop(self, x: Tensor, g: torch.Generator) -> Tensor:
        p = self.padding
        if p == 0:
            return x
        n, _, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=g)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
        out = padded[torch.arange(n)[:, None, None], :, rows, cols]  # (n, h, w, C)
        return out.permute(0, 3, 1, 2).contiguous()

    def _flip(self, x: Tensor, g: torch.Generator) -> Tensor:
        mirror = torch.rand(x.shape[0], generator=g) < 0.5
        return torch.where(mirror[:, None, None, None], x.flip(-1), x)

    def _rotate(self, x: Tensor, g: torch.Generator) -> Tensor:
        angle = (torch.rand(x.shape[0], generator=g) * 2 - 1) * math.radians(self.degrees)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def __repr__(self) -> str:
        return f"Augment({self.ops}, padding={self.padding}, degrees={self.degrees})"
