"""Shared fixtures: where the real data is (skipping visibly when it is not), tiny synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Decoded caches of the real datasets are shared by the whole test session (and reused across
# runs): set METALEARN_CACHE to choose another place.
os.environ.setdefault("METALEARN_CACHE", str(REPO / ".cache"))


def shared_data_root() -> Path:
    """The folder with the real datasets: $METALEARN_TEST_DATA, else ../shared/data beside the repo."""
    return Path(os.environ.get("METALEARN_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """Data root holding omniglot/images_{background,evaluation}.zip; skips (with the reason) if absent."""
    root = shared_data_root()
    missing = [p for p in ("images_background.zip", "images_evaluation.zip")
               if not (root / "omniglot" / p).is_file()]
    if missing:
        pytest.skip(f"real Omniglot not found: {root}/omniglot/ lacks {missing} "
                    "(set METALEARN_TEST_DATA to the folder that holds omniglot/)")
    return root


@pytest.fixture
def image_folder(tmp_path: Path):
    """Factory for a tiny ``root/<class>/<image>.png`` folder: ``image_folder({"a": 3, "b": 4})``.

    Class ``i`` images are flat grey at level ``40 * (i + 1)`` plus a little noise, so classes are
    easy to tell apart.
    """

    def make(counts: dict[str, int], size: int = 12, name: str = "images") -> Path:
        root = tmp_path / name
        rng = np.random.default_rng(0)
        for i, (cls, n) in enumerate(counts.items()):
            (root / cls).mkdir(parents=True, exist_ok=True)
            for j in range(n):
                pixels = np.clip(40 * (i + 1) + rng.integers(-5, 6, (size, size)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8), "L").save(root / cls / f"{j:03d}.png")
        return root

    return make


@pytest.fixture
def blobs():
    """Factory for Gaussian-blob classification arrays ``(X, y)``: ``blobs(n_classes, per_class, dim)``."""

    def make(n_classes: int = 6, per_class: int = 10, dim: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(n_classes, dim, generator=g) * 5
        x = centers.repeat_interleave(per_class, 0) + torch.randn(n_classes * per_class, dim, generator=g)
        return x, torch.arange(n_classes).repeat_interleave(per_class)

    return make
