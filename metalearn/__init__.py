"""metalearn: meta-learning ("learning to learn") on PyTorch.

The curated public API; everything else is importable from its subpackage
(``metalearn.data``, ``metalearn.models``, ``metalearn.algorithms``, ``metalearn.eval``,
``metalearn.train``, ``metalearn.presets``).

Examples:
    >>> import metalearn as ml
    >>> sampler = ml.EpisodeSampler(ml.SinusoidTasks(), None, k_shot=5, n_query=10, seed=0)
    >>> maml = ml.MAML(ml.MLP(1, (40, 40), out_features=1), ml.MAMLConfig(inner_lr=0.01))
    >>> loss, metrics = maml.meta_loss(sampler.sample_batch(4))
    >>> sorted(metrics)
    ['loss', 'mse']
"""

from metalearn._lazy import lazy_exports

# The public names are imported on first use (PEP 562), so `import metalearn` (and with it the
# CLI's `--help` and argument parsing) does not load torch.
_EXPORTS = {
    "metalearn.algorithms": ("ANIL", "CNP", "MAML", "Baseline", "MAMLConfig", "MatchingNet", "MetaSGD",
                             "ParameterGenerator", "ProtoNet", "RelationNet", "Reptile", "TaskMemory",
                             "WarmStartAdapter"),
    "metalearn.data": ("ArrayDataset", "EpisodeSampler", "FixedEpisodes", "ImageFolder", "LinearTasks",
                       "MiniImageNet", "Omniglot", "SinusoidTasks"),
    "metalearn.eval": ("EvalResult", "evaluate"),
    "metalearn.models": ("MLP", "Conv4", "ResNet12"),
    "metalearn.types": ("Algorithm", "Episode", "EpisodeBatch", "EpisodeList", "Params", "Predictor"),
}
"""Module -> the public names it defines."""
_SUBPACKAGES = ("algorithms", "cli", "data", "errors", "eval", "kernels", "models", "optim", "presets",
                "train", "types")
"""``metalearn.<name>`` imports these on access (as the eager imports used to make them available)."""

__getattr__, __dir__, _names = lazy_exports(__name__, _EXPORTS, globals(), _SUBPACKAGES)

__version__ = "0.1.0"

__all__ = sorted([*_names, "__version__"])
