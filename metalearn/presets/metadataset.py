"""Meta-Dataset recipes (Triantafillou et al., "Meta-Dataset", ICLR 2020) on Omniglot alone.

Episodes follow the Meta-Dataset protocol (:mod:`metalearn.data.metadataset`): one alphabet per
episode, 5 to 50 ways within it, imbalanced shots (support up to 500), 10 queries per class
(Omniglot's 20 drawings per character give at most ``min(10, 20 // 2) = 10``). Class split: the
Meta-Dataset one, 25 / 5 / 20 alphabets (``md-train`` / ``md-val`` / ``md-test``: 883 / 81 / 659
characters, no rotation classes). Validation and test: fixed seeded episodes (seeds 1 and 2),
600 test episodes as the leaderboard requires.

Deviations from the leaderboard's setting, in every config's ``notes``: one source (Omniglot)
instead of all ten, 28x28 grey images and Conv4 instead of 84x84 RGB and ResNet-18 (both
available: ``--set model.backbone=resnet18 --set data.image_size=84``), and a CPU budget of a
few thousand episodes instead of the reference's tens of thousands.
"""

from __future__ import annotations

from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig

_NOTES = ("Meta-Dataset protocol on Omniglot alone (Triantafillou et al. 2020): one alphabet per episode, "
          "5-50 ways, imbalanced shots, 10 queries per class; Meta-Dataset's 25/5/20 alphabet split. "
          "Deviations from the leaderboard (all ten sources, ResNet-18 at 84 px): one source, Conv4 at "
          "28 px, a CPU budget of {steps:,} episodes.")


MD_OMNIGLOT_TRAIN_CLASSES = 883
"""Characters of the 25 training alphabets (the pretraining head's size; ``n_classes=0`` reads it
from the data instead, as a multi-source run needs)."""


def md_omniglot_data() -> DataConfig:
    """Omniglot under the Meta-Dataset protocol (the data section of every recipe here)."""
    return DataConfig(dataset="omniglot", train_split="md-train", val_split="md-val", test_split="md-test",
                      image_size=28, episodes="meta-dataset", hierarchy="auto", val_episodes=100,
                      test_episodes=600)


def _conv4() -> ModelConfig:
    return ModelConfig("conv4", {"in_channels": 1, "hidden": 64, "out_features": None,
                                 "norm": "transductive", "image_size": 28})


def _train(steps: int, lr: float = 1e-3) -> TrainConfig:
    return TrainConfig(steps=steps, meta_batch=1, lr=lr, schedule="cosine", val_every=500,
                       checkpoint_every=250, log_every=20)


def protonet_omniglot_md() -> RunConfig:
    """Prototypical Networks (squared Euclidean) trained on Meta-Dataset episodes of Omniglot."""
    steps = 3000
    return RunConfig(name="protonet-omniglot-md", data=md_omniglot_data(), model=_conv4(),
                     algorithm=AlgorithmConfig("protonet", {"distance": "sq_euclidean"}),
                     train=_train(steps), notes=_NOTES.format(steps=steps) + " Adam 1e-3, cosine decay.")


def baseline_omniglot_md(head: str = "cosine", finetune: str = "head") -> RunConfig:
    """Baseline (``head="linear"``) or Baseline++ (``"cosine"``): pretraining on all 883 training
    characters (the support and query images of each episode, with their class ids), then a new
    head fitted on each test episode's support (``finetune="all"``: the whole network too, as
    Meta-Dataset's Finetune)."""
    steps = 3000
    name = {"cosine": "baseline-pp", "linear": "baseline"}[head]
    if finetune == "all":
        name = "finetune"
    return RunConfig(name=f"{name}-omniglot-md", data=md_omniglot_data(), model=_conv4(),
                     algorithm=AlgorithmConfig("baseline", {"head": head, "n_classes": MD_OMNIGLOT_TRAIN_CLASSES, "finetune": finetune}),
                     train=_train(steps),
                     notes=_NOTES.format(steps=steps) + " Pretraining (Chen et al. 2019) on the training "
                     "episodes' images with their character ids (883; n_classes=0 takes them from the data).")


def tsa_omniglot_md() -> RunConfig:
    """Task-specific adapters (Li, Liu and Bilen 2022) on a backbone pretrained as Baseline is."""
    steps = 3000
    return RunConfig(name="tsa-omniglot-md", data=md_omniglot_data(), model=_conv4(),
                     algorithm=AlgorithmConfig("tsa", {"n_classes": MD_OMNIGLOT_TRAIN_CLASSES}), train=_train(steps),
                     notes=_NOTES.format(steps=steps) + " Pretraining as Baseline; at test residual "
                     "adapters and a pre-classifier transform learned on each support set (40 Adadelta "
                     "steps), the backbone frozen.")


def proto_maml_omniglot_md() -> RunConfig:
    """fo-Proto-MAML (Triantafillou et al. 2020): first-order MAML with the output layer
    initialised from the prototypes, body and head adapted on each support set."""
    steps = 1500
    return RunConfig(name="proto-maml-omniglot-md", data=md_omniglot_data(), model=_conv4(),
                     algorithm=AlgorithmConfig("proto_maml", {"inner_lr": 0.01, "inner_steps": 5,
                                                              "first_order": True}),
                     train=TrainConfig(steps=steps, meta_batch=4, lr=1e-3, schedule="cosine", val_every=250,
                                       checkpoint_every=250, log_every=20),
                     notes=_NOTES.format(steps=steps) + " Meta-Dataset's maml_init_with_proto defaults: 5 inner "
                     "steps at 0.01, first order; meta-batch 4 episodes, Adam 1e-3.")
