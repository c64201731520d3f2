"""Meta-learning algorithms; each is an ``nn.Module`` with ``meta_loss(batch)`` and ``adapt(...)``.

``ALGORITHMS`` is the single name table used by the CLI (``metalearn list``).
"""

from metalearn.algorithms.anil import ANIL, ANILConfig
from metalearn.algorithms.baseline import Baseline, BaselineConfig
from metalearn.algorithms.cnp import CNP, CNPConfig
from metalearn.algorithms.generator import GeneratorConfig, ParameterGenerator
from metalearn.algorithms.learned_optimizer import LearnedOptimizerMAML, LearnedOptimizerMAMLConfig
from metalearn.algorithms.maml import MAML, MAMLConfig
from metalearn.algorithms.matching import MatchingConfig, MatchingNet
from metalearn.algorithms.melu import MeLU, MeLUConfig
from metalearn.algorithms.meta_sgd import MetaSGD, MetaSGDConfig
from metalearn.algorithms.proto_maml import ProtoMAML, ProtoMAMLConfig
from metalearn.algorithms.protonet import ProtoNet, ProtoNetConfig
from metalearn.algorithms.rating_baselines import (
    GlobalMean,
    ItemMean,
    MatrixFactorizationRidge,
    UserMean,
)
from metalearn.algorithms.relation import RelationConfig, RelationNet
from metalearn.algorithms.reptile import Reptile, ReptileConfig
from metalearn.algorithms.tsa import TSA, TSAConfig
from metalearn.algorithms.warm_start import TaskMemory, WarmStartAdapter

# FeatureMaps is a backbone wrapper (metalearn.models); it stays importable from here because
# earlier READMEs imported it with the Relation Network.
from metalearn.models.feature_maps import FeatureMaps

ALGORITHMS = {
    "maml": MAML,
    "meta_sgd": MetaSGD,
    "anil": ANIL,
    "reptile": Reptile,
    "protonet": ProtoNet,
    "proto_maml": ProtoMAML,
    "matching": MatchingNet,
    "relation": RelationNet,
    "baseline": Baseline,
    "learned_optimizer": LearnedOptimizerMAML,
    "generator": ParameterGenerator,
    "cnp": CNP,
    "melu": MeLU,
    "tsa": TSA,
}
"""Name table for the CLI: algorithm name -> class (``cls(backbone, config=...)``)."""

__all__ = [
    "ALGORITHMS",
    "ANIL",
    "ANILConfig",
    "Baseline",
    "BaselineConfig",
    "CNP",
    "CNPConfig",
    "FeatureMaps",
    "GeneratorConfig",
    "GlobalMean",
    "ItemMean",
    "LearnedOptimizerMAML",
    "LearnedOptimizerMAMLConfig",
    "MAML",
    "MAMLConfig",
    "MatchingConfig",
    "MatchingNet",
    "MatrixFactorizationRidge",
    "MeLU",
    "MeLUConfig",
    "MetaSGD",
    "MetaSGDConfig",
    "ParameterGenerator",
    "ProtoMAML",
    "ProtoMAMLConfig",
    "ProtoNet",
    "ProtoNetConfig",
    "RelationConfig",
    "RelationNet",
    "Reptile",
    "ReptileConfig",
    "TSA",
    "TSAConfig",
    "TaskMemory",
    "UserMean",
    "WarmStartAdapter",
]
