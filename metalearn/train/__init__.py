"""Meta-training: typed run configs, the training loop, checkpoints and run logging.

Examples:
    >>> from metalearn.presets import get_preset
    >>> cfg = apply_overrides(get_preset("demo"), ["train.steps=100"])
    >>> cfg.train.steps, cfg.algorithm.name
    (100, 'maml')
"""

from metalearn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metalearn.train.config import (
    AlgorithmConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
)
from metalearn.train.loop import (
    NonFiniteLossError,
    TrainResult,
    TrainState,
    build_algorithm,
    load_classifier,
    load_run,
    train,
)

__all__ = [
    "AlgorithmConfig",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "apply_overrides",
    "build_algorithm",
    "load_classifier",
    "load_checkpoint",
    "load_run",
    "save_checkpoint",
    "train",
]
