"""The end user's job: adapt a meta-trained model to new classes from a few labelled examples.

:class:`FewShotClassifier` wraps any :class:`~metalearn.types.Algorithm` in a small
scikit-learn-like object: ``fit(support_x, support_y)`` adapts (the meta-parameters are never
changed), ``predict`` and ``predict_proba`` answer for new inputs: tensors, arrays, image files
or PIL images. :func:`load_images` reads ``DIR/<class>/<image>`` (or a flat folder of images)
the way the training data was decoded.

A deployed classifier's answer for an image must not depend on what else is classified with
it. With batch-statistics normalisation (``norm="transductive"``) it would: the query batch
supplies the statistics. So by default (``query_independent=True``) each query is classified on
its own, with the support set as the rest of its normalisation batch (the support plus that
one query; with ``norm="task"``, the support alone). ``query_independent=False`` is the
transductive protocol of the papers' benchmarks, which :func:`metalearn.eval.evaluate` keeps.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from metalearn.algorithms.functional import AdaptedPredictor
from metalearn.data.images import IMAGE_EXTENSIONS, CorruptImageError, decode_image

ImageFormat = tuple[int, int, bool]
"""``(image_size, channels, invert)``: how a run's images are decoded (:func:`load_images`)."""


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
        query_independent: Classify each query on its own, the support set being the rest of
            its normalisation batch, so that a prediction never depends on the other queries
            (exactly: the same image gets the same probabilities alone or among others).
            ``False``: all the queries of one call form the batch (transductive, as in the
            benchmarks), one forward pass for them all.
        image_format: ``(image_size, channels, invert)`` to decode image files and PIL images
            given to :meth:`fit` and :meth:`predict` as the run's data was decoded;
            :func:`metalearn.train.load_classifier` sets it from the run. ``None``: tensors
            and arrays only.
        tokenizer: A text run's :class:`~metalearn.data.text.TextTokenizer` (anything with
            ``encode(texts) -> LongTensor (n, L)``): strings given to :meth:`fit` and
            :meth:`predict` are then sentences, encoded with it (:func:`load_classifier` sets
            it from the run's ``tokenizer/`` folder).

    Attributes:
        classes_: The sorted distinct support labels after :meth:`fit`.
        threshold_: The rejection threshold on the score (:meth:`calibrate_rejection`), or
            ``None``: :meth:`predict` then always answers one of ``classes_``.

    Examples:
        >>> clf = load_classifier("runs/proto")  # doctest: +SKIP
        >>> clf.fit(["a1.png", "a2.png", "b1.png", "b2.png"], ["a", "a", "b", "b"])  # doctest: +SKIP
        >>> clf.predict(["unknown.png"])  # doctest: +SKIP
        array(['b'], dtype='<U1')
    """

    def __init__(self, algorithm, n_way: int | None = None, device: torch.device | str | None = None,
                 *, query_independent: bool = True, image_format: ImageFormat | None = None,
                 tokenizer=None):
        self.algorithm = algorithm
        self.n_way = n_way
        self.query_independent = query_independent
        self.image_format = image_format
        self.tokenizer = tokenizer
        self.threshold_: float | None = None
        self.out_of_scope_label = "out_of_scope"
        if device is None:
            p = next(iter(algorithm.parameters()), None)
            device = p.device if p is not None else "cpu"
        self.device = torch.device(device)
        self.classes_: np.ndarray | None = None
        self._predictor = None

    def _inputs(self, x) -> Tensor:
        """``x`` as a tensor ``(n, *x_shape)``: a tensor or array as it is (float32, or int64
        token ids); sentences encoded by :attr:`tokenizer` when there is one; otherwise image
        files (``str`` / ``Path``) and PIL images decoded by :attr:`image_format`."""
        if isinstance(x, (str, os.PathLike, Image.Image)):
            x = [x]
        if self.tokenizer is not None and isinstance(x, (list, tuple)) and any(isinstance(v, str) for v in x):
            return self._encode(x)
        if isinstance(x, (list, tuple)) and any(isinstance(v, (str, os.PathLike, Image.Image)) for v in x):
            if self.image_format is None:
                raise AdaptInputError("image files or PIL images need the run's image format: build "
                                      "the classifier with metalearn.train.load_classifier(run_dir), "
                                      "or pass image_format=(image_size, channels, invert)")
            size, channels, invert = self.image_format
            x = torch.from_numpy(np.stack([_decode(v, size, channels, invert) for v in x])).float().div_(255.0)
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        if self.tokenizer is not None and not torch.is_floating_point(x):
            return x.to(torch.int64)  # token ids as they are
        return x.to(torch.float32)

    def _encode(self, texts: Sequence) -> Tensor:
        """Sentences as token ids ``(n, L)``; an empty sentence is refused (it has no tokens)."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise AdaptInputError(f"text {i} is a {type(t).__name__}, not a string: give "
                                      "sentences as strings")
            if not t.strip():
                raise AdaptInputError(f"text {i} is empty or only whitespace: remove it or write "
                                      "the sentence")
        return self.tokenizer.encode(list(texts))

    def fit(self, support_x, support_y: Sequence) -> FewShotClassifier:
        """Adapt to the support set.

        Args:
            support_x: ``(n_support, *x_shape)`` inputs in the training data's format (a tensor
                or array, e.g. from :func:`load_images`), or a list of image files or PIL
                images (decoded by ``image_format``).
            support_y: ``n_support`` labels of any sortable type (strings, ints).

        Returns:
            ``self``.

        Raises:
            AdaptInputError: fewer than two classes, a class count the model cannot take, or
                mismatched lengths.
        """
        x = self._inputs(support_x)
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
        self._predictor = self._adapt(x, y)
        self.classes_ = classes
        self.threshold_ = None
        self._support = (x, y)
        return self

    def _adapt(self, x: Tensor, y: Tensor):
        predictor = self.algorithm.adapt(x, y)
        if self.query_independent and isinstance(predictor, AdaptedPredictor) and not predictor.task_norm:
            # a gradient learner's adapted model normalises the query batch alone; the support
            # rides along instead (with batch statistics, the support and the one query)
            predictor = AdaptedPredictor(predictor.forward, predictor.params, predictor.support_x,
                                         task_norm=True)
        return predictor

    def calibrate_rejection(self, quantile: float = 0.05) -> FewShotClassifier:
        """Set a rejection threshold from the support set alone, for out-of-scope inputs.

        Each support example is scored by a model adapted to the other support examples
        (leave one out); the threshold is the ``quantile`` of those scores, so about that
        fraction of in-scope inputs is rejected. The score of an input is its largest logit
        (for ProtoNet the negative squared distance to the nearest prototype, which, unlike the
        largest softmax probability, falls for an input far from every class). Afterwards
        :meth:`predict` answers :attr:`out_of_scope_label` where the score is below
        :attr:`threshold_`. Leave-one-out adaptations do not change the meta-parameters.

        Args:
            quantile: Fraction of the support's leave-one-out scores below the threshold, in
                ``[0, 1)``.

        Returns:
            ``self``.

        Raises:
            AdaptInputError: before :meth:`fit`, a class with a single support example (nothing
                left to adapt to when it is left out), or a model whose head is fixed to
                ``n_way`` classes (leaving out is fine there; a class is never removed).
        """
        if self._predictor is None:
            raise AdaptInputError("call fit(support_x, support_y) before calibrate_rejection()")
        if not 0 <= quantile < 1:
            raise AdaptInputError(f"quantile must be in [0, 1), got {quantile}")
        x, y = self._support
        counts = torch.bincount(y)
        if int(counts.min()) < 2:
            small = self.classes_[int(counts.argmin())]
            raise AdaptInputError(f"class {small!r} has one support example: leave-one-out "
                                  "calibration needs at least two per class")
        scores = []
        for i in range(len(y)):  # adaptation may take gradient steps: not under no_grad
            keep = torch.cat([torch.arange(i), torch.arange(i + 1, len(y))]).to(y.device)
            predictor = self._adapt(x[keep], y[keep])
            with torch.no_grad():
                scores.append(float(predictor(x[i:i + 1]).float().max()))
        self.threshold_ = float(np.quantile(np.asarray(scores), quantile))
        return self

    def _logits(self, x) -> Tensor:
        if self._predictor is None:
            raise AdaptInputError("call fit(support_x, support_y) before predicting")
        x = self._inputs(x)
        if x.shape[0] == 0:
            raise AdaptInputError("no query inputs to predict")
        x = x.to(self.device)
        with torch.no_grad():
            if not self.query_independent:
                return self._predictor(x).float().cpu()
            # one query per call, so each sees the same computation whatever else is classified:
            # its result is bit for bit that of the query alone
            return torch.cat([self._predictor(x[i:i + 1]).float().cpu() for i in range(x.shape[0])])

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in the order of ``classes_``.

        Rows of scores that are already probabilities (in ``[0, 1]`` summing to 1, e.g.
        Matching Networks' attention) are returned as they are; others are passed through a
        softmax. The test is per row, so a row's answer does not depend on the others.
        """
        out = self._logits(x)
        is_prob = (out.min(1).values >= 0) & torch.isclose(out.sum(1), torch.ones(()), atol=1e-4)
        return torch.where(is_prob[:, None], out, torch.softmax(out, dim=1)).numpy()

    def predict(self, x) -> np.ndarray:
        """Predicted labels (from ``classes_``) for inputs ``(n, *x_shape)``, image files,
        PIL images or sentences (see :meth:`fit`); after :meth:`calibrate_rejection`,
        :attr:`out_of_scope_label` where an input's score is below :attr:`threshold_`."""
        logits = self._logits(x)
        pred = self.classes_[logits.argmax(1).numpy()]
        if self.threshold_ is None:
            return pred
        pred = pred.astype(object)
        pred[logits.max(1).values.numpy() < self.threshold_] = self.out_of_scope_label
        return pred


def _decode(image, size: int, channels: int, invert: bool) -> np.ndarray:
    """One image file or PIL image as uint8 ``(channels, size, size)``, as :func:`load_images`."""
    if isinstance(image, Image.Image):  # through PNG (lossless): the one decoding path
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        raw, name = buf.getvalue(), "the PIL image"
    else:
        try:
            raw, name = Path(image).read_bytes(), str(image)
        except OSError as e:
            raise AdaptInputError(f"cannot read image {image} ({e.strerror or e})") from None
    try:
        return decode_image(raw, (size, size), channels, invert)
    except CorruptImageError as e:
        raise AdaptInputError(f"cannot read image {name} ({e}): fix or remove the file") from None


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
