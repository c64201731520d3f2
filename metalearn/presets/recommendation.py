"""Cold-start recommendation recipes: each user a task, MovieLens 100K / 1M, and a synthetic twin.

Protocol (:mod:`metalearn.data.user_tasks`): users split 8:1:1 at random (seed 0) into
meta-train / validation / test; the MeLU protocol by default (users with 13-100 ratings, 10
random ratings of each the query, the rest the support), ``--set data.protocol=mamo`` for MAMO's
(the first 20 ratings by time: 15 support, the next 5 query). The test set is every test user
(one episode each, query draws seeded by ``data.test_seed``); validation, the first 200
validation users. Inputs are the attribute codes of MovieLens (item: id, genres, release
decade; user: age group, gender, occupation, zip region), embedded by
:class:`~metalearn.models.RatingNet` (16-d embeddings, MeLU: 32; MeLU's 64-64 decision layers). Meta-training
regenerates each meta-training user's query at random every time the user is drawn
(:class:`~metalearn.data.user_tasks.UserTaskSampler`).

The ``-synthetic`` twins train on the seeded generator's data in MovieLens-100K format
(:mod:`metalearn.data.synthetic_ratings`, written to the cache on first use): the development
data that runs anywhere, not a result on MovieLens.

Deviations from MeLU (Lee et al. 2019), kept in each config's ``notes``: MovieLens 100K/1M
attributes only (MeLU adds director, actors and rating from IMDb, which MovieLens does not
ship) plus an item-id embedding (an item unseen in meta-training gets none); 16-d embeddings;
AdamW at 1e-3 with weight decay 0.05 and best-on-validation selection over 3,000 meta-batches of
32 users (6,000 for MeLU and the CNP, whose validation error still fell at 3,000) instead of the paper's
5e-5 for 20 epochs.
"""

from __future__ import annotations

from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig

RATINGS_DATASETS = ("movielens-100k", "movielens-1m", "movielens-synthetic", "movielens-synthetic-1m")
"""The ratings datasets with presets."""

_NOTES = ("Users split 8:1:1 at random; MeLU protocol (13-100 ratings, 10 random queries); every test "
          "user evaluated. Deviations: MovieLens attributes only (no IMDb director/actors) plus an "
          "item-id embedding; 16-d embeddings (MeLU: 32); AdamW 1e-3, weight decay 0.05, best-on-validation "
          "selection (MeLU: 5e-5, 20 epochs).")


def ratings_data(dataset: str) -> DataConfig:
    """The data section of the recommendation recipes (MeLU protocol, random 8:1:1 users)."""
    return DataConfig(dataset=dataset, train_split="train", val_split="val", test_split="test",
                      n_way=None, protocol="melu", user_split="random", split_fractions=[0.8, 0.1, 0.1],
                      split_seed=0, val_episodes=200)


def _train(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, meta_batch=32, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                       val_every=250, checkpoint_every=250, log_every=50)


def _net(out_features: int | None = 1) -> ModelConfig:
    return ModelConfig("rating-net", {"embed_dim": 16, "hidden": [64, 64], "out_features": out_features})


def melu(dataset: str) -> RunConfig:
    """MeLU on DATASET: attribute embeddings shared, decision layers adapted per user (5 steps)."""
    return RunConfig(
        name=f"melu-{dataset}", data=ratings_data(dataset),
        model=_net(),
        algorithm=AlgorithmConfig("melu", {"inner_lr": 0.1, "inner_steps": 5, "first_order": False}),
        train=_train(6000),
        notes="MeLU (Lee et al. 2019): the local update adapts the decision layers on the user's "
              "support ratings (5 steps at 0.1), the global update everything. " + _NOTES)


def cnp(dataset: str) -> RunConfig:
    """Conditional Neural Process on DATASET: the support ratings generate the user's predictor.

    With FiLM, the attentive path and the ridge path (``algorithm.attention=false`` and
    ``algorithm.ridge=false`` give the plain FiLM CNP; what each adds: docs/recommendation.md).
    """
    return RunConfig(
        name=f"cnp-{dataset}", data=ratings_data(dataset),
        model=_net(None),
        algorithm=AlgorithmConfig("cnp", {"hidden": 64, "encoder_layers": 3, "decoder_layers": 3,
                                          "min_std": 0.01, "film": True, "attention": True, "ridge": True}),
        train=_train(6000),
        notes="CNP (Garnelo et al. 2018) with TaNP's task-modulated decoder (FiLM, Lin et al. 2021): "
              "the mean of the encoded (item, rating) support pairs conditions and modulates the "
              "decoder of each query item; each query also attends over the support pairs (Attentive "
              "Neural Processes, Kim et al. 2019), and the decoder corrects a closed-form ridge fit of "
              "the support ratings on learned item features (Bertinetto et al. 2019); no gradient "
              "steps at test time. " + _NOTES)


def maml(dataset: str) -> RunConfig:
    """MAML on DATASET: every parameter of MeLU's network adapted per user (2 steps)."""
    cfg = melu(dataset)
    cfg.name, cfg.algorithm = f"maml-{dataset}", AlgorithmConfig("maml", {"inner_lr": 0.1, "inner_steps": 2})
    cfg.notes = "MAML (Finn et al. 2017) over MeLU's network: the inner loop adapts the embeddings too. " + _NOTES
    return cfg


def meta_sgd(dataset: str) -> RunConfig:
    """Meta-SGD on DATASET: MAML over MeLU's network with a learned rate per parameter (1 step)."""
    cfg = melu(dataset)
    cfg.name = f"meta-sgd-{dataset}"
    cfg.algorithm = AlgorithmConfig("meta_sgd", {"inner_lr": 0.1, "inner_steps": 1})
    cfg.notes = "Meta-SGD (Li et al. 2017) over MeLU's network, rates initialised at 0.1. " + _NOTES
    return cfg


RATINGS_RECIPES = {"melu": melu, "cnp": cnp, "maml": maml, "meta-sgd": meta_sgd}
"""Algorithm name in the preset names -> recipe ``f(dataset) -> RunConfig``."""
