"""metalearn: meta-learning ("learning to learn") on PyTorch."""

from metalearn.types import Algorithm, Episode, EpisodeBatch, Params, Predictor

__version__ = "0.1.0"

__all__ = ["Algorithm", "Episode", "EpisodeBatch", "Params", "Predictor", "__version__"]
