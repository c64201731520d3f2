"""Recommend items to a new user from a few of their ratings, with a meta-trained run.

The user's ratings are the support set of one task: the run's algorithm adapts to them (MeLU's
local update, a CNP's conditioning, MAML's steps) and predicts a rating for every item the user
has not rated; the best ``top`` are the recommendations. The meta-parameters are never changed.

A new user's file is a CSV with a header naming an ``item`` column (the item's id as in the
data files, or its title) and a ``rating`` column, e.g.::

    item,rating
    Toy Story (1995),5
    50,4
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metalearn.data.ratings import UnknownItemError
from metalearn.data.user_tasks import UserTasks


class RecommendInputError(ValueError):
    """A new user's ratings or attributes that cannot be used (the message names the fix)."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item."""

    rank: int
    item_id: str
    title: str
    predicted: float


def resolve_item(tasks: UserTasks, text: str) -> int:
    """The dense index of the item named ``text`` (:meth:`RatingsTable.item_index`: its id as in
    the data files, else its title, with or without its year).

    Raises:
        RecommendInputError: no such item (close titles suggested) or a title several items share.
    """
    try:
        return tasks.table.item_index(text)
    except UnknownItemError as e:
        raise RecommendInputError(str(e)) from None


def read_user_ratings(path: str | Path, tasks: UserTasks) -> tuple[np.ndarray, np.ndarray]:
    """A new user's ratings from a CSV with columns ``item`` and ``rating``.

    Returns:
        ``(items, ratings)``: dense item indices ``(n,)`` int64 and ratings ``(n,)`` float32.

    Raises:
        RecommendInputError: a missing file or column, a malformed line (file and line named),
            an unknown item (close titles suggested), a rating outside the data's scale, an item
            rated twice, or no rating at all.
    """
    path = Path(path)
    if not path.is_file():
        raise RecommendInputError(f"--ratings {path}: no such file; give a CSV with columns item,rating")
    low, high = tasks.table.scale
    items, ratings, where = [], [], {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"item", "rating"} <= set(reader.fieldnames):
            raise RecommendInputError(f"{path}: the header must name the columns item and rating "
                                      f"(found {reader.fieldnames})")
        for row in reader:
            line = reader.line_num
            if row.get("item") in (None, "") or row.get("rating") in (None, ""):
                raise RecommendInputError(f"{path}, line {line}: an empty item or rating; each line is item,rating")
            try:
                value = float(row["rating"])
            except ValueError:
                raise RecommendInputError(f"{path}, line {line}: rating {row['rating']!r} is not a number") from None
            if not low <= value <= high:
                raise RecommendInputError(f"{path}, line {line}: rating {value:g} is outside the data's "
                                          f"scale {low:g}..{high:g}")
            try:
                item = resolve_item(tasks, row["item"])
            except RecommendInputError as e:
                raise RecommendInputError(f"{path}, line {line}: {e}") from None
            if item in where:
                raise RecommendInputError(f"{path}, line {line}: {row['item']!r} was rated already on line "
                                          f"{where[item]}: keep one rating per item")
            where[item] = line
            items.append(item)
            ratings.append(value)
    if not items:
        raise RecommendInputError(f"{path} holds no ratings: give at least one line item,rating")
    return np.asarray(items, dtype=np.int64), np.asarray(ratings, dtype=np.float32)


def user_codes(tasks: UserTasks, attributes: dict[str, str] | None = None) -> np.ndarray:
    """The attribute codes ``(width,)`` of a new user; unnamed attributes are missing (0).

    Args:
        tasks: The run's user tasks (their table's ``user_attrs`` give the names and values).
        attributes: ``{"gender": "F", "age": "25-34", ...}``; values as in the data's vocabulary
            (case-insensitive).

    Raises:
        RecommendInputError: an unknown attribute or value (the known ones listed).
    """
    attrs = {a.name: a for a in tasks.table.user_attrs}
    parts = [np.zeros(a.codes.shape[1], np.int64) for a in tasks.table.user_attrs]
    for name, value in (attributes or {}).items():
        if name not in attrs:
            raise RecommendInputError(f"unknown user attribute {name!r}; the data's: {', '.join(attrs) or '(none)'}")
        a = attrs[name]
        vocab = [v.lower() for v in a.vocab]
        if str(value).lower() not in vocab:
            raise RecommendInputError(f"{name}={value!r} is not a value of the data; choose one of "
                                      f"{', '.join(a.vocab[:30])}")
        parts[list(attrs).index(name)][0] = vocab.index(str(value).lower()) + 1
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def recommend(algorithm: nn.Module, tasks: UserTasks, items: np.ndarray, ratings: np.ndarray, *,
              top: int = 10, attributes: dict[str, str] | None = None,
              device: torch.device | str = "cpu") -> list[Recommendation]:
    """The ``top`` unrated items with the highest predicted rating for a new user.

    Args:
        algorithm: A meta-trained recommender (any algorithm with ``adapt``).
        tasks: The run's meta-training :class:`UserTasks` (the item catalogue and input layout).
        items: Dense indices of the items the user rated ``(n,)``.
        ratings: Their ratings ``(n,)``.
        top: How many items to return.
        attributes: The user's attributes, if known (:func:`user_codes`).
        device: Where to compute.

    Returns:
        Recommendations by decreasing predicted rating (clipped to the data's scale; ties by
        item order).

    Raises:
        RecommendInputError: ``top`` below 1, or every item rated already.
    """
    if top < 1:
        raise RecommendInputError(f"--top must be at least 1, got {top}")
    t = tasks.table
    codes = user_codes(tasks, attributes)
    candidates = np.setdiff1d(np.arange(t.n_items), items)
    if len(candidates) == 0:
        raise RecommendInputError("the user has rated every item: nothing is left to recommend")
    support_x = tasks.features_of(codes, items).to(device)
    support_y = torch.from_numpy(ratings).reshape(-1, 1).to(device)
    was_training = algorithm.training
    algorithm.eval()
    try:
        predictor = algorithm.adapt(support_x, support_y)
        with torch.no_grad():
            pred = predictor(tasks.features_of(codes, candidates).to(device)).reshape(-1).cpu()
    finally:
        algorithm.train(was_training)
    pred = pred.clamp(*t.scale).numpy()
    order = np.argsort(-pred, kind="stable")[:top]
    titles = t.item_titles or t.item_ids
    return [Recommendation(r + 1, t.item_ids[candidates[i]], titles[candidates[i]], float(pred[i]))
            for r, i in enumerate(order)]
