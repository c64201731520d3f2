"""A seeded, synthetic two-level image tree: procedural texture families, for multi-source tests.

This is **synthetic data**, not a real image dataset. It exists because this machine holds
one real image dataset (Omniglot); mini-ImageNet's images are not shipped (only its class
splits), and none of the Meta-Dataset sources is here. The multi-source figure of issue 22
(Omniglot plus an image folder, trained together) and the folder-tree tests need a second
image source that is learnable, not trivial, and unlike handwritten characters.

Layout: ``root/<group>/<class>/<i>.png``, the ``folder-tree`` layout
(:data:`metalearn.data.registry.DATASETS` ``"folder-tree"``; whole groups are split into
meta-train/val/test by ``data.split_fractions``, and one group is one Meta-Dataset episode's
node). Each group is a *family* of procedural images, chosen in turn from :data:`FAMILIES`:

* ``gratings``: the sum of two sinusoidal gratings (orientation, frequency and phase of each);
* ``blobs``: three to five signed Gaussian blobs (positions, widths, signs);
* ``rings``: a polar pattern ``cos(f r + phi) cos(k theta + psi)`` about an off-centre point;
* ``clouds``: a low-frequency random Fourier texture (six random components).

Each group also draws its own range of the family's parameters (e.g. the gratings'
frequencies), so groups of one family still differ. Each class is a random *prototype* of its
group's family; each image renders the prototype under a random affine jitter of its
coordinates (rotation up to 20 degrees, scale 0.85-1.15, shift up to 15% of the side), a random
contrast and brightness, and Gaussian pixel noise. With ``channels=3`` each class also has a
random colour and every image is that colour times the pattern.

Everything comes from ``numpy.random.default_rng([seed, group, class, image])`` streams, so the
files are byte-identical for a seed (Pillow's PNG encoder is deterministic), and a prototype
does not depend on how many images or classes are written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

FAMILIES = ("gratings", "blobs", "rings", "clouds")
"""The procedural families; group ``g`` is family ``FAMILIES[g % 4]``."""


def _group_ranges(family: str, rng: np.random.Generator) -> dict:
    """The parameter range a group of ``family`` draws its class prototypes from."""
    if family == "gratings":
        low = rng.uniform(1.0, 3.0)
        return {"freq": (low, low + rng.uniform(1.0, 3.0))}
    if family == "blobs":
        low = rng.uniform(0.12, 0.25)
        return {"width": (low, low + rng.uniform(0.05, 0.2)), "count": int(rng.integers(3, 6))}
    if family == "rings":
        low = rng.uniform(3.0, 6.0)
        return {"freq": (low, low + rng.uniform(2.0, 5.0)), "k": (0, int(rng.integers(2, 6)))}
    low = rng.uniform(0.8, 1.5)
    return {"freq": (low, low + rng.uniform(0.8, 2.0))}


def _prototype(family: str, ranges: dict, rng: np.random.Generator) -> dict:
    """One class: concrete parameters of its group's family within the group's ranges."""
    if family == "gratings":
        return {"theta": rng.uniform(0, np.pi, 2), "freq": rng.uniform(*ranges["freq"], 2),
                "phase": rng.uniform(0, 2 * np.pi, 2), "weight": rng.uniform(0.4, 1.0, 2)}
    if family == "blobs":
        n = ranges["count"]
        return {"centre": rng.uniform(-0.6, 0.6, (n, 2)), "width": rng.uniform(*ranges["width"], n),
                "sign": rng.choice([-1.0, 1.0], n)}
    if family == "rings":
        return {"centre": rng.uniform(-0.3, 0.3, 2), "freq": rng.uniform(*ranges["freq"]),
                "k": int(rng.integers(ranges["k"][0], ranges["k"][1] + 1)), "phase": rng.uniform(0, 2 * np.pi, 2)}
    return {"wave": rng.normal(0, 1, (6, 2)) * rng.uniform(*ranges["freq"]), "phase": rng.uniform(0, 2 * np.pi, 6),
            "weight": rng.normal(0, 1, 6)}


def _render(family: str, p: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The pattern of prototype ``p`` at coordinates ``(u, v)`` (each ``(H, W)``), about ``[-1, 1]``."""
    if family == "gratings":
        out = sum(w * np.cos(np.pi * f * (u * np.cos(t) + v * np.sin(t)) + ph)
                  for t, f, ph, w in zip(p["theta"], p["freq"], p["phase"], p["weight"]))
    elif family == "blobs":
        out = sum(s * np.exp(-((u - c[0]) ** 2 + (v - c[1]) ** 2) / (2 * w**2))
                  for c, w, s in zip(p["centre"], p["width"], p["sign"]))
    elif family == "rings":
        du, dv = u - p["centre"][0], v - p["centre"][1]
        r, angle = np.hypot(du, dv), np.arctan2(dv, du)
        out = np.cos(p["freq"] * np.pi * r + p["phase"][0]) * np.cos(p["k"] * angle + p["phase"][1])
    else:
        out = sum(w * np.cos(np.pi * (k[0] * u + k[1] * v) + ph) for k, ph, w in zip(p["wave"], p["phase"], p["weight"]))
    out = np.asarray(out, dtype=np.float64)
    return out / max(float(np.abs(out).max()), 1e-6)


def _jittered_grid(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in ``[-1, 1]`` under a random rotation, scale and shift."""
    axis = (np.arange(size) + 0.5) / size * 2 - 1
    v, u = np.meshgrid(axis, axis, indexing="ij")
    angle, scale = np.deg2rad(rng.uniform(-20, 20)), rng.uniform(0.85, 1.15)
    shift = rng.uniform(-0.3, 0.3, 2)
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    return c * u - s * v + shift[0], s * u + c * v + shift[1]


def synthetic_image(family: str, prototype: dict, size: int, rng: np.random.Generator,
                    colour: np.ndarray | None = None) -> np.ndarray:
    """One image of a prototype: affine jitter, contrast, brightness and pixel noise.

    Args:
        family: One of :data:`FAMILIES`.
        prototype: The class's parameters (as drawn for ``family``).
        size: Side in pixels.
        rng: The image's own random stream.
        colour: ``(3,)`` in ``[0, 1]`` for an RGB image, ``None`` for grey.

    Returns:
        ``uint8`` ``(size, size)`` (grey) or ``(size, size, 3)`` (RGB).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> p = _prototype("rings", _group_ranges("rings", rng), rng)
        >>> synthetic_image("rings", p, 16, rng).shape
        (16, 16)
    """
    u, v = _jittered_grid(size, rng)
    pattern = _render(family, prototype, u, v)
    contrast, brightness = rng.uniform(0.25, 0.5), rng.uniform(0.4, 0.6)
    pixels = brightness + contrast * pattern + rng.normal(0, 0.08, pattern.shape)
    if colour is not None:
        pixels = pixels[..., None] * (0.4 + 0.6 * colour)
    return (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)


def write_synthetic_image_tree(root: str | os.PathLike, n_groups: int = 8, classes_per_group: int = 12,
                               images_per_class: int = 30, size: int = 28, channels: int = 1,
                               seed: int = 0) -> Path:
    """Write the seeded synthetic tree ``root/<group>/<class>/<i>.png`` (see the module docstring).

    Group folders are ``g00-gratings``, ``g01-blobs``, ... (the family in the name), classes
    ``c00``, ``c01``, ..., images ``000.png``, ... The files are byte-identical for a seed.

    Args:
        root: Folder to write into (created; existing files of the same names are replaced).
        n_groups: Groups (families in turn); ``folder-tree`` needs at least 3 to split them.
        classes_per_group: Classes per group (a Meta-Dataset episode needs at least 5).
        images_per_class: Images per class (at least 2: one support, one query).
        size: Image side in pixels.
        channels: 1 (grey ``L`` PNGs) or 3 (``RGB``, a random colour per class).
        seed: The seed of every stream.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: a count, size or channel number out of range (the message names it).

    Examples:
        >>> import tempfile
        >>> root = write_synthetic_image_tree(tempfile.mkdtemp(), n_groups=3, classes_per_group=5,
        ...                                   images_per_class=2, size=8)
        >>> sorted(p.name for p in root.iterdir())
        ['g00-gratings', 'g01-blobs', 'g02-rings']
        >>> len(list(root.glob("*/*/*.png")))
        30
    """
    for name, value, low in (("n_groups", n_groups, 1), ("classes_per_group", classes_per_group, 1),
                             ("images_per_class", images_per_class, 1), ("size", size, 4)):
        if int(value) != value or value < low:
            raise ValueError(f"write_synthetic_image_tree: {name} must be an integer >= {low}, got {value!r}")
    if channels not in (1, 3):
        raise ValueError(f"write_synthetic_image_tree: channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    root = Path(root)
    for g in range(n_groups):
        family = FAMILIES[g % len(FAMILIES)]
        ranges = _group_ranges(family, np.random.default_rng([seed, g]))
        for c in range(classes_per_group):
            rng = np.random.default_rng([seed, g, c])
            prototype = _prototype(family, ranges, rng)
            colour = rng.uniform(0, 1, 3) if channels == 3 else None
            folder = root / f"g{g:02d}-{family}" / f"c{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(images_per_class):
                pixels = synthetic_image(family, prototype, size, np.random.default_rng([seed, g, c, i]), colour)
                Image.fromarray(pixels, "L" if channels == 1 else "RGB").save(folder / f"{i:03d}.png")
    return root
