"""Pictures of episodes (Pillow only), to check by eye what a sampler produces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from metalearn.types import Episode


def episode_grid(episode: Episode, max_query: int = 5, scale: int = 2, gap: int = 4) -> Image.Image:
    """One row per class: its support images, a gap, then up to ``max_query`` of its query images.

    Args:
        episode: An image classification episode, inputs ``(n, C, H, W)`` with values in [0, 1]
            (C = 1 or 3).
        max_query: Query images shown per class.
        scale: Integer upscaling of each image.

    Raises:
        ValueError: the episode is not image classification.
    """
    if not episode.is_classification or episode.support_x.ndim != 4:
        raise ValueError("episode_grid draws image classification episodes, inputs (n, C, H, W)")
    n_way = episode.n_way
    c, h, w = episode.support_x.shape[1:]
    k = episode.support_x.shape[0] // n_way
    q = min(max_query, episode.query_x.shape[0] // n_way)
    cell_h, cell_w = h * scale + gap, w * scale + gap
    canvas = Image.new("RGB", ((k + q) * cell_w + 3 * gap, n_way * cell_h + gap), "white")
    draw = ImageDraw.Draw(canvas)

    def paste(x, row, col, offset):
        arr = (x.clamp(0, 1).numpy() * 255).astype(np.uint8)
        arr = arr[0] if c == 1 else arr.transpose(1, 2, 0)
        img = Image.fromarray(arr).convert("RGB").resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(img, (gap + col * cell_w + offset, gap + row * cell_h))

    for cls in range(n_way):
        for j, x in enumerate(episode.support_x[episode.support_y == cls][:k]):
            paste(x, cls, j, 0)
        for j, x in enumerate(episode.query_x[episode.query_y == cls][:q]):
            paste(x, cls, k + j, 3 * gap)
    x_line = gap + k * cell_w + gap
    draw.line([(x_line, 0), (x_line, canvas.height)], fill=(200, 30, 30), width=2)
    return canvas


def save_episode_grid(episode: Episode, path: str | os.PathLike, **kwargs) -> Path:
    """Save :func:`episode_grid` as a PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    episode_grid(episode, **kwargs).save(path)
    return path
