"""Evaluation on fixed episodes with 95% confidence intervals, and recommendation for a new user."""

from metalearn.eval.evaluate import DEFAULT_EPISODES, EvalResult, combine_results, evaluate
from metalearn.eval.metrics import accuracy, macro_recall_f1, mae, mean_ci95, mse, ndcg_at_k, rmse
from metalearn.eval.recommend import RecommendInputError, read_user_ratings, recommend

__all__ = [
    "DEFAULT_EPISODES",
    "EvalResult",
    "combine_results",
    "accuracy",
    "evaluate",
    "macro_recall_f1",
    "mean_ci95",
    "mae",
    "mse",
    "ndcg_at_k",
    "read_user_ratings",
    "recommend",
    "RecommendInputError",
    "rmse",
]
