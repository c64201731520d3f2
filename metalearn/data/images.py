"""Decoding images with Pillow and NumPy (no torchvision), once, into a uint8 array."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(ext for ext, fmt in Image.registered_extensions().items()
                             if fmt in Image.OPEN)


class CorruptImageError(ValueError):
    """An image file cannot be decoded."""


def image_size_tuple(size: int | Sequence[int]) -> tuple[int, int]:
    """``28`` -> ``(28, 28)``; ``(h, w)`` unchanged. Raises ValueError for non-positive sizes."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {size!r}")
    return int(h), int(w)


def decode_image(raw: bytes, size: tuple[int, int], channels: int, invert: bool = False) -> np.ndarray:
    """Decode, convert and resize one image.

    Args:
        raw: The encoded file's bytes (any format Pillow reads).
        size: ``(height, width)`` after a Lanczos resize.
        channels: 1 (grey, mode ``L``) or 3 (``RGB``); other modes are converted.
        invert: Return ``255 - pixels`` (Omniglot: black strokes on white become strokes = 255).

    Returns:
        uint8 array of shape ``(channels, height, width)``.

    Raises:
        CorruptImageError: the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(str(e)) from e
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return 255 - arr if invert else arr


@dataclass
class DecodeReport:
    """What :func:`decode_all` did: how many images were decoded and which were skipped as corrupt."""

    decoded: int
    skipped: list[str]


def decode_all(names: Sequence[str], read: Callable[[str], bytes], size: tuple[int, int],
               channels: int, *, invert: bool = False, skip_corrupt: bool = False,
               progress: str | None = None) -> tuple[np.ndarray, np.ndarray, DecodeReport]:
    """Decode every named image into one ``(N, channels, H, W)`` uint8 array.

    Args:
        names: Identifiers passed to ``read`` (file paths or archive member names).
        read: Returns the encoded bytes of a name.
        skip_corrupt: Skip unreadable images (reported in the returned DecodeReport and a warning)
            instead of raising.
        progress: A label; when given, progress is printed every 5,000 images.

    Returns:
        ``(array, kept, report)``: the decoded images, the positions in ``names`` that were kept,
        and the report.

    Raises:
        CorruptImageError: an image cannot be decoded and ``skip_corrupt`` is False; the message
            names the file and the option.
    """
    out = np.empty((len(names), channels, *size), dtype=np.uint8)
    kept, skipped = [], []
    for i, name in enumerate(names):
        try:
            out[len(kept)] = decode_image(read(name), size, channels, invert)
        except CorruptImageError as e:
            if not skip_corrupt:
                raise CorruptImageError(
                    f"cannot decode image {name}: {e}. Remove or replace the file, or pass "
                    "skip_corrupt=True to skip unreadable images."
                ) from e
            skipped.append(name)
            continue
        kept.append(i)
        if progress and (i + 1) % 5000 == 0:
            print(f"{progress}: decoded {i + 1}/{len(names)} images", flush=True)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable images, e.g. {skipped[:3]}", stacklevel=2)
    return out[: len(kept)], np.asarray(kept, dtype=np.int64), DecodeReport(len(kept), skipped)
