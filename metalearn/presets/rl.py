"""Meta-RL presets: functions returning a whole :class:`~metalearn.rl.config.RLRunConfig`.

They follow Finn, Abbeel & Levine (2017), section 5.3 and appendix A.2 (with pytorch-maml-rl's
configs for what the paper leaves out): a 64-64 tanh Gaussian policy, one vanilla
policy-gradient inner step at 0.1 on 20 trajectories per task, TRPO outer steps with max KL 0.01,
the linear feature baseline, gamma 0.99, GAE lambda 1. ``--set`` changes any field, e.g. ``--set
train.meta_iterations=100`` for a CPU budget.

Examples:
    >>> cfg = RL_PRESETS["maml-trpo-navigation2d"]()
    >>> cfg.train.meta_iterations, cfg.train.meta_batch, cfg.env.horizon, cfg.algorithm.max_kl
    (500, 20, 100, 0.01)
"""

from __future__ import annotations

from collections.abc import Callable

from metalearn.rl.config import EnvConfig, RLEvalConfig, RLRunConfig, RLTrainConfig
from metalearn.rl.maml_trpo import MAMLTRPOConfig

_PAPER = "Finn, Abbeel & Levine 2017, section 5.3: "


def maml_trpo_navigation2d() -> RLRunConfig:
    """MAML-TRPO on 2-D navigation (the paper: 500 meta-iterations, 20 tasks x 20 trajectories, horizon 100)."""
    return RLRunConfig(
        name="maml-trpo-navigation2d", env=EnvConfig("navigation2d", horizon=100),
        algorithm=MAMLTRPOConfig(inner_lr=0.1, max_kl=0.01),
        train=RLTrainConfig(meta_iterations=500, meta_batch=20, trajectories=20),
        notes=_PAPER + "2-D navigation, goals U[-0.5, 0.5]^2, 500 meta-iterations of 20 tasks x 20 "
                       "trajectories, horizon 100, inner step 0.1, TRPO max KL 0.01.")


def fomaml_trpo_navigation2d() -> RLRunConfig:
    """First-order MAML-TRPO on 2-D navigation (the inner gradient treated as a constant)."""
    cfg = maml_trpo_navigation2d()
    cfg.name, cfg.algorithm.first_order = "fomaml-trpo-navigation2d", True
    cfg.notes += " Deviation: first-order (the paper's cheaper ablation)."
    return cfg


def maml_ppo_navigation2d() -> RLRunConfig:
    """MAML with a PPO-clip outer step (Adam 1e-3, 5 epochs) on 2-D navigation."""
    cfg = maml_trpo_navigation2d()
    cfg.name, cfg.algorithm.outer = "maml-ppo-navigation2d", "ppo"
    cfg.notes += " Deviation: PPO-clip outer step (clip 0.2, 5 Adam epochs at 1e-3) instead of TRPO."
    return cfg


def _halfcheetah(kind: str) -> RLRunConfig:
    return RLRunConfig(
        name=f"maml-trpo-halfcheetah-{kind}", env=EnvConfig(f"halfcheetah-{kind}", horizon=200),
        algorithm=MAMLTRPOConfig(inner_lr=0.1, max_kl=0.01),
        train=RLTrainConfig(meta_iterations=1000, meta_batch=40, trajectories=20, eval_every=50),
        notes=_PAPER + f"HalfCheetah {'velocity U[0, 2]' if kind == 'vel' else 'direction +-1'} on "
                       "gymnasium's MuJoCo HalfCheetah-v5, horizon 200 (newer configs use 100), "
                       "meta-batch 40 x 20 trajectories, inner step 0.1, max KL 0.01, 1000 "
                       "meta-iterations as the paper (use --set train.meta_iterations=N for a CPU "
                       "budget). Needs pip install 'metalearn[rl]'.")


def maml_trpo_halfcheetah_vel() -> RLRunConfig:
    """MAML-TRPO on HalfCheetah target velocity (horizon 200, meta-batch 40; needs metalearn[rl])."""
    return _halfcheetah("vel")


def maml_trpo_halfcheetah_dir() -> RLRunConfig:
    """MAML-TRPO on HalfCheetah forward/backward direction (horizon 200, meta-batch 40; needs metalearn[rl])."""
    return _halfcheetah("dir")


def maml_trpo_ml1_reach() -> RLRunConfig:
    """MAML-TRPO on Meta-World ML1 reach-v3 (horizon 150, meta-batch 20 x 10; needs metalearn[metaworld])."""
    return RLRunConfig(
        name="maml-trpo-ml1-reach", env=EnvConfig("ml1-reach-v3", horizon=150, num_envs=10),
        algorithm=MAMLTRPOConfig(inner_lr=0.1, max_kl=0.01),
        train=RLTrainConfig(meta_iterations=300, meta_batch=20, trajectories=10, eval_every=25,
                            checkpoint_every=10),
        eval=RLEvalConfig(test_tasks=40, trajectories=10),
        notes="Meta-World ML1 (Yu et al. 2019) reach-v3: training and validation goals from the 50 "
              "ml1.train_tasks, the 40 test tasks of metalearn eval from the 50 held-out "
              "ml1.test_tasks (goal lists fixed by ML1(seed=0)). The MAML-RL recipe of Finn et al. "
              "2017 (64-64 tanh policy, one inner policy-gradient step at 0.1, TRPO max KL 0.01, "
              "linear baseline, gamma 0.99, GAE lambda 1). Our CPU choices: horizon 150 (Meta-World's "
              "max_path_length is 500), 20 tasks x 10 trajectories per meta-iteration, 300 "
              "meta-iterations, 10 environments stepped at a time (one task per group; each "
              "Meta-World environment is a MuJoCo model). Needs pip install 'metalearn[metaworld]'.")


RL_PRESETS: dict[str, Callable[[], RLRunConfig]] = {
    "maml-trpo-navigation2d": maml_trpo_navigation2d,
    "fomaml-trpo-navigation2d": fomaml_trpo_navigation2d,
    "maml-ppo-navigation2d": maml_ppo_navigation2d,
    "maml-trpo-halfcheetah-vel": maml_trpo_halfcheetah_vel,
    "maml-trpo-halfcheetah-dir": maml_trpo_halfcheetah_dir,
    "maml-trpo-ml1-reach": maml_trpo_ml1_reach,
}
"""Name table of the meta-RL presets (``metalearn list presets`` shows them with the others)."""

__all__ = ["RL_PRESETS"]
