"""Model-based recipes: the parameter generator on Omniglot, Conditional Neural Processes on sinusoids.

* ``generator-omniglot-5w1s``: a Conv4 embedding (no head) and a Deep-Sets encoder that writes
  each task's classifier head (:mod:`metalearn.algorithms.generator`), trained on 5-way 1-shot
  episodes with 15 queries per class, meta-batch 16, Adam 1e-3; the same Vinyals split, image
  size and fixed test episodes (seed 2, 15 queries) as the other Omniglot presets.
* ``cnp-sinusoid-{5,10,20}shot``: the CNP of Garnelo et al. 2018 (encoder and decoder of three
  128-unit layers here, mean aggregation, ``sigma >= 0.01``) over a 1-64 ReLU input embedding, on
  the MAML sinusoid tasks with the MAML preset's data and budget (K support and K query points
  per task, meta-batch 25, Adam 1e-3, 70k steps), so the two are comparable step for step.
"""

from __future__ import annotations

from metalearn.presets.omniglot import _conv4, _data
from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig


def generator_omniglot_5w1s() -> RunConfig:
    """Parameter generator 5-way 1-shot: Conv4 features -> generated head; meta-batch 16, 20k steps."""
    return RunConfig(
        name="generator-omniglot-5w1s", data=_data(5, 1, 15), model=_conv4(None),
        algorithm=AlgorithmConfig("generator", {"hidden": 128, "film": False, "finetune_steps": 0}),
        train=TrainConfig(steps=20_000, meta_batch=16, lr=1e-3, val_every=500,
                          checkpoint_every=500, log_every=20),
        notes="Weight generator in the spirit of Gidaris & Komodakis 2018 / Qiao et al. 2018 with "
              "a Deep-Sets task encoder (VERSA/LEO); no paper recipe for Omniglot exists, so the "
              "budget follows our ProtoNet/Matching presets (Adam 1e-3, 20k steps).")


def cnp_sinusoid(k_shot: int) -> RunConfig:
    """Conditional Neural Process on K-shot sinusoid regression (MAML preset's data and budget)."""
    return RunConfig(
        name=f"cnp-sinusoid-{k_shot}shot",
        data=DataConfig(dataset="sinusoid", n_way=None, k_shot=k_shot, n_query=k_shot,
                        eval_n_query=100, val_episodes=100, test_episodes=600),
        model=ModelConfig("mlp", {"in_features": 1, "hidden": [64], "out_features": None,
                                  "norm": "none"}),
        algorithm=AlgorithmConfig("cnp", {"hidden": 128, "encoder_layers": 3, "decoder_layers": 3,
                                          "min_std": 0.01}),
        train=TrainConfig(steps=70_000, meta_batch=25, lr=1e-3, val_every=1000,
                          checkpoint_every=1000, log_every=50),
        notes="Garnelo et al. 2018 CNP (128-unit MLP encoder and decoder, mean aggregation, "
              "Gaussian NLL); sigma floor 0.01 instead of 0.1 (the sinusoids are noise-free). Data and "
              "budget of the MAML sinusoid preset; tested on its 600 fixed tasks (100 queries).")
