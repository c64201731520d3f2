"""Few-shot intent detection recipes: BANKING77, CLINC150 and HWU64 under the ProtAugment protocol.

Protocol (Dopierre et al., ACL 2021, ``tdopierre/ProtAugment``): the five class folds shipped
with the data (``data.fold``; BANKING77 25/25/27 intents, CLINC150 50/50/50, HWU64 per fold),
5-way K-shot episodes with 5 queries per class, 600 fixed test episodes per fold, episodes drawn
from every utterance of a class. Every recipe here tokenises with a WordPiece vocabulary of 8,000
tokens trained on the fold's meta-training intents only (saved with the run), 64 tokens per text,
and embeds with the from-scratch ``text-bag`` backbone (a learned, weighted bag of 512-d token
embeddings; no pretrained language model). ``text-bag`` is the default because it measured
ahead of ``text-cnn`` on BANKING77 fold 1, 5-way 5-shot: 91.5% against 80.7% (600 test
episodes; ``docs/text.md``): the words that separate new intents are often absent from the
meta-training texts, and a bag keeps them apart where convolutions trained on other words blur them.

Deviations from ProtAugment, kept in each config's ``notes``: their encoder is a BERT fine-tuned
with masked-language modelling on each dataset and they meta-train on 10 labelled examples per
training class plus unlabelled paraphrases; here the encoder starts from random weights and
meta-trains on every labelled utterance of the training intents, for a fixed number of episodes
with best-on-validation selection (they: up to 10,000 with early stopping).
"""

from __future__ import annotations

from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig

TEXT_DATASETS = ("banking77", "clinc150", "hwu64")
"""The intent datasets with ProtAugment folds; each gets one preset per algorithm and shot."""

TRAIN_CLASSES_FOLD1 = {"banking77": 25, "clinc150": 50, "hwu64": 16}
"""Meta-training intents of fold 1 (what Baseline++ pretrains its classifier over); HWU64's
folds differ (16, 30, 24, 20, 25): set ``algorithm.n_classes`` with ``data.fold``."""

_NOTES = ("ProtAugment protocol (5 folds, 5 queries per class, 600 test episodes per fold). "
          "Deviations: from-scratch text-bag encoder on a WordPiece vocabulary of the fold's "
          "training intents (ProtAugment: MLM-fine-tuned BERT), every labelled utterance of the "
          "training intents (ProtAugment: 10 per intent plus paraphrases), fixed budget with "
          "best-on-validation selection.")


def text_data(dataset: str, n_way: int, k_shot: int, n_query: int = 5, *,
              eval_n_way: int | None = 5, eval_k_shot: int | None = None) -> DataConfig:
    """The data section of the intent recipes: fold 1, 5 test queries per class, 600 test episodes."""
    return DataConfig(dataset=dataset, train_split="train", val_split="val", test_split="test",
                      n_way=n_way, k_shot=k_shot, n_query=n_query, eval_n_way=eval_n_way,
                      eval_k_shot=eval_k_shot, eval_n_query=5, val_episodes=200, test_episodes=600,
                      fold=1, tokenizer="wordpiece", vocab_size=8000, max_length=64)


def text_encoder(out_features: int | None = None) -> ModelConfig:
    """The from-scratch text encoder of the recipes (flat features, or a head of ``out_features``)."""
    return ModelConfig("text-bag", {"vocab_size": 8000, "embed_dim": 512, "out_features": out_features})


def _train(steps: int, meta_batch: int = 1) -> TrainConfig:
    return TrainConfig(steps=steps, meta_batch=meta_batch, lr=1e-3, val_every=500,
                       checkpoint_every=500, log_every=50)


def protonet_text(k_shot: int, dataset: str) -> RunConfig:
    """Prototypical Networks (cosine), 5-way K-shot DATASET intents, 8,000 episodes."""
    return RunConfig(
        name=f"protonet-{dataset}-5w{k_shot}s", data=text_data(dataset, 5, k_shot), model=text_encoder(),
        algorithm=AlgorithmConfig("protonet", {"distance": "cosine"}), train=_train(8000),
        notes="ProtoNet, ProtAugment's base learner, with cosine similarity times a learned "
              "temperature (text-bag's features have unit norm; ProtAugment: Euclidean). " + _NOTES)


def anil_text(k_shot: int, dataset: str) -> RunConfig:
    """ANIL (head-only inner loop), 5-way K-shot DATASET intents, meta-batch 4, 2,000 steps."""
    return RunConfig(
        name=f"anil-{dataset}-5w{k_shot}s", data=text_data(dataset, 5, k_shot), model=text_encoder(5),
        algorithm=AlgorithmConfig("anil", {"inner_lr": 0.5, "inner_steps": 5, "eval_inner_steps": 10}),
        train=_train(2000, meta_batch=4),
        notes="ANIL (Raghu et al. 2020): 5 head steps at 0.5 in training, 10 at test. " + _NOTES)


def baseline_pp_text(k_shot: int, dataset: str) -> RunConfig:
    """Baseline++ (cosine head) pretrained over the fold's training intents; 5-way K-shot DATASET test."""
    n = TRAIN_CLASSES_FOLD1[dataset]
    return RunConfig(
        name=f"baseline-pp-{dataset}-5w{k_shot}s",
        data=text_data(dataset, 16, 2, 2, eval_k_shot=k_shot), model=text_encoder(),
        algorithm=AlgorithmConfig("baseline", {"n_classes": n, "head": "cosine",
                                               "finetune_steps": 100, "finetune_lr": 0.01}),
        train=_train(3000),
        notes="Baseline++ (Chen et al. 2019): standard classification over the fold's training "
              "intents (minibatches of 16 intents x 4 utterances, HWU64 fold 1 has 16), a new cosine head fitted on "
              "each test support set (100 steps, lr 0.01). " + _NOTES)


def generator_text(k_shot: int, dataset: str) -> RunConfig:
    """Parameter generator (support -> classifier head), 5-way K-shot DATASET intents, meta-batch 4."""
    return RunConfig(
        name=f"generator-{dataset}-5w{k_shot}s", data=text_data(dataset, 5, k_shot), model=text_encoder(),
        algorithm=AlgorithmConfig("generator", {"hidden": 128, "film": False, "finetune_steps": 0}),
        train=_train(2000, meta_batch=4),
        notes="Weight generator with a Deep-Sets task encoder (as generator-omniglot-5w1s). " + _NOTES)


TEXT_RECIPES = {"protonet": protonet_text, "anil": anil_text, "baseline-pp": baseline_pp_text,
                "generator": generator_text}
"""Algorithm name in the preset names -> recipe ``f(k_shot, dataset) -> RunConfig``."""
