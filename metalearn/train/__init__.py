"""Meta-training: typed run configs, the training loop, checkpoints and run logging.

Examples:
    >>> from metalearn.presets import get_preset
    >>> from metalearn.train import apply_overrides
    >>> cfg = apply_overrides(get_preset("demo"), ["train.steps=100"])
    >>> cfg.train.steps, cfg.algorithm.name
    (100, 'maml')
"""

import importlib

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
_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metalearn.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = sorted(_LAZY)
