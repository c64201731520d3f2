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
'metalearn[rl]'``), :mod:`~metalearn.rl.policies`, :mod:`~metalearn.rl.rollout`,
:mod:`~metalearn.rl.returns` (baseline, GAE), :mod:`~metalearn.rl.policy_gradient` (the inner
step), :mod:`~metalearn.rl.maml_trpo` (TRPO/PPO outer steps, :func:`meta_iteration`).
"""

from metalearn._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "metalearn.rl.types": ("MetaRLAlgorithm", "Task", "Trajectories", "VectorTaskEnv"),
    "metalearn.rl.envs": ("ENVIRONMENTS", "Navigation2D", "check_horizon"),
    "metalearn.rl.gym_envs": ("GymVectorTasks", "HalfCheetahDirEnv", "HalfCheetahVelEnv",
                              "Navigation2DEnv"),
    "metalearn.rl.policies": ("GaussianMLPPolicy", "check_action_space"),
    "metalearn.rl.rollout": ("rollout",),
    "metalearn.rl.returns": ("LinearFeatureBaseline", "advantages", "discounted_returns", "gae"),
    "metalearn.rl.policy_gradient": ("adapt_policy", "reinforce_loss", "weighted_mean"),
    "metalearn.rl.maml_trpo": ("MAMLTRPO", "MAMLTRPOConfig", "conjugate_gradient", "line_search",
                               "meta_iteration"),
    "metalearn.rl.baselines": ("MultiTaskPolicy", "OraclePolicy", "RandomInit", "TaskObservation",
                               "task_vector"),
}, globals())
