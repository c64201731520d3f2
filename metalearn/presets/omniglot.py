"""Omniglot recipes (anchors: MAML, Finn et al. 2017; ProtoNet, Snell et al. 2017; Reptile,
Nichol et al. 2018).

All use the Vinyals split (1028 / 172 / 423 characters, each in 4 rotations as classes), 28x28
inputs with strokes = 1 and the Conv4 backbone (64 filters, batch statistics, 2x2 max-pool).
Deviations from the papers, kept in each config's ``notes``:

* MAML's Omniglot network uses stride-2 convolutions instead of max-pooling, its own random
  1200/423 split, and random rotations per task; here: max-pool Conv4 and the Vinyals split.
* Augmentation: none beyond the rotation classes, as in the papers (``data.augment`` is empty in
  every recipe here; MAML's random rotations per task are the deviation above).
* Evaluation is on fixed test episodes with 15 queries per class (the papers' MAML code uses
  K queries); more queries only tighten each episode's accuracy, not its expectation.
"""

from __future__ import annotations

from metalearn.train.config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TrainConfig


def _data(n_way: int, k_shot: int, n_query: int, eval_n_way: int | None = None,
          test_episodes: int = 600, eval_k_shot: int | None = None) -> DataConfig:
    return DataConfig(dataset="omniglot", train_split="vinyals-train", val_split="vinyals-val",
                      test_split="vinyals-test", image_size=28, n_way=n_way, k_shot=k_shot,
                      n_query=n_query, eval_n_way=eval_n_way, eval_k_shot=eval_k_shot, eval_n_query=15,
                      val_episodes=100, test_episodes=test_episodes)


def _conv4(out_features: int | None) -> ModelConfig:
    return ModelConfig("conv4", {"in_channels": 1, "hidden": 64, "out_features": out_features,
                                 "norm": "transductive", "image_size": 28})


_MAML_NOTES = ("Finn et al. 2017 README recipe (Adam 1e-3). Deviations: max-pool Conv4 instead "
               "of stride-2 convs, Vinyals split, 15 test queries per class.")


def maml_omniglot_5w1s() -> RunConfig:
    """MAML 5-way 1-shot: meta-batch 32, 1 inner step at 0.4, 60k steps; 3 steps at test."""
    return RunConfig(
        name="maml-omniglot-5w1s", data=_data(5, 1, 1), model=_conv4(5),
        algorithm=AlgorithmConfig("maml", {"inner_lr": 0.4, "inner_steps": 1, "eval_inner_steps": 3}),
        train=TrainConfig(steps=60_000, meta_batch=32, lr=1e-3, val_every=1000,
                          checkpoint_every=500, log_every=20),
        notes=_MAML_NOTES + " Test with 3 inner steps (paper appendix; the code default is 10).")


def maml_omniglot_20w1s() -> RunConfig:
    """MAML 20-way 1-shot: meta-batch 16, 5 inner steps at 0.1, 60k steps; 5 steps at test."""
    return RunConfig(
        name="maml-omniglot-20w1s", data=_data(20, 1, 1), model=_conv4(20),
        algorithm=AlgorithmConfig("maml", {"inner_lr": 0.1, "inner_steps": 5, "eval_inner_steps": 5}),
        train=TrainConfig(steps=60_000, meta_batch=16, lr=1e-3, val_every=1000,
                          checkpoint_every=500, log_every=20),
        notes=_MAML_NOTES + " Test with 5 inner steps (as in training).")


def fomaml_omniglot_5w1s() -> RunConfig:
    """First-order MAML 5-way 1-shot (``--stop_grad=True``), otherwise as MAML 5w1s."""
    cfg = maml_omniglot_5w1s()
    cfg.name = "fomaml-omniglot-5w1s"
    cfg.algorithm.options["first_order"] = True
    cfg.notes = "First-order MAML. " + cfg.notes
    return cfg


def meta_sgd_omniglot_5w1s() -> RunConfig:
    """Meta-SGD 5-way 1-shot: the MAML 5w1s recipe with meta-learned per-parameter step sizes."""
    cfg = maml_omniglot_5w1s()
    cfg.name = "meta-sgd-omniglot-5w1s"
    cfg.algorithm.name = "meta_sgd"
    cfg.algorithm.options = {"inner_lr": 0.4, "inner_steps": 1, "eval_inner_steps": 1}
    cfg.notes = "Meta-SGD (Li et al. 2017) with the MAML 5w1s settings; one step at test."
    return cfg


def anil_omniglot_20w1s() -> RunConfig:
    """ANIL 20-way 1-shot: the MAML 20w1s recipe adapting only the head (Raghu et al. 2020)."""
    cfg = maml_omniglot_20w1s()
    cfg.name = "anil-omniglot-20w1s"
    cfg.algorithm.name = "anil"
    cfg.notes = "ANIL with the MAML 20w1s settings. " + _MAML_NOTES
    return cfg


def reptile_omniglot_5w5s() -> RunConfig:
    """Reptile 5-way 5-shot: 10 train shots, meta step 0.7 annealed to 0, 100 steps at test.

    The ``openai/supervised-reptile`` README command: 5 inner steps, meta-batch 5, 100k steps.
    """
    return RunConfig(
        name="reptile-omniglot-5w5s", data=_data(5, 10, 1, eval_k_shot=5), model=_conv4(5),
        algorithm=AlgorithmConfig("reptile", {"inner_lr": 0.1, "inner_steps": 5,
                                              "eval_inner_steps": 100, "outer_lr": 0.7,
                                              "outer_lr_final": 0.0, "anneal_steps": 100_000}),
        train=TrainConfig(steps=100_000, meta_batch=5, optimizer="sgd", lr=1.0,
                          val_every=2000, checkpoint_every=1000, log_every=50),
        notes="Nichol et al. 2018 Omniglot 5w5s command: train-shots 10 (test 5), meta-step 0.7 "
              "annealed linearly to 0, meta-batch 5, 5 inner steps, 100 at test; the outer "
              "update is plain SGD at lr 1 on Reptile's (theta - theta_new) direction. "
              "Deviations: full-batch SGD inner steps (lr 0.1) instead of Adam (lr 0.0015) on "
              "minibatches of 10; Vinyals split; max-pool Conv4.")


def reptile_omniglot_5w1s() -> RunConfig:
    """Reptile 5-way 1-shot: 15 train shots, 3 inner steps, meta step 1 annealed to 0, 5 at test.

    The ``openai/supervised-reptile`` README command (transductive): meta-batch 10, 100k steps.
    """
    cfg = reptile_omniglot_5w5s()
    cfg.name = "reptile-omniglot-5w1s"
    cfg.data = _data(5, 15, 1, eval_k_shot=1)
    cfg.algorithm.options.update(inner_steps=3, eval_inner_steps=5, outer_lr=1.0)
    cfg.train.meta_batch = 10
    cfg.notes = ("Nichol et al. 2018 Omniglot 5w1s command (transductive): train-shots 15 (test 1), "
                 "3 inner steps, 5 at test, meta-step 1 annealed linearly to 0, meta-batch 10, 100k "
                 "steps; batch statistics at test make it the transductive setting. Deviations: "
                 "full-batch SGD inner steps (lr 0.1) instead of Adam (lr 0.001) on minibatches of "
                 "25; Vinyals split; max-pool Conv4.")
    return cfg


def _protonet(n_way_test: int, k_shot: int) -> RunConfig:
    return RunConfig(
        name=f"protonet-omniglot-{n_way_test}w{k_shot}s",
        data=_data(60, k_shot, 5, eval_n_way=n_way_test, test_episodes=1000),
        model=_conv4(None),
        algorithm=AlgorithmConfig("protonet", {"distance": "sq_euclidean"}),
        train=TrainConfig(steps=20_000, meta_batch=1, lr=1e-3, schedule="step", step_size=2000,
                          gamma=0.5, val_every=500, checkpoint_every=500, log_every=20),
        notes="Snell et al. 2017 (jakesnell/prototypical-networks): 60-way training with 5 "
              "queries per class, training shot = test shot, Adam 1e-3 halved every 2000 "
              "episodes, 1000 test episodes. Deviations: fixed 20k episodes with best-on-val "
              "selection instead of early stopping plus retraining on train+val.")


def protonet_omniglot_5w1s() -> RunConfig:
    """Prototypical Networks, 5-way 1-shot test, 60-way 1-shot training."""
    return _protonet(5, 1)


def protonet_omniglot_5w5s() -> RunConfig:
    """Prototypical Networks, 5-way 5-shot test, 60-way 5-shot training."""
    return _protonet(5, 5)


def protonet_omniglot_20w1s() -> RunConfig:
    """Prototypical Networks, 20-way 1-shot test, 60-way 1-shot training."""
    return _protonet(20, 1)


def protonet_omniglot_20w5s() -> RunConfig:
    """Prototypical Networks, 20-way 5-shot test, 60-way 5-shot training."""
    return _protonet(20, 5)


def matching_omniglot_5w1s() -> RunConfig:
    """Matching Networks 5-way 1-shot (Vinyals et al. 2016): cosine attention, no FCE."""
    return RunConfig(
        name="matching-omniglot-5w1s", data=_data(5, 1, 15), model=_conv4(None),
        algorithm=AlgorithmConfig("matching", {"fce": False, "temperature": 10.0, "learn_temperature": True}),
        train=TrainConfig(steps=20_000, meta_batch=1, lr=1e-3, val_every=500,
                          checkpoint_every=500, log_every=20),
        notes="Vinyals et al. 2016 Omniglot setting (Conv4 embedding, cosine attention, no full "
              "context embeddings, training N-way K-shot = test). The paper gives no optimiser "
              "schedule; Adam 1e-3 for 20k episodes of 15 queries per class is our choice. "
              "Deviation: the cosines are scaled by a learned temperature (from 10); at the "
              "paper's scale 1 the ReLU embedding's cosines in [0, 1] cap the attention on the "
              "right class at 0.40 and training stalled at 87% (val, 6,500 episodes).")


def relation_omniglot_5w1s() -> RunConfig:
    """Relation Network 5-way 1-shot (Sung et al. 2018): 19 queries per class, Adam 1e-3."""
    return RunConfig(
        name="relation-omniglot-5w1s", data=_data(5, 1, 19),
        model=ModelConfig("conv4", {"in_channels": 1, "hidden": 64, "out_features": None,
                                    "norm": "transductive", "image_size": 28, "n_blocks": 2},
                          feature_maps=[64, 7, 7]),
        algorithm=AlgorithmConfig("relation", {"hidden_channels": 64, "hidden_features": 8}),
        train=TrainConfig(steps=1_000_000, meta_batch=1, lr=1e-3, schedule="step",
                          step_size=100_000, gamma=0.5, val_every=5000, checkpoint_every=1000,
                          log_every=50),
        notes="Sung et al. 2018 Omniglot 5w1s: 19 queries per class, Adam 1e-3 halved every "
              "100k of 1M episodes, relation module of 2 conv blocks + FC 8. Deviation: the "
              "embedding is 2 pooled conv blocks (64x7x7) instead of 2 pooled + 2 unpooled.")


def baseline_omniglot_5w1s(head: str = "linear") -> RunConfig:
    """Baseline (linear head) pretrained on all 4112 training classes; 5-way 1-shot test."""
    plus = head == "cosine"
    return RunConfig(
        name="baseline-pp-omniglot-5w1s" if plus else "baseline-omniglot-5w1s",
        data=_data(64, 1, 1, eval_n_way=5), model=_conv4(None),
        algorithm=AlgorithmConfig("baseline", {"n_classes": 4112, "head": head,
                                               "finetune_steps": 100, "finetune_lr": 0.01}),
        train=TrainConfig(steps=20_000, meta_batch=1, lr=1e-3, val_every=1000,
                          checkpoint_every=1000, log_every=20),
        notes="Chen et al. 2019 Baseline" + ("++ (cosine head)" if plus else "") + ": standard "
              "classification over the 4112 Vinyals training classes (minibatches of 128 images "
              "drawn as 64 classes x 2), Adam 1e-3; at test a new head is fitted on the support "
              "features (100 steps, lr 0.01). Chen et al. report Omniglot only cross-domain.")


def baseline_pp_omniglot_5w1s() -> RunConfig:
    """Baseline++ (cosine head) pretrained on all 4112 training classes; 5-way 1-shot test."""
    return baseline_omniglot_5w1s("cosine")


def demo_omniglot() -> RunConfig:
    """A short ProtoNet Omniglot run for the README demo: 20-way training, 5-way 1-shot test."""
    cfg = _protonet(5, 1)
    cfg.name = "demo-protonet-omniglot-5w1s"
    cfg.data.n_way, cfg.data.test_episodes, cfg.data.val_episodes = 20, 600, 100
    cfg.train.steps, cfg.train.val_every, cfg.train.checkpoint_every = 600, 200, 200
    cfg.train.step_size = 300
    cfg.notes = ("Short budget for the demo: 600 episodes of 20-way 1-shot (the paper trains "
                 "60-way for much longer), lr halved every 300; 600 test episodes.")
    return cfg
