"""Meta-reinforcement learning: MAML-RL on 2-D navigation and MuJoCo HalfCheetah.

The seam with the supervised package: a supervised task arrives as a fixed
:class:`~metalearn.types.Episode` (support and query drawn from a dataset before the learner sees
them), but a meta-RL task's support data come from the policy being adapted: the ``train``
trajectories are rolled out with the meta-parameters, the ``valid`` (query) trajectories with
the adapted ones, and a trajectory carries a mask of the steps that happened. So meta-RL has its
own small types beside ``Episode`` (:mod:`metalearn.rl.types`): :class:`Trajectories`, the
vectorised task environment :class:`VectorTaskEnv` (``sample_tasks`` / ``reset_task`` /
``reset`` / ``step`` on tensors) and the algorithm protocol :class:`MetaRLAlgorithm`
(``adapt(train) -> params per task``, ``step(train, valid) -> metrics``).

Everything else is the package's: the policy is a plain ``nn.Module`` evaluated through
:func:`~metalearn.algorithms.functional.make_forward`, the inner policy-gradient step is the
one :func:`~metalearn.algorithms.functional.inner_loop` (given the surrogate as its ``loss``)
with an update rule of :mod:`metalearn.optim` (``sgd``, ``meta_sgd``).

Modules: :mod:`~metalearn.rl.envs` (Navigation2D, the ``ENVIRONMENTS`` table),
:mod:`~metalearn.rl.gym_envs` (gymnasium/MuJoCo HalfCheetahVel/Dir; ``pip install
'metalearn[rl]'``), :mod:`~metalearn.rl.metaworld_envs` (Meta-World ML1, ``env.name=ml1-<task>``;
``pip install 'metalearn[metaworld]'``), :mod:`~metalearn.rl.policies`, :mod:`~metalearn.rl.rollout`,
:mod:`~metalearn.rl.returns` (baseline, GAE), :mod:`~metalearn.rl.policy_gradient` (the inner
step), :mod:`~metalearn.rl.maml_trpo` (TRPO/PPO outer steps, :func:`meta_iteration`).

The run machinery. A meta-RL run has the run directory, checkpoints and command line of a
supervised one (``metalearn train --preset maml-trpo-navigation2d``, ``metalearn eval RUN``),
but its own loop, :func:`~metalearn.rl.loop.train_rl`, rather than a bent
:func:`metalearn.train.loop.train`: the supervised loop draws batches of episodes from a
sampler and calls ``meta_loss`` + one optimizer step, while a meta-iteration here rolls out the
policy (the support data do not exist before the policy acts), adapts, rolls out again and takes
a TRPO step that is no optimizer step at all (conjugate gradient and a line search), and its
random state is the task and rollout generators, not a sampler's. What it reuses: the config
helpers (:func:`~metalearn.train.config.coerce`, ``parse_literal``; :mod:`metalearn.rl.config`
holds its typed :class:`~metalearn.rl.config.RLRunConfig`), safetensors checkpoints
(:mod:`metalearn.train.checkpoint`), ``metrics.jsonl`` / TensorBoard and the learning curve
(:mod:`metalearn.train.runlog`), torchrun ranks and their collectives
(:mod:`metalearn.train.distributed`: each rank rolls out its share of the meta-batch; the outer
step averages gradients, Hessian-vector products and line-search values, so it equals one
process's), and the 95% confidence interval of :func:`metalearn.eval.metrics.mean_ci95`
(:mod:`metalearn.rl.evaluate`: returns before and after 1 and 3 steps on fixed seeded test
tasks). :mod:`metalearn.rl.plots` draws the adaptation curve over meta-training and, for 2-D
navigation, the trajectories before and after adaptation.
"""

from metalearn._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "metalearn.rl.types": ("MetaRLAlgorithm", "Task", "Trajectories", "VectorTaskEnv"),
    "metalearn.rl.envs": ("ENVIRONMENTS", "ENV_FAMILIES", "Navigation2D", "check_horizon", "env_builder"),
    "metalearn.rl.metaworld_envs": ("ML1_SEED", "MetaWorldML1", "ml1_benchmark"),
    "metalearn.rl.gym_envs": ("GymVectorTasks", "HalfCheetahDirEnv", "HalfCheetahVelEnv",
                              "Navigation2DEnv"),
    "metalearn.rl.policies": ("GaussianMLPPolicy", "check_action_space"),
    "metalearn.rl.rollout": ("rollout",),
    "metalearn.rl.returns": ("LinearFeatureBaseline", "advantages", "discounted_returns", "gae"),
    "metalearn.rl.policy_gradient": ("adapt_policy", "reinforce_loss", "weighted_mean"),
    "metalearn.rl.maml_trpo": ("MAMLTRPO", "MAMLTRPOConfig", "conjugate_gradient", "line_search",
                               "meta_iteration"),
    "metalearn.rl.config": ("RLRunConfig", "apply_rl_overrides", "validate_rl"),
    "metalearn.rl.loop": ("build_env", "build_rl_algorithm", "load_rl_run", "train_rl"),
    "metalearn.rl.evaluate": ("AdaptationResult", "adaptation_returns", "evaluate_run"),
    "metalearn.rl.plots": ("plot_adaptation_curve", "plot_trajectories"),
    "metalearn.rl.baselines": ("MultiTaskPolicy", "OraclePolicy", "RandomInit", "TaskObservation",
                               "task_vector"),
}, globals())
