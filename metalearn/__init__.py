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

import importlib

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
    "metalearn.types": ("Algorithm", "Episode", "EpisodeBatch", "Params", "Predictor"),
}
"""Subpackage -> the public names it defines."""
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBPACKAGES = ("algorithms", "cli", "data", "errors", "eval", "kernels", "models", "optim", "presets",
                "train", "types")
"""``metalearn.<name>`` attribute access imports these (as the eager imports used to)."""


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"metalearn.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metalearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = sorted([*_LAZY, "__version__"])
