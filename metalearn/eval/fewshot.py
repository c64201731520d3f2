"""The end user's job: adapt a meta-trained model to new classes from a few labelled examples.

:class:`FewShotClassifier` wraps any :class:`~metalearn.types.Algorithm` in a small
scikit-learn-like object: ``fit(support_x, support_y)`` adapts (the meta-parameters are never
changed), ``predict`` and ``predict_proba`` answer for new inputs. :func:`load_images` reads
``DIR/<class>/<image>`` (or a flat folder of images) the way the training data was decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalearn.data.images import IMAGE_EXTENSIONS, CorruptImageError, decode_image


class AdaptInputError(ValueError):
    """The support or query data cannot be used; the message names the fix."""


class FewShotClassifier:
    """Adapt a meta-trained algorithm to the classes of a support set, then classify.

    Args:
        algorithm: A trained algorithm (``nn.Module`` with ``adapt``), e.g. from
            :func:`metalearn.train.load_run`; :func:`metalearn.train.load_classifier` builds
            the classifier of a run directory in one call.
        n_way: The number of classes the model's output head has, when it is fixed (MAML-style
            backbones with ``out_features``); ``None`` when any number of classes works
            (metric-based methods).
        device: Where to compute; default the algorithm's device.

    Attributes:
        classes_: The sorted distinct support labels after :meth:`fit`.

    Examples:
        >>> algo, cfg, step = load_run("runs/protonet-omniglot-5w1s")  # doctest: +SKIP
        >>> clf = FewShotClassifier(algo)  # doctest: +SKIP
        >>> clf.fit(support_images, ["a", "a", "b", "b"]).predict(query_images)  # doctest: +SKIP
        array(['a', 'b', ...], dtype='<U1')
    """

    def __init__(self, algorithm, n_way: int | None = None, device: torch.device | str | None = None):
        self.algorithm = algorithm
        self.n_way = n_way
        if device is None:
            p = next(iter(algorithm.parameters()), None)
            device = p.device if p is not None else "cpu"
        self.device = torch.device(device)
        self.classes_: np.ndarray | None = None
        self._predictor = None

    def fit(self, support_x: Tensor | np.ndarray, support_y: Sequence) -> FewShotClassifier:
        """Adapt to the support set.

        Args:
            support_x: ``(n_support, *x_shape)`` inputs, in the training data's format.
            support_y: ``n_support`` labels of any sortable type (strings, ints).

        Returns:
            ``self``.

        Raises:
            AdaptInputError: fewer than two classes, a class count the model cannot take, or
                mismatched lengths.
        """
        x = torch.as_tensor(np.asarray(support_x) if not isinstance(support_x, Tensor) else support_x,
                            dtype=torch.float32)
        labels = np.asarray(list(support_y))
        if len(labels) != x.shape[0]:
            raise AdaptInputError(f"{x.shape[0]} support inputs but {len(labels)} labels")
        classes = np.unique(labels)
        if len(classes) < 2:
            raise AdaptInputError(f"the support set has a single class ({classes.tolist()}): give "
                                  "labelled examples of at least two classes")
        if self.n_way is not None and len(classes) != self.n_way:
            raise AdaptInputError(f"this model was meta-trained for {self.n_way}-way tasks (its head "
                                  f"has {self.n_way} outputs) but the support set has {len(classes)} "
                                  f"classes: give exactly {self.n_way}, or use a metric-based run "
                                  "(e.g. protonet) that takes any number of classes")
        y = torch.as_tensor(np.searchsorted(classes, labels), dtype=torch.int64)
        order = torch.argsort(y, stable=True)  # episodes are laid out class by class
        x, y = x[order].to(self.device), y[order].to(self.device)
        self.algorithm.eval()
        self._predictor = self.algorithm.adapt(x, y)
        self.classes_ = classes
        return self

    def _logits(self, x) -> Tensor:
        if self._predictor is None:
            raise AdaptInputError("call fit(support_x, support_y) before predicting")
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32)
        if x.shape[0] == 0:
            raise AdaptInputError("no query inputs to predict")
        with torch.no_grad():
            return self._predictor(x.to(self.device)).float().cpu()

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in the order of ``classes_``.

        Scores that are already probabilities (rows in ``[0, 1]`` summing to 1, e.g. Matching
        Networks' attention) are returned as they are; others are passed through a softmax.
        """
        out = self._logits(x)
        rows = out.sum(1)
        if out.min() >= 0 and torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
            return out.numpy()
        return torch.softmax(out, dim=1).numpy()

    def predict(self, x) -> np.ndarray:
        """Predicted labels (from ``classes_``) for inputs ``(n, *x_shape)``."""
        return self.classes_[self._logits(x).argmax(1).numpy()]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def load_images(folder: str | os.PathLike, image_size: int, channels: int, invert: bool = False,
                *, labelled: bool = True) -> tuple[Tensor, list[str] | None, list[Path]]:
    """Read images as the training data was decoded (Lanczos resize, ``[0, 1]`` floats).

    Args:
        folder: ``DIR/<class>/<image>``; with ``labelled=False`` also a flat ``DIR/<image>``.
        image_size: Side after resizing.
        channels: 1 (grey) or 3 (RGB).
        invert: ``1 - x`` (Omniglot: strokes are 1).
        labelled: Require class sub-folders.

    Returns:
        ``(x, labels, files)``: ``x`` of shape ``(n, channels, image_size, image_size)``; the class
        folder name of each image (``None`` for a flat folder); the files in the same order.

    Raises:
        AdaptInputError: a missing or empty folder, or an unreadable image (named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AdaptInputError(f"{folder} is not a folder: expected {folder}/<class>/<images>")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for d in class_dirs:
        found = _image_files(d)
        if labelled and not found:
            raise AdaptInputError(f"class folder {d} holds no images: add some or remove it")
        files += found
        labels += [d.name] * len(found)
    flat = _image_files(folder)
    if labelled and not class_dirs:
        raise AdaptInputError(f"{folder} has no class folders: put each class's images in "
                              f"{folder}/<class name>/")
    if flat and class_dirs:
        raise AdaptInputError(f"{folder} mixes images ({flat[0].name}, ...) and class folders: use one layout")
    if not class_dirs:
        files = flat
    if not files:
        raise AdaptInputError(f"{folder} holds no images (png, jpg, ...)")
    arrays = []
    for f in files:
        try:
            arrays.append(decode_image(f.read_bytes(), (image_size, image_size), channels, invert))
        except CorruptImageError as e:
            raise AdaptInputError(f"cannot read image {f} ({e}): fix or remove the file") from None
    x = torch.from_numpy(np.stack(arrays)).float().div_(255.0)
    return x, (labels if class_dirs else None), files
