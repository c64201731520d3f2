"""Evaluation on fixed episodes with 95% confidence intervals."""

from metalearn.eval.evaluate import DEFAULT_EPISODES, EvalResult, evaluate
from metalearn.eval.metrics import accuracy, macro_recall_f1, mean_ci95, mse

__all__ = [
    "DEFAULT_EPISODES",
    "EvalResult",
    "accuracy",
    "evaluate",
    "macro_recall_f1",
    "mean_ci95",
    "mse",
]
