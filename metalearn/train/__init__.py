"""Meta-training: typed run configs, the training loop, checkpoints and run logging.

Examples:
    >>> from metalearn.presets import get_preset
    >>> from metalearn.train import apply_overrides
    >>> cfg = apply_overrides(get_preset("demo"), ["train.steps=100"])
    >>> cfg.train.steps, cfg.algorithm.name
    (100, 'maml')
"""

from metalearn._lazy import lazy_exports

# Imported on first use (PEP 562): `metalearn train --help` reads metalearn.train.config's
# dataclasses, which must not pull in the training loop and torch with this package.
_EXPORTS = {
    "metalearn.train.checkpoint": ("CheckpointError", "load_checkpoint", "save_checkpoint"),
    "metalearn.train.config": ("AlgorithmConfig", "ConfigError", "DataConfig", "ModelConfig", "RunConfig",
                               "TrainConfig", "apply_overrides"),
    "metalearn.train.loop": ("NonFiniteLossError", "TrainResult", "TrainState", "build_algorithm",
                             "load_classifier", "load_run", "train"),
}
"""Module -> the public names it defines."""

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, globals())
