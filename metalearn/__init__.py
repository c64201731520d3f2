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

from metalearn.algorithms import (
    ANIL,
    CNP,
    MAML,
    Baseline,
    MAMLConfig,
    MatchingNet,
    MetaSGD,
    ParameterGenerator,
    ProtoNet,
    RelationNet,
    Reptile,
    TaskMemory,
    WarmStartAdapter,
)
from metalearn.data import (
    ArrayDataset,
    EpisodeSampler,
    FixedEpisodes,
    ImageFolder,
    LinearTasks,
    MiniImageNet,
    Omniglot,
    SinusoidTasks,
)
from metalearn.eval import EvalResult, evaluate
from metalearn.models import MLP, Conv4, ResNet12
from metalearn.types import Algorithm, Episode, EpisodeBatch, Params, Predictor

__version__ = "0.1.0"

__all__ = [
    "ANIL", "CNP", "MAML", "MLP", "Algorithm", "ArrayDataset", "Baseline", "Conv4", "Episode",
    "EpisodeBatch", "EpisodeSampler", "EvalResult", "FixedEpisodes", "ImageFolder", "LinearTasks",
    "MAMLConfig", "MatchingNet", "MetaSGD", "MiniImageNet", "Omniglot", "ParameterGenerator", "Params", "Predictor",
    "ProtoNet", "RelationNet", "Reptile", "ResNet12", "SinusoidTasks", "TaskMemory", "WarmStartAdapter", "__version__", "evaluate",
]
